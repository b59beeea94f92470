import Foundation
import MeasuredBoot
import TPM2
import Testing

@Suite("Measured Boot: hostile logs give typed errors with offsets, never traps")
struct HostileInputTests {
    /// A small valid crypto-agile log to mutate.
    func sample() throws -> [UInt8] {
        var b = try EventLogBuilder(banks: [.sha1, .sha256])
        b.measure(pcr: 0, type: .sCRTMVersion, data: [0x31, 0, 0, 0])
        b.measureVariable(pcr: 7, type: .efiVariableDriverConfig, guid: .globalVariable, name: "SecureBoot", data: [1])
        b.separators()
        return try b.encoded()
    }

    func le32(_ v: UInt32) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 24)] }

    @Test func everyTruncationFailsWithItsOffset() throws {
        let bytes = try sample()
        let log = try EventLog(parsing: bytes)
        let starts = log.events.map(\.offset) + [bytes.count]
        for cut in 1..<bytes.count where !starts.contains(cut) {
            let e = #expect(throws: EventLogError.self) { try EventLog(parsing: Array(bytes.prefix(cut))) }
            #expect(e?.code == .truncated, "cut \(cut)")
            // The event the cut falls in.
            let inEvent = (starts.lastIndex { $0 < cut } ?? 0)
            #expect(e?.eventIndex == inEvent, "cut \(cut): \(String(describing: e))")
            #expect((e?.offset ?? 0) <= cut)
        }
        // Cut at an event boundary: a shorter, valid log.
        for (i, s) in starts.enumerated() where i > 0 && s < bytes.count {
            #expect(try EventLog(parsing: Array(bytes.prefix(s))).events.count == i)
        }
    }

    @Test func hugeSizesAndCountsAreRefusedBeforeAllocation() throws {
        let bytes = try sample()
        let log = try EventLog(parsing: bytes)
        let second = log.events[1].offset
        // TCG_PCR_EVENT2.digests.count = 0xFFFFFFFF.
        var m = bytes
        m.replaceSubrange(second + 8..<second + 12, with: le32(0xFFFF_FFFF))
        var e = #expect(throws: EventLogError.self) { try EventLog(parsing: m) }
        #expect(
            e?.code == .sizeExceedsLimit && e?.eventIndex == 1 && e?.offset == second + 12 && e?.field == "TCG_PCR_EVENT2.digests.count")
        // eventSize = 0x7FFFFFFF.
        m = bytes
        let sizeAt = second + 12 + (2 + 20) + (2 + 32)
        m.replaceSubrange(sizeAt..<sizeAt + 4, with: le32(0x7FFF_FFFF))
        e = #expect(throws: EventLogError.self) { try EventLog(parsing: m) }
        #expect(e?.code == .sizeExceedsLimit && e?.eventIndex == 1 && e?.field == "TCG_PCR_EVENT2.eventSize")
        // A digest algorithm that is not a bank of the log (its size is unknown).
        m = bytes
        m.replaceSubrange(second + 12..<second + 14, with: [0x12, 0x00])
        e = #expect(throws: EventLogError.self) { try EventLog(parsing: m) }
        #expect(e?.code == .invalidValue && e?.eventIndex == 1 && e?.offset == second + 12)
        #expect(e?.description.contains("TPM_ALG_SM3_256") == true)
        // numberOfAlgorithms = 0x10000000 in the Spec ID event.
        m = bytes
        m.replaceSubrange(32 + 24..<32 + 28, with: le32(0x1000_0000))
        e = #expect(throws: EventLogError.self) { try EventLog(parsing: m) }
        #expect(e?.code == .sizeExceedsLimit && e?.eventIndex == 0 && e?.offset == 32 + 28)
        // An unknown algorithm in the header takes its size from the header.
        var b = try EventLogBuilder(banks: [.sha256])
        b.measure(pcr: 1, type: .action, data: Array("x".utf8))
        var header = try b.encoded()
        // Rename the sha256 bank to 0x00B0 (unknown) in the header and in the event.
        header.replaceSubrange(32 + 28..<32 + 30, with: [0xB0, 0x00])
        let ev = try EventLog(parsing: try b.encoded()).events[1].offset
        header.replaceSubrange(ev + 12..<ev + 14, with: [0xB0, 0x00])
        let unknown = try EventLog(parsing: header)
        #expect(unknown.events[1].digests.first?.algorithm.rawValue == 0x00B0 && unknown.events[1].digests.first?.digest.count == 32)
        #expect(unknown.replay().banks.isEmpty)
        #expect(try unknown.encoded() == header)
    }

    @Test func loopingAndDeepDevicePaths() throws {
        // A node whose length is 0 would loop forever in a naive walker.
        let zero: [UInt8] = [4, 4, 0, 0] + [0x7F, 0xFF, 4, 0]
        let e1 = #expect(throws: EventLogError.self) { try DevicePath(bytes: zero[...]) }
        #expect(e1?.code == .invalidValue && e1?.offset == 2)
        // 10,000 nodes: refused at the cap, not walked.
        var deep: [UInt8] = []
        for _ in 0..<10_000 { deep += [1, 1, 6, 0, 0, 0] }
        let e2 = #expect(throws: EventLogError.self) { try DevicePath(bytes: deep[...]) }
        #expect(e2?.code == .tooDeep)
        // Inside an image-load event the error is kept with the event, and the log still parses.
        var b = try EventLogBuilder(banks: [.sha256])
        var image: [UInt8] = []
        for v: UInt64 in [0x1000, 0x2000, 0] { for i in 0..<8 { image.append(UInt8(v >> (8 * UInt64(i)) & 0xFF)) } }
        image += [UInt8(zero.count), 0, 0, 0, 0, 0, 0, 0] + zero
        b.append(pcr: 4, type: .efiBootServicesApplication, digests: [TaggedDigest(.sha256, [UInt8](repeating: 7, count: 32))], data: image)
        let log = try EventLog(parsing: b.encoded())
        guard case .imageLoad(let il) = log.events[1].decoded else { Issue.record("not an image load"); return }
        #expect(il.devicePath == nil && il.devicePathError?.code == .invalidValue)
        #expect(il.devicePathError?.offset == 32 + 2)
    }

    @Test func malformedEventDataIsKeptNotFatal() throws {
        var b = try EventLogBuilder(banks: [.sha256])
        // A UEFI_VARIABLE_DATA whose name length points past the end.
        var v = EFIGUID.globalVariable.bytes
        v += [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0] + [0, 0, 0, 0, 0, 0, 0, 0]
        b.measure(pcr: 7, type: .efiVariableDriverConfig, data: v)
        let log = try EventLog(parsing: b.encoded())
        guard case .malformed(let e) = log.events[1].decoded else { Issue.record("expected malformed"); return }
        #expect(e.code == .sizeExceedsLimit && e.offset == 16 && e.field == "UEFI_VARIABLE_DATA.UnicodeNameLength")
        let facts = VerifiedEventLog.unchecked(log).explain()
        #expect(facts.anomalies.contains { $0.kind == .malformedEventData && $0.eventIndex == 1 })
    }

    @Test func pcrFilesAreValidated() throws {
        func bad(_ s: String) -> EventLogError? { #expect(throws: EventLogError.self) { try PCRValues(json: Data(s.utf8)) } }
        #expect(bad("[]")?.code == .invalidInput)
        #expect(bad(#"{"md5": {"0": "00"}}"#)?.field == "md5")
        #expect(bad(#"{"sha256": {"24": "00"}}"#)?.field == "sha256.24")
        #expect(bad(#"{"sha256": {"0": "zz"}}"#)?.reason.contains("hex") == true)
        #expect(bad(#"{"sha256": {"0": "00"}}"#)?.reason.contains("32") == true)
        let ok = try PCRValues(json: Data(#"{"pcrs": {"sha1": {"7": "0x\#(String(repeating: "ab", count: 20))"}}}"#.utf8))
        #expect(ok[.sha1, 7] == [UInt8](repeating: 0xAB, count: 20))
        // tpm2_pcrread's output.
        let yaml = try PCRValues(file: Array("  sha256:\n    7 : 0x\(String(repeating: "CD", count: 32))\n".utf8))
        #expect(yaml[.sha256, 7] == [UInt8](repeating: 0xCD, count: 32))
        func badYAML(_ s: String) -> EventLogError? { #expect(throws: EventLogError.self) { try PCRValues(pcrread: s) } }
        #expect(badYAML("    7 : 0x00")?.reason.contains("before any bank") == true)
        #expect(badYAML("md5:\n  0 : 0x00")?.reason.contains("unknown bank") == true)
        #expect(badYAML("sha1:\n  0 : 0x00")?.reason.contains("20") == true)
        #expect(badYAML("")?.reason.contains("no PCR values") == true)
    }

    @Test func sm3KnownAnswers() {
        // GB/T 32905-2016 appendix A.
        let abc = EventLogHash.hash(.sm3_256, Array("abc".utf8)).map { hexString($0) }
        #expect(abc == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0")
        let long = EventLogHash.hash(.sm3_256, Array(String(repeating: "abcd", count: 16).utf8)).map { hexString($0) }
        #expect(long == "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732")
    }
}
