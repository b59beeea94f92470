import Foundation
import MeasuredBoot
import TPM2
import TLaunchTestSupport
import Testing

@Suite("Measured Boot: Linux IMA lists parse and replay")
struct IMATests {
    static let expectedFiles = ["binary_runtime_measurements_sml_ima_ng_sha1_tpm2-tss",
                                "binary_runtime_measurements_sml_ima_sha1_tpm2-tss",
                                "binary_runtime_measurements_sml_ima_sig_sha256_tpm2-tss"]

    @Test(.corpus, arguments: expectedFiles)
    func binaryListsHaveTheSourcesTemplateHashes(_ base: String) throws {
        guard Corpus.require() else { return }
        let log = try IMALog(parsing: Corpus.bytes("ima/\(base).bin"))
        let object = try Corpus.json("ima/\(base).expected.json") as? [String: Any]
        let expected = object?["entries"] as? [[String: String]] ?? []
        #expect(!expected.isEmpty)
        #expect(log.entries.count == expected.count,
                "\(base): \(log.entries.count) entries, tail \(String(describing: log.incompleteTail))")
        for (e, x) in zip(log.entries, expected) {
            #expect(hexString(e.templateHash) == x["template_hash_sha1"], "\(base) entry \(e.index)")
            #expect(e.fileName == x["name"], "\(base) entry \(e.index)")
            // Recomputing the template hash from the fields gives the logged one.
            #expect(e.isConsistent, "\(base) entry \(e.index) \(e.fileName)")
        }
    }

    @Test(.corpus, arguments: expectedFiles)
    func invalidatedListsAreCaught(_ base: String) throws {
        guard Corpus.require() else { return }
        let good = try IMALog(parsing: Corpus.bytes("ima/\(base).bin"))
        let bad = try IMALog(parsing: Corpus.bytes("ima/\(base.replacingOccurrences(of: "_tpm2-tss", with: "_invalidated_tpm2-tss")).bin"))
        var g = IMAReplayState(), b = IMAReplayState()
        try g.apply(good.entries)
        try b.apply(bad.entries)
        // Each negative case is caught: a zeroed template hash is a violation (all ones are
        // extended, so the PCR differs), a cut-off entry is reported as the incomplete tail.
        #expect(g.pcr[.sha1] != b.pcr[.sha1])
        #expect(!b.violations.isEmpty || !b.inconsistentEntries.isEmpty || (bad.entries.isEmpty && bad.incompleteTail != nil))
    }

    @Test(.corpus) func asciiListsAreConsistentAndReplayIncrementally() throws {
        guard Corpus.require() else { return }
        for name in ["ascii_runtime_measurements_ima-ng_sha1_rust-keylime.txt",
                     "ascii_runtime_measurements_ima-template_sha1_keylime.txt"] {
            let log = try IMALog(parsing: Corpus.bytes("ima/\(name)"))
            #expect(log.entries.count > 800, "\(name)")
            let bad = log.entries.filter { !$0.isConsistent }
            #expect(bad.isEmpty, "\(name): inconsistent entries \(bad.prefix(3).map { "\($0.position): \($0.fileName)" })")
            var whole = IMAReplayState()
            try whole.apply(log.entries)
            // The same replay in batches (an agent sending new entries only).
            var inc = IMAReplayState()
            var i = 0
            while i < log.entries.count {
                let n = min(97, log.entries.count - i)
                try inc.apply(Array(log.entries[i..<i + n]))
                i += n
            }
            #expect(inc == whole)
            // A batch that skips entries is refused.
            var skip = IMAReplayState()
            try skip.apply(Array(log.entries.prefix(10)))
            #expect(throws: EventLogError.self) { try skip.apply(Array(log.entries[11...])) }
        }
    }

    @Test(.corpus) func boundaryCases() throws {
        // A sha256 ima-ng line; its template hash is SHA-1 over the fields.
        guard Corpus.require() else { return }
        let log = try IMALog(parsing: Corpus.bytes("ima/ima_log_sha256_boot_aggregate_rust-keylime.txt"))
        #expect(log.entries.count == 1)
        #expect(log.entries[0].fileDigestAlgorithm == "sha256" && log.entries[0].fileDigest.count == 32)
        #expect(log.entries[0].isConsistent)
        // Altering a file digest breaks consistency.
        var text = try String(contentsOf: Corpus.url("ima/ima_log_sha256_boot_aggregate_rust-keylime.txt"), encoding: .utf8)
        text = text.replacingOccurrences(of: "sha256:fe", with: "sha256:ff")
        #expect(try IMALog(ascii: text).entries[0].isConsistent == false)
        // Truncated binary lists keep the whole entries and say where the tail starts.
        let bin = try Corpus.bytes("ima/binary_runtime_measurements_sml_ima_ng_sha1_tpm2-tss.bin")
        let full = try IMALog(parsing: bin)
        for cut in stride(from: 5, to: bin.count, by: 7) {
            let part = try IMALog(parsing: Array(bin.prefix(cut)))
            #expect(part.entries.count <= full.entries.count)
            #expect(part.entries == Array(full.entries.prefix(part.entries.count)))
        }
        // Hostile lengths are refused before allocation.
        var hostile: [UInt8] =
            [10, 0, 0, 0] + [UInt8](repeating: 0, count: 20) + [6, 0, 0, 0] + Array("ima-ng".utf8) + [0xFF, 0xFF, 0xFF, 0x7F]
        hostile += [UInt8](repeating: 0, count: 64)
        let e = #expect(throws: EventLogError.self) { try IMALog(parsing: hostile) }
        #expect(e?.code == .sizeExceedsLimit)
    }
}

@Suite("Measured Boot: IMA templates built by hand, both formats")
struct IMATemplateTests {
    func le32(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 24 & 0xFF)] }

    /// An entry as the kernel writes it to binary_runtime_measurements.
    func binaryEntry(template: String, fields: [[UInt8]]) -> ([UInt8], [UInt8]) {
        var data: [UInt8] = []
        for f in fields { data += le32(f.count) + f }
        let hash = EventLogHash.hash(.sha1, data)!
        return (le32(10) + hash + le32(template.utf8.count) + Array(template.utf8) + le32(data.count) + data, hash)
    }

    @Test func imaBufAndModsigInBothFormats() throws {
        let fileDigest = EventLogHash.hash(.sha256, Array("root=/dev/sda2 ro".utf8))!
        let dng = Array("sha256:".utf8) + [0] + fileDigest
        let buf = Array("root=/dev/sda2 ro".utf8)
        let (bufEntry, bufHash) = binaryEntry(template: "ima-buf", fields: [dng, Array("kexec-cmdline".utf8) + [0], buf])
        let sig: [UInt8] = [0x03, 0x02, 0x04, 0xAA, 0xBB]
        let modsigDigest = Array("sha256:".utf8) + [0] + [UInt8](repeating: 0x11, count: 32)
        let (modEntry, modHash) = binaryEntry(template: "ima-modsig",
                                               fields: [dng, Array("/lib/modules/x.ko".utf8) + [0], sig, modsigDigest, [0x30, 0x82, 0x01]])
        let log = try IMALog(parsing: bufEntry + modEntry)
        #expect(log.entries.count == 2 && log.incompleteTail == nil)
        #expect(
            log.entries[0].buffer == buf && log.entries[0].fileName == "kexec-cmdline" && log.entries[0].fileDigestAlgorithm == "sha256")
        #expect(log.entries[1].signature == sig && log.entries[1].fileName == "/lib/modules/x.ko")
        #expect(log.entries.allSatisfy { $0.isConsistent })

        // The ASCII list says the same; the template data rebuilt from it hashes to the same value.
        let ascii = """
        10 \(hexString(bufHash)) ima-buf sha256:\(hexString(fileDigest)) kexec-cmdline \(hexString(buf))
        10 \(hexString(modHash)) ima-modsig sha256:\(hexString(fileDigest)) /lib/modules/x.ko \(hexString(sig)) \
        sha256:\(String(repeating: "11", count: 32)) 308201
        """
        let text = try IMALog(ascii: ascii)
        #expect(text.entries.map(\.templateData) == log.entries.map(\.templateData))
        #expect(text.entries.allSatisfy { $0.isConsistent })
        var a = IMAReplayState(), b = IMAReplayState()
        try a.apply(log.entries)
        try b.apply(text.entries)
        #expect(a == b)
        // An altered buffer is caught.
        let altered = try IMALog(ascii: ascii.replacingOccurrences(of: hexString(buf), with: hexString(Array("root=/dev/evil ro".utf8))))
        #expect(altered.entries[0].isConsistent == false)
    }

    /// Older kernels extend the SHA-1 template hash, zero-padded, into the SHA-256 bank.
    @Test func paddedSHA1InTheSHA256Bank() throws {
        let (entry, hash) = binaryEntry(
            template: "ima-ng", fields: [Array("sha1:".utf8) + [0] + [UInt8](repeating: 0, count: 20), Array("boot_aggregate".utf8) + [0]])
        let log = try IMALog(parsing: entry)
        var state = IMAReplayState()
        try state.apply(log.entries)
        let padded = EventLogHash.extend(.sha256, [UInt8](repeating: 0, count: 32), (hash + [UInt8](repeating: 0, count: 12))[...])!
        #expect(state.sha256PaddedSHA1 == padded)
        #expect(state.matches(.sha256, padded))
        #expect(state.matches(.sha256, state.pcr[.sha256]!))
        #expect(!state.matches(.sha256, [UInt8](repeating: 0, count: 32)))
    }
}
