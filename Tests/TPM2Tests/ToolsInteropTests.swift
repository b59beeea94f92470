import Foundation
import TPM2
import Testing
import TLaunchTestSupport

/// Differential tests against tpm2-tools on the same swtpm.
@Suite("tpm2-tools: same answers as the reference tools")
struct ToolsInteropTests {
    static var tlaunch: String { Built.tlaunch }

    @Test func tlaunchPCRsAgreesWithTpm2Pcrread() async throws {
        guard let extend = Interop.tool("tpm2_pcrextend"), let pcrread = Interop.tool("tpm2_pcrread") else { return }
        guard let sw = try await Interop.swtpm() else { return }
        defer { sw.stop(); sw.removeState() }
        let env = ["TPM2TOOLS_TCTI": sw.tcti]
        let (s1, _, e1) = try await Interop.run(
            extend, ["16:sha256=" + String(repeating: "ab", count: 32) + ",sha1=" + String(repeating: "cd", count: 20)], environment: env)
        #expect(s1 == 0, "tpm2_pcrextend: \(e1)")
        let (s2, theirs, e2) = try await Interop.run(pcrread, ["sha256:0,7,16,23"], environment: env)
        #expect(s2 == 0, "tpm2_pcrread: \(e2)")
        let (s3, ours, e3) = try await Interop.run(Self.tlaunch, ["tpm", "pcrs", "--bank", "sha256", "--pcrs", "0,7,16,23"],
                                                   environment: env)
        #expect(s3 == 0, "tlaunch tpm pcrs: \(e3)")
        #expect(ours.trimmingCharacters(in: .whitespacesAndNewlines) == theirs.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(theirs.contains("16: 0x"))

        // JSON output, and both banks, against the library reading directly.
        let (_, json, _) = try await Interop.run(Self.tlaunch, ["tpm", "pcrs", "--json", "--tcti", sw.tcti])
        let parsed = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [String: [String: String]]
        let tpm = try TPMClient(tcti: sw.tcti)
        let direct = try await tpm.pcrRead(TPMLPCRSelection([TPMSPCRSelection(hash: .sha1, pcrs: [16])]))
        await tpm.close()
        #expect(parsed["sha1"]?["16"] == direct[0].values[16]?.hexString)
        #expect(parsed["sha256"]?.count == 24)
        let expected = try TPMCrypto.hash(.sha256, [UInt8](repeating: 0, count: 32), [UInt8](repeating: 0xAB, count: 32))
        #expect(parsed["sha256"]?["16"] == expected.hexString)
    }

    @Test func responseCodesDecodeAsTpm2RcDecode() async throws {
        guard let rcDecode = Interop.tool("tpm2_rc_decode") else { return }
        var identical = 0
        // Parameter numbers above 7 are left out: tpm2-tools reads three bits of the number, the
        // specification (and this library) four.
        let codes: [UInt32] = [0x0, 0x100, 0x101, 0x128, 0x143, 0x149, 0x14C, 0x902, 0x908, 0x921, 0x922,
                               0x8E, 0x98E, 0x9A2, 0x1D5, 0x2D2, 0x18B, 0x28B, 0x7D0, 0xA9D, 0x3C4, 0x7F, 0xB0922,
                               0x80005, 0x70001, 0x90001, 0xA000A, 0x60001]
        for code in codes {
            let (status, out, _) = try await Interop.run(rcDecode, [String(code)])
            #expect(status == 0)
            let theirs = out.trimmingCharacters(in: .whitespacesAndNewlines)
            let ours = TPMRC(rawValue: code).decoded
            // The layout (layer, kind, index) must agree; the prose may differ.
            func head(_ s: String) -> String {
                let parts = s.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
                // Only the layer for TSS-layer codes (their texts are the TSS's own).
                if code >> 16 != 0 && code >> 16 != 11 { return String(parts[0]) }
                return parts.prefix(2).joined(separator: ":")
            }
            #expect(head(ours) == head(theirs), "\(hex(code)): ours \"\(ours)\", tpm2_rc_decode \"\(theirs)\"")
            if ours == theirs { identical += 1 }
        }
        // Most TPM-layer texts are the specification's meanings, as tpm2-tools prints them.
        #expect(identical >= codes.count / 2)
    }

    func hex(_ v: UInt32) -> String { "0x" + String(v, radix: 16) }

    @Test func quoteByTpm2ToolsVerifiesWithOurVerifier() async throws {
        guard let createek = Interop.tool("tpm2_createek"), let createak = Interop.tool("tpm2_createak"),
              let quoteTool = Interop.tool("tpm2_quote"), let flush = Interop.tool("tpm2_flushcontext") else { return }
        guard let sw = try await Interop.swtpm() else { return }
        defer { sw.stop(); sw.removeState() }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tl-quote-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let env = ["TPM2TOOLS_TCTI": sw.tcti]
        func p(_ n: String) -> String { dir.appendingPathComponent(n).path }
        var r = try await Interop.run(createek, ["-c", p("ek.ctx"), "-G", "rsa", "-u", p("ek.pub")], environment: env)
        #expect(r.0 == 0, "\(r.2)")
        r = try await Interop.run(
            createak,
            ["-C", p("ek.ctx"), "-c", p("ak.ctx"), "-G", "ecc", "-g", "sha256", "-s", "ecdsa", "-u", p("ak.pub"), "-n", p("ak.name")],
            environment: env)
        #expect(r.0 == 0, "\(r.2)")
        r = try await Interop.run(flush, ["-t"], environment: env)
        r = try await Interop.run(
            quoteTool,
            [
                "-c", p("ak.ctx"), "-l", "sha256:0,1,2,16", "-q", "aabbccdd", "-m", p("q.msg"), "-s", p("q.sig"), "-o", p("q.pcrs"), "-g",
                "sha256"
            ], environment: env)
        #expect(r.0 == 0, "\(r.2)")
        let msg = [UInt8](try Data(contentsOf: URL(fileURLWithPath: p("q.msg"))))
        let sig = try TPMTSignature(tpmBytes: [UInt8](try Data(contentsOf: URL(fileURLWithPath: p("q.sig")))))
        let akPub = try TPM2BPublic(tpmBytes: [UInt8](try Data(contentsOf: URL(fileURLWithPath: p("ak.pub"))))).content
        #expect(try akPub.name() == [UInt8](try Data(contentsOf: URL(fileURLWithPath: p("ak.name")))))
        let tpm = try TPMClient(tcti: sw.tcti)
        let pcrs = try await tpm.pcrRead(TPMLPCRSelection([TPMSPCRSelection(hash: .sha256, pcrs: [0, 1, 2, 16])]))
        await tpm.close()
        let quote = TPMSignedAttest(attestBytes: msg, attest: try TPMSAttest(tpmBytes: msg), signature: sig)
        let v = try TPMQuoteVerifier.verify(quote, akPublic: akPub, nonce: [0xAA, 0xBB, 0xCC, 0xDD], pcrs: pcrs)
        #expect(v.quoteInfo.pcrSelect.pcrSelections[0].pcrs == [0, 1, 2, 16])
        // The EK tpm2_createek made is the TCG default template: same key as ours.
        let ekPub = try TPM2BPublic(tpmBytes: [UInt8](try Data(contentsOf: URL(fileURLWithPath: p("ek.pub"))))).content
        let tpm2 = try TPMClient(tcti: sw.tcti)
        let ours = try await tpm2.createEK(.rsa2048)
        await tpm2.close()
        #expect(ours.publicArea == ekPub)
    }
}
