import ArgumentParser
import Foundation
import MeasuredBoot
import TPM2

extension EventLogError: LocalizedError {
    public var errorDescription: String? { description }
}

/// Reads a whole file into one buffer (no intermediate `Data`; logs can be large). Files whose
/// size is not known in advance (securityfs reports 0) are read in chunks until EOF.
func readFile(_ path: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw ValidationError("cannot read \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { throw ValidationError("cannot read \(path): \(String(cString: strerror(errno)))") }
    var out: [UInt8] = []
    var chunk = max(Int(st.st_size), 1 << 16)
    while true {
        var failed: Int32 = 0
        let part = [UInt8](unsafeUninitializedCapacity: chunk) { b, count in
            var r: Int
            repeat { r = read(fd, b.baseAddress, chunk) } while r < 0 && errno == EINTR
            if r < 0 { failed = errno }
            count = max(r, 0)
        }
        if failed != 0 { throw ValidationError("cannot read \(path): \(String(cString: strerror(failed)))") }
        if part.isEmpty { return out }
        if out.isEmpty { out = part } else { out += part }
        chunk = 1 << 16
    }
}

func loadPCRs(_ path: String?) throws -> PCRValues? {
    guard let path else { return nil }
    return try PCRValues(file: readFile(path))
}

struct EventLogCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eventlog",
        abstract: "TCG PC Client event logs (Measured Boot): show, replay, explain.",
        subcommands: [Show.self, Replay.self, Explain.self]
    )

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "List the events of a log with their decoded data.")
        @Argument(help: "The event log (e.g. /sys/kernel/security/tpm0/binary_bios_measurements).") var file: String
        @Flag(help: "JSON output (see README).") var json = false
        @Option(help: "Only events of this PCR.") var pcr: UInt32?

        func run() throws {
            let log = try EventLog(parsing: readFile(file))
            if json { print(jsonText(log.jsonObject(pcr: pcr))); return }
            print("""
                format: \(log.format.rawValue); banks: \(log.banks.map { PCRValues.bankName($0.algorithm) }.joined(separator: ", ")); \
                events: \(log.events.count)
                """)
            for e in log.events where pcr == nil || e.pcrIndex == pcr {
                let pcrText = e.pcrIndex == 0xFFFF_FFFF ? "-1" : String(e.pcrIndex)
                print("#\(e.index)  PCR \(pcrText)  \(e.type)  \(EventLogCommand.summary(e.decoded))")
                for d in e.digests where !(e.type == .noAction && d.digest.allSatisfy { $0 == 0 }) {
                    print("    \(PCRValues.bankName(d.algorithm).padding(toLength: 8, withPad: " ", startingAt: 0)) \(hexString(d.digest))")
                }
            }
        }
    }

    static func summary(_ d: EventData) -> String {
        switch d {
        case .specID(let s):
            return "Spec ID Event03, banks "
                + s.algorithms.map { "\(PCRValues.bankName($0.algorithm))/\($0.digestSize)" }.joined(separator: " ")
        case .startupLocality(let l): return "StartupLocality \(l)"
        case .sp800155(let r): return r.signature
        case .windowsTrailer(let e): return "Windows SIPA trailer, \(e.count) entries"
        case .noAction(let s, let p): return "\"\(s)\" + \(p.count) bytes"
        case .authority(let v):
            switch v.authorityValue {
            case .signatureData(let s): return "\(v.name): \(s.certificate?.subject ?? "hash " + hexString(s.data))"
            case .certificate(let c): return "\(v.name): \(c.subject ?? c.sha256Fingerprint)"
            case .text(let t): return "\(v.name) = \(t.trimmingCharacters(in: .newlines).replacingOccurrences(of: "\n", with: " | "))"
            case .boolean(let b): return "\(v.name) = \(b ? 1 : 0)"
            default: return "\(v.name): \(v.data.count) bytes"
            }
        case .variable(let v):
            switch v.value {
            case .boolean(let b): return "\(v.name) = \(b ? 1 : 0)"
            case .signatureLists(let l): return "\(v.name): \(l.reduce(0) { $0 + $1.entries.count }) entries in \(l.count) lists"
            case .signatureData(let s): return "\(v.name): \(s.certificate?.subject ?? hexString(s.data.prefix(32)))"
            case .certificate(let c): return "\(v.name): \(c.subject ?? c.sha256Fingerprint)"
            case .loadOption(let o): return "\(v.name): \"\(o.description)\" \(o.filePathList.map(\.description).joined(separator: ","))"
            case .bootOrder(let o): return "\(v.name) = " + o.map { String(format: "%04X", $0) }.joined(separator: ",")
            case .text(let t): return "\(v.name) = \(t.trimmingCharacters(in: .newlines).replacingOccurrences(of: "\n", with: " | "))"
            case .empty: return "\(v.name) (empty)"
            case .bytes(let b): return "\(v.name) = \(hexString(b.prefix(32)))\(b.count > 32 ? "…" : "")"
            case .malformed(let e): return "\(v.name): malformed: \(e.reason)"
            }
        case .imageLoad(let i): return i.devicePath?.description ?? "(device path: \(i.devicePathError?.reason ?? "none"))"
        case .gpt(let g): return "GPT disk \(g.diskGUID), \(g.partitions.count) partitions"
        case .firmwareBlob(let b, let l): return String(format: "blob 0x%llx + 0x%llx", b, l)
        case .firmwareBlob2(let d, let b, let l): return "\(d) " + String(format: "0x%llx + 0x%llx", b, l)
        case .handoffTables(let t): return t.map(\.guid.description).joined(separator: ", ")
        case .handoffTables2(let d, let t): return "\(d): " + t.map(\.guid.description).joined(separator: ", ")
        case .separator(let v, let err): return err ? String(format: "ERROR separator 0x%08X", v) : "separator"
        case .text(let t): return "\"\(t)\""
        case .ipl(let i): return "\(i.kind.rawValue): \(i.text)"
        case .eventTag(let id, let d): return String(format: "tag 0x%08X, %d bytes", id, d.count)
        case .spdm(_, let d): return "\(d.count) bytes"
        case .bytes(let b): return b.isEmpty ? "" : "\(hexString(b.prefix(32)))\(b.count > 32 ? "…" : "")"
        case .malformed(let e): return "MALFORMED: \(e.description)"
        }
    }

    struct Replay: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "replay",
            abstract: "Replay every bank; with --pcrs, compare (exit status 0 only when every given PCR matches).")
        @Argument(help: "The event log.") var file: String
        @Option(help: """
            PCR values: JSON {"sha256": {"0": "hex", …}, "sha1": {…}} or the output of tpm2_pcrread.
            """) var pcrs: String?
        @Flag(help: "JSON output (see README).") var json = false

        func run() throws { try Self.run(file: file, pcrs: pcrs, json: json) }

        /// The command's work, for ArgumentParser's reading and `OfflineFastPath`'s alike.
        static func run(file: String, pcrs: String?, json: Bool) throws {
            let bytes = try readFile(file)
            // The fast path replays straight from the bytes; the events are parsed only when a
            // mismatch has to be explained.
            let (replayed, _) = try EventLog.replay(parsing: bytes)
            guard let expected = try loadPCRs(pcrs) else {
                if json { print(jsonText(["replayed": replayed.jsonObject])); return }
                for (alg, values) in replayed.banks.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
                    for (pcr, v) in values.sorted(by: { $0.key < $1.key }) {
                        print("\(PCRValues.bankName(alg).padding(toLength: 8, withPad: " ", startingAt: 0)) "
                            + "\(String(pcr).padding(toLength: 3, withPad: " ", startingAt: 0)) \(hexString(v))")
                    }
                }
                return
            }
            let allMatch = !expected.banks.isEmpty && expected.banks.allSatisfy { alg, values in
                values.allSatisfy { pcr, v in
                        (replayed[alg, pcr]
                            ?? (pcr >= 17 && pcr <= 22 ? [UInt8](repeating: 0xFF, count: v.count) : [UInt8](repeating: 0, count: v.count)))
                            == v
                }
            }
            if allMatch && !json {
                for (alg, values) in expected.banks.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
                    for (pcr, v) in values.sorted(by: { $0.key < $1.key }) {
                        print("\(PCRValues.bankName(alg).padding(toLength: 8, withPad: " ", startingAt: 0)) "
                            + "\(String(pcr).padding(toLength: 3, withPad: " ", startingAt: 0)) match     \(hexString(v))")
                    }
                }
                print("all \(expected.banks.values.reduce(0) { $0 + $1.count }) PCRs match")
                return
            }
            let report = try EventLog(parsing: bytes).replay(against: expected)
            if json {
                print(jsonText(report.jsonObject))
            } else {
                for c in report.comparisons {
                    let bank = PCRValues.bankName(c.bank).padding(toLength: 8, withPad: " ", startingAt: 0)
                    let pcr = String(c.pcr).padding(toLength: 3, withPad: " ", startingAt: 0)
                    switch c.status {
                    case .match: print("\(bank) \(pcr) match     \(hexString(c.expected))")
                    case .bankNotReplayable: print("\(bank) \(pcr) NOT REPLAYABLE (the log has no such bank)")
                    case .mismatch(let last, let prefix):
                        var why = "replayed \(c.replayed.map { hexString($0) } ?? "-"), expected \(hexString(c.expected))"
                        if let prefix {
                            why += "; the TPM value equals the replay up to event #\(prefix): the log's later events in PCR \(c.pcr) were "
                                 + "not measured into this TPM"
                        } else if let last {
                            why += "; an event at or before #\(last) (the last in PCR \(c.pcr)) is missing or altered"
                        } else {
                            why += "; the log has no events for PCR \(c.pcr)"
                        }
                        print("\(bank) \(pcr) MISMATCH  \(why)")
                    }
                }
                print(
                    report.allMatch
                        ? "all \(report.comparisons.count) PCRs match"
                        : "\(report.comparisons.filter { $0.status != .match }.count) of \(report.comparisons.count) PCRs do not match")
            }
            if !report.allMatch { throw ExitCode(1) }
        }
    }

    struct Explain: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "explain",
            abstract: "What booted: Secure Boot state, keys, the boot chain, shim/grub/kernel/UKI, anomalies.",
            discussion: "With --pcrs only the events of matching PCRs are explained; without, the log is trusted as it is (and says so).")
        @Argument(help: "The event log.") var file: String
        @Option(help: "PCR values to verify the log against (as for replay).") var pcrs: String?
        @Flag(help: "JSON output (see README).") var json = false

        func run() throws {
            let log = try EventLog(parsing: readFile(file))
            let verified: VerifiedEventLog
            if let expected = try loadPCRs(pcrs) {
                verified = log.replay(against: expected).verified
            } else {
                verified = VerifiedEventLog.unchecked(log)
            }
            let facts = verified.explain()
            if json {
                let enc = JSONEncoder()
                enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: try enc.encode(facts), as: UTF8.self))
                return
            }
            print(EventLogCommand.describe(facts))
        }
    }

    static func describe(_ f: BootFacts) -> String {
        var out: [String] = []
        out.append(f.comparedWithTPM ? "verified against TPM PCRs: \(f.verifiedPCRs.map(String.init).joined(separator: ", "))"
                                     : "NOT verified against a TPM (the log is taken as it is; give --pcrs to verify)")
        let sb = f.secureBoot
        out.append("Secure Boot: \(sb.enabled.map { $0 ? "enabled" : "disabled" } ?? "not measured")"
                + (sb.setupMode == true ? " (setup mode)" : "") + (sb.auditMode == true ? " (audit mode)" : "")
                + (sb.deployedMode == true ? " (deployed mode)" : ""))
        for db in f.keyDatabases {
            let hashes = db.hashCounts.sorted { $0.key < $1.key }.map { "\($0.value) × \($0.key)" }.joined(separator: ", ")
            out.append(
                "  \(db.name): \(db.isEmpty ? "empty" : "\(db.certificates.count) certificates\(hashes.isEmpty ? "" : ", " + hashes)")")
            for c in db.certificates { out.append("    \(c.subject ?? "(unparsable certificate)")  "
                                                + "sha256:\(c.sha256Fingerprint.prefix(16))…") }
        }
        if !f.authorities.isEmpty {
            out.append("Authorities that verified boot components (PCR 7):")
            for a in f.authorities { out.append("  #\(a.eventIndex) \(a.variable): \(a.certificate?.subject ?? a.other ?? "")") }
        }
        if !f.bootOptions.isEmpty || f.bootOrder != nil {
            out.append("Boot order: \(f.bootOrder.map { $0.map { String(format: "%04X", $0) }.joined(separator: ",") } ?? "not measured")")
            for o in f.bootOptions { out.append("  Boot\(o.number) \(o.active ? "" : "(inactive) ")\"\(o.description)\" \(o.devicePath)") }
        }
        out.append("Boot chain (\(f.bootChain.count) EFI applications):")
        for a in f.bootChain {
            let digest = a.digests["sha256"] ?? a.digests.values.sorted().first ?? ""
            out.append("  #\(a.eventIndex) \(a.devicePath ?? "(no device path)")")
            let events = a.authorityEvents.map { "#\($0)" }.joined(separator: ", ")
            let authority = a.authorityEvents.isEmpty ? "" : "; authority events " + events
            out.append("      authenticode \(a.digests["sha256"] != nil ? "sha256" : "digest") \(digest)\(authority)")
        }
        if let s = f.shim {
            out.append("shim: MokList \(s.mokList.map { "\($0.certificates.count) certificates" } ?? "not measured"), MokListX "
                     + "\(s.mokListX.map { "\($0.certificates.count + $0.hashCounts.values.reduce(0, +)) entries" } ?? "not measured"), "
                     + "MokListTrusted \(s.mokListTrusted.map { $0 ? "yes" : "no" } ?? "-")")
            if let sbat = s.sbatLevel {
                let level = sbat.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "\n", with: " | ")
                out.append("  SbatLevel: \(level)")
            }
            if let v = s.vendorCertificate { out.append("  vendor certificate: \(v.subject ?? v.sha256Fingerprint)") }
        }
        if let g = f.grub {
            out.append("grub: \(g.commands.count) commands, \(g.files.count) files")
            for c in g.commands.prefix(40) { out.append("  \(c)") }
            for file in g.files { out.append("  file \(file)") }
        }
        if let k = f.kernelCommandLine { out.append("kernel command line: \(k)") }
        for u in f.uki { out.append("UKI PCR \(u.pcr) #\(u.eventIndex): \(u.text)") }
        out.append("separators: " + f.separators.map { "PCR \($0.pcr)\($0.isError ? " (ERROR)" : "")" }.joined(separator: ", "))
        if f.anomalies.isEmpty {
            out.append("anomalies: none")
        } else {
            out.append("anomalies (\(f.anomalies.count)):")
            for a in f.anomalies { out.append("  [\(a.kind.rawValue)] \(a.eventIndex.map { "#\($0) " } ?? "")\(a.message)") }
        }
        return out.joined(separator: "\n")
    }
}

struct IMACommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ima", abstract: "Linux IMA runtime measurement lists.",
                                                    subcommands: [Replay.self])

    struct Replay: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "replay",
            abstract: "Replay PCR 10 from an ASCII or binary IMA list; with --pcrs, compare (exit status 0 only on a match).")
        @Argument(help: "ascii_runtime_measurements or binary_runtime_measurements.") var file: String
        @Option(help: "Start at this entry (the entries before it are skipped; for incremental checks give --from-pcrs too).") var from:
            Int = 0
        @Option(help: "PCR values to compare PCR 10 with (as for eventlog replay).") var pcrs: String?
        @Option(help: "Template hash size of a binary list (20 for binary_runtime_measurements, 32 for …_sha256).") var templateHashSize:
            Int = 20
        @Flag(help: "JSON output (see README).") var json = false

        func run() throws {
            let log = try IMALog(parsing: readFile(file), templateHashSize: templateHashSize)
            guard from >= 0, from <= log.entries.count else {
                throw ValidationError("--from \(from) is beyond the \(log.entries.count) entries")
            }
            var state = IMAReplayState()
            // Entries before --from are replayed but not listed (a verifier keeps this state).
            try state.apply(Array(log.entries))
            let expected = try loadPCRs(pcrs)
            var matched: [String: Bool] = [:]
            if let expected {
                for (alg, values) in expected.banks { if let v = values[10] { matched[PCRValues.bankName(alg)] = state.matches(alg, v) } }
            }
            let newEntries = log.entries.dropFirst(from)
            if json {
                var o: [String: Any] = [
                    "entries": log.entries.count, "from": from,
                    "pcr10": Dictionary(uniqueKeysWithValues: state.pcr.map { (PCRValues.bankName($0.key), hexString($0.value)) }),
                    "pcr10Sha256PaddedSha1": hexString(state.sha256PaddedSHA1),
                    "violations": state.violations, "inconsistentEntries": state.inconsistentEntries,
                    "newEntries": newEntries.map { ["index": $0.index, "template": $0.templateName,
                                                    "templateHash": hexString($0.templateHash),
                            "digest": "\($0.fileDigestAlgorithm):\(hexString($0.fileDigest))", "name": $0.fileName
                        ] as [String: Any]
                    }
                ]
                if let t = log.incompleteTail { o["incompleteTail"] = t.description }
                if !matched.isEmpty { o["matches"] = matched }
                print(jsonText(o))
            } else {
                print("\(log.entries.count) entries\(from > 0 ? " (\(newEntries.count) from #\(from))" : "")")
                for (alg, v) in state.pcr.sorted(by: { $0.key.rawValue < $1.key.rawValue }) { print("PCR 10 \(PCRValues.bankName(alg)): "
                                                                                                  + "\(hexString(v))") }
                print("PCR 10 sha256 (kernels before multi-bank IMA, padded SHA-1): \(hexString(state.sha256PaddedSHA1))")
                if !state.violations.isEmpty { print("violations (ToMToU/open-writers): "
                                                   + "\(state.violations.map { "#\($0)" }.joined(separator: ", "))") }
                if !state.inconsistentEntries.isEmpty { print("ALTERED entries (template hash ≠ hash of the template): "
                                                            + "\(state.inconsistentEntries.map { "#\($0)" }.joined(separator: ", "))") }
                if let t = log.incompleteTail { print("incomplete tail: \(t.description)") }
                for (bank, ok) in matched.sorted(by: { $0.key < $1.key }) { print("\(bank) PCR 10: \(ok ? "match" : "MISMATCH")") }
            }
            if matched.values.contains(false) || (!matched.isEmpty && !state.inconsistentEntries.isEmpty) { throw ExitCode(1) }
        }
    }
}
