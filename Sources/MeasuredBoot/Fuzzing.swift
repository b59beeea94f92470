/// Entry points for fuzzing the parsers of untrusted logs. The libFuzzer targets in `Fuzz/` call
/// these and the test suite replays their corpora. Each returns the invariant violations found.
public enum MeasuredBootFuzzing {
    /// TCG event logs: parsing never traps; what parses re-encodes to the same bytes; every
    /// event's data decodes (or is `.malformed`); replay and explanation run; JSON renders.
    public static func eventLog(_ bytes: [UInt8]) -> [String] {
        let fast = try? EventLog.replay(parsing: bytes)
        guard let log = try? EventLog(parsing: bytes) else {
            return fast == nil ? [] : ["the fast replay accepts a log the parser rejects"]
        }
        var violations: [String] = []
        if let fast {
            if fast.pcrs != log.replay() { violations.append("the fast replay differs from the replay of the parsed events") }
            if fast.events != log.events.count {
                violations.append("the fast replay counts \(fast.events) events, the parser \(log.events.count)")
            }
        } else {
            violations.append("the fast replay rejects a log the parser accepts")
        }
        do {
            if try log.encoded() != bytes { violations.append("re-encoding differs from the parsed bytes") }
        } catch {
            violations.append("a parsed log does not encode: \(error)")
        }
        for e in log.events {
            switch e.decoded {
            case .variable(let v): _ = v.value
            case .authority(let v): _ = v.authorityValue
            case .imageLoad(let i): _ = i.devicePath?.description
            default: break
            }
        }
        _ = log.replay()
        _ = VerifiedEventLog.unchecked(log).explain()
        _ = jsonText(log.jsonObject())
        return violations
    }

    /// IMA lists (binary with SHA-1 or SHA-256 template hashes, and ASCII): parsing never traps,
    /// entries come in order, replay runs, and replaying in two batches equals one.
    public static func imaLog(_ bytes: [UInt8]) -> [String] {
        var violations: [String] = []
        for size in [20, 32] {
            guard let log = try? IMALog(parsing: bytes, templateHashSize: size) else { continue }
            if log.entries.enumerated().contains(where: { $0.offset != $0.element.index }) {
                violations.append("entry indices out of order")
            }
            var whole = IMAReplayState()
            var split = IMAReplayState()
            do {
                try whole.apply(log.entries)
                let half = log.entries.count / 2
                try split.apply(Array(log.entries.prefix(half)))
                try split.apply(Array(log.entries.dropFirst(half)))
            } catch {
                violations.append("replay refused its own entries: \(error)")
            }
            if whole != split { violations.append("replay in two batches differs from one") }
        }
        return violations
    }
}
