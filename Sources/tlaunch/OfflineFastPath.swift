/// The offline commands that people run once per file, in loops and scripts — `secureboot verify` and
/// `eventlog replay` — read their arguments here before ArgumentParser is asked.
///
/// ArgumentParser reflects the command tree with `Mirror` and instantiates generic metadata on first use;
/// in a binary that also carries the server stack, each first dynamic cast or generic instantiation scans
/// the binary's ~12,000 protocol conformance records. For `secureboot verify` that was half of the process's
/// instructions (callgrind: 23 M of 42 M, the image's hashing aside). The reader takes only the plain
/// spellings (`IMAGE`, `--db PATH`, `--db=PATH`, `--json`) and declines everything else — help, an unknown
/// or repeated option, a value that looks like an option, a missing value — which then goes to
/// ArgumentParser exactly as before. It builds no ArgumentParser value and no new generic type (a `Set`
/// literal alone cost a tenth of the run): arrays of strings, and the commands' own static `run`. A test
/// compares each reading with ArgumentParser's.
enum OfflineFastPath {
    /// A plain command line of an offline command.
    enum Line: Equatable {
        case verify(image: String, vars: String?, db: String?, dbx: String?, json: Bool)
        case replay(file: String, pcrs: String?, json: Bool)
    }

    /// What a plain command line holds: positionals in order, each option's value (nil: not given) in
    /// the order of the names asked for, and whether each flag was given.
    struct Reading {
        var positionals: [String] = []
        var values: [String?]
        var flags: [Bool]
    }

    /// Reads `args` (after the command's own words) with the given long options and flags, or nil when
    /// anything in it is not the plain form.
    static func read(_ args: ArraySlice<String>, options: [String], flags: [String]) -> Reading? {
        var reading = Reading(values: options.map { _ in nil }, flags: flags.map { _ in false })
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
            let name: Substring, value: String?
            if let eq = body.firstIndex(of: "=") {
                (name, value) = (body[..<eq], String(body[body.index(after: eq)...]))
            } else {
                (name, value) = (body, nil)
            }
            if let f = flags.firstIndex(where: { $0 == name }) {
                guard value == nil, !reading.flags[f] else { return nil }
                reading.flags[f] = true
            } else if let o = options.firstIndex(where: { $0 == name }), reading.values[o] == nil {
                if let value {
                    guard !value.isEmpty else { return nil }   // `--db=`: ArgumentParser says what it means
                    reading.values[o] = value
                } else {
                    guard i < args.endIndex, !args[i].hasPrefix("-") else { return nil }
                    reading.values[o] = args[i]
                    i += 1
                }
            } else {
                return nil
            }
        }
        return reading
    }

    /// The offline command `arguments` (without the program's name) asks for, when it is one in its plain
    /// form; nil sends the line to ArgumentParser.
    static func line(for arguments: [String]) -> Line? {
        guard arguments.count >= 2 else { return nil }
        let rest = arguments[2...]
        if arguments[0] == "secureboot", arguments[1] == "verify" {
            guard let r = read(rest, options: ["vars", "db", "dbx"], flags: ["json"]), r.positionals.count == 1,
                r.values[0] != nil || r.values[1] != nil
            else { return nil }
            return .verify(image: r.positionals[0], vars: r.values[0], db: r.values[1], dbx: r.values[2], json: r.flags[0])
        }
        if arguments[0] == "eventlog", arguments[1] == "replay" {
            guard let r = read(rest, options: ["pcrs"], flags: ["json"]), r.positionals.count == 1 else { return nil }
            return .replay(file: r.positionals[0], pcrs: r.values[0], json: r.flags[0])
        }
        return nil
    }

    /// Runs a line's command: the same code ArgumentParser's reading runs.
    static func run(_ line: Line) throws {
        switch line {
        case .verify(let image, let vars, let db, let dbx, let json):
            try SecureBootCommand.Verify.run(image: image, vars: vars, db: db, dbx: dbx, json: json)
        case .replay(let file, let pcrs, let json):
            try EventLogCommand.Replay.run(file: file, pcrs: pcrs, json: json)
        }
    }
}
