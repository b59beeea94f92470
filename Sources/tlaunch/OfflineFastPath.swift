import ArgumentParser

/// The offline commands that people run once per file, in loops and scripts — `secureboot verify` and
/// `eventlog replay` — read their arguments here before ArgumentParser is asked.
///
/// ArgumentParser reflects the command tree with `Mirror` and instantiates generic metadata on first use;
/// in a binary that also carries the server stack, each first dynamic cast scans every protocol conformance
/// record. For `secureboot verify` that was half of the process's instructions (callgrind: 23 M of 42 M,
/// the image's hashing aside). The reader takes only the plain spellings (`IMAGE`, `--db PATH`, `--db=PATH`,
/// `--json`) and declines everything else — help, an unknown or repeated option, a value that looks like an
/// option, a missing value — which then goes to ArgumentParser exactly as before. The command it builds is
/// the same struct, and its `run()` is the same code; a test compares each reading with ArgumentParser's.
enum OfflineFastPath {
    /// What a plain command line holds: positionals in order, one value per option, the flags given.
    struct Reading: Equatable {
        var positionals: [String] = []
        var options: [String: String] = [:]
        var flags: Set<String> = []
    }

    /// Reads `args` (after the command's own words) with the given long options and flags, or nil when
    /// anything in it is not the plain form.
    static func read(_ args: ArraySlice<String>, options: Set<String>, flags: Set<String>) -> Reading? {
        var reading = Reading()
        var i = args.startIndex
        while i < args.endIndex {
            let word = args[i]
            i += 1
            guard word.hasPrefix("-") else {
                reading.positionals.append(word)
                continue
            }
            guard word.hasPrefix("--") else { return nil }
            let body = word.dropFirst(2)
            let name: String, value: String?
            if let eq = body.firstIndex(of: "=") {
                (name, value) = (String(body[..<eq]), String(body[body.index(after: eq)...]))
            } else {
                (name, value) = (String(body), nil)
            }
            if flags.contains(name) {
                guard value == nil, reading.flags.insert(name).inserted else { return nil }
            } else if options.contains(name), reading.options[name] == nil {
                if let value {
                    reading.options[name] = value
                } else {
                    guard i < args.endIndex, !args[i].hasPrefix("-") else { return nil }
                    reading.options[name] = args[i]
                    i += 1
                }
            } else {
                return nil
            }
        }
        return reading
    }

    /// The command `arguments` (without the program's name) asks for, when it is one of the offline
    /// commands in its plain form; nil sends the line to ArgumentParser.
    static func command(for arguments: [String]) -> (any ParsableCommand)? {
        guard arguments.count >= 2 else { return nil }
        let rest = arguments[2...]
        switch (arguments[0], arguments[1]) {
        case ("secureboot", "verify"):
            guard let r = read(rest, options: ["vars", "db", "dbx"], flags: ["json"]), r.positionals.count == 1,
                r.options["vars"] != nil || r.options["db"] != nil
            else { return nil }
            var command = SecureBootCommand.Verify()
            command.image = r.positionals[0]
            command.vars = r.options["vars"]
            command.db = r.options["db"]
            command.dbx = r.options["dbx"]
            command.json = r.flags.contains("json")
            return command
        case ("eventlog", "replay"):
            guard let r = read(rest, options: ["pcrs"], flags: ["json"]), r.positionals.count == 1 else { return nil }
            var command = EventLogCommand.Replay()
            command.file = r.positionals[0]
            command.pcrs = r.options["pcrs"]
            command.json = r.flags.contains("json")
            return command
        default:
            return nil
        }
    }
}
