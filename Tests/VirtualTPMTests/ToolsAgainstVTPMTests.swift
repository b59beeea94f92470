import Foundation
import TLaunchTestSupport
import TPM2
import Testing
import VirtualTPM

/// tpm2-tools as the client, against our vTPM over swtpm's socket protocol.
@Suite("vTPM: tpm2-tools as the client")
struct ToolsAgainstVTPMTests {
    /// Runs `body` with a served vTPM and a scratch directory, skipping cleanly when tools are absent.
    func withServed(startupClear: Bool = true,
                    _ body: (ServedVTPM, URL, (String, [String]) async throws -> String) async throws -> Void) async throws {
        guard Interop.tool("tpm2_getrandom") != nil else { return }
        let served = try await ServedVTPM(startupClear: startupClear)
        defer { served.stop() }
        let dir = served.directory.appendingPathComponent("work")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        do {
            try await body(served, dir) { name, args in try await tool(name, args, tcti: served.tcti, in: dir).1 }
        } catch is SkipPeer {
            return
        }
    }

    @Test func startupCapabilitiesPCRs() async throws {
        try await withServed(startupClear: false) { served, dir, t in
            // Initialized but not started: commands are refused with TPM_RC_INITIALIZE until TPM2_Startup.
            let early = try await tool("tpm2_getrandom", ["8"], tcti: served.tcti, in: dir, expectSuccess: false)
            #expect(early.0 != 0 && early.2.contains("0x100"))
            _ = try await t("tpm2_startup", ["-c"])
            let fixed = try await t("tpm2_getcap", ["properties-fixed"])
            #expect(fixed.contains("TPM2_PT_MANUFACTURER") && fixed.contains("TLCH"))
            #expect(try await t("tpm2_getcap", ["algorithms"]).contains("ecc"))
            #expect(try await t("tpm2_getcap", ["commands"]).contains("TPM2_CC_Quote"))
            #expect(try await t("tpm2_getcap", ["pcrs"]).contains("sha256: [ 0, 1, 2"))
            _ = try await t("tpm2_getcap", ["handles-persistent"])
            _ = try await t("tpm2_pcrextend", ["16:sha256=" + String(repeating: "11", count: 32)])
            try Data("measured".utf8).write(to: dir.appendingPathComponent("event.bin"))
            let ev = try await t("tpm2_pcrevent", ["16", "event.bin"])
            #expect(ev.contains("sha256: ") && ev.contains("sha1: "))
            let read = try await t("tpm2_pcrread", ["sha256:16"])
            var expected = try TPMCrypto.hash(.sha256, [UInt8](repeating: 0, count: 32), [UInt8](repeating: 0x11, count: 32))
            expected = try TPMCrypto.hash(.sha256, expected, TPMCrypto.hash(.sha256, Array("measured".utf8)))
            #expect(read.contains(expected.hexString.uppercased()))
            _ = try await t("tpm2_pcrreset", ["16"])
            #expect(try await t("tpm2_pcrread", ["sha256:16"]).contains(String(repeating: "0", count: 64)))
            #expect(try await t("tpm2_getrandom", ["16", "--hex"]).count == 32)
            #expect(try await t("tpm2_readclock", []).contains("reset_count"))
        }
    }

    @Test func ekAkQuoteCheckquote() async throws {
        try await withServed { _, _, t in
            for (ekAlg, akAlg, scheme) in [("rsa", "rsa", "rsassa"), ("ecc", "ecc", "ecdsa")] {
                _ = try await t("tpm2_createek", ["-c", "ek.ctx", "-G", ekAlg, "-u", "ek.pub"])
                _ = try await t("tpm2_flushcontext", ["-t"])
                _ = try await t(
                    "tpm2_createak",
                    ["-C", "ek.ctx", "-c", "ak.ctx", "-G", akAlg, "-g", "sha256", "-s", scheme, "-u", "ak.pub", "-n", "ak.name"])
                _ = try await t("tpm2_flushcontext", ["-t"])
                _ = try await t(
                    "tpm2_quote",
                    ["-c", "ak.ctx", "-l", "sha256:0,1,2,16", "-q", "c0ffee", "-m", "q.msg", "-s", "q.sig", "-o", "q.pcrs", "-g", "sha256"])
                _ = try await t("tpm2_flushcontext", ["-t"])
                let check = try await t("tpm2_checkquote",
                                        ["-u", "ak.pub", "-m", "q.msg", "-s", "q.sig", "-f", "q.pcrs", "-g", "sha256", "-q", "c0ffee"])
                #expect(check.contains("pcrs:"), "\(ekAlg) EK, \(akAlg) AK")
            }
        }
    }

    @Test func primaryCreateLoadSignVerify() async throws {
        try await withServed { served, dir, t in
            try Data("data to sign".utf8).write(to: dir.appendingPathComponent("data.txt"))
            for alg in ["rsa", "ecc"] {
                _ = try await t("tpm2_createprimary", ["-C", "o", "-g", "sha256", "-G", alg, "-c", "prim.ctx"])
                _ = try await t("tpm2_flushcontext", ["-t"])
                _ = try await t("tpm2_create", ["-C", "prim.ctx", "-G", alg, "-u", "key.pub", "-r", "key.priv"])
                _ = try await t("tpm2_flushcontext", ["-t"])
                _ = try await t("tpm2_load", ["-C", "prim.ctx", "-u", "key.pub", "-r", "key.priv", "-c", "key.ctx"])
                _ = try await t("tpm2_flushcontext", ["-t"])
                _ = try await t("tpm2_sign", ["-c", "key.ctx", "-g", "sha256", "-o", "sig.bin", "data.txt"])
                _ = try await t("tpm2_flushcontext", ["-t"])
                _ = try await t("tpm2_verifysignature",
                                ["-c", "key.ctx", "-g", "sha256", "-m", "data.txt", "-s", "sig.bin", "-t", "ticket.bin"])
                _ = try await t("tpm2_flushcontext", ["-t"])
                // A signature over other data is refused.
                try Data("other data".utf8).write(to: dir.appendingPathComponent("other.txt"))
                let bad = try await tool("tpm2_verifysignature", ["-c", "key.ctx", "-g", "sha256", "-m", "other.txt", "-s", "sig.bin"],
                                         tcti: served.tcti, in: dir, expectSuccess: false)
                #expect(bad.0 != 0, "\(alg): a wrong signature must not verify")
                _ = try await t("tpm2_flushcontext", ["-t"])
            }
        }
    }

    @Test func sealUnderPCRPolicyRefusedAfterChange() async throws {
        try await withServed { served, dir, t in
            _ = try await t("tpm2_pcrreset", ["16"])
            _ = try await t("tpm2_createpolicy", ["--policy-pcr", "-l", "sha256:16", "-L", "pcr.policy"])
            _ = try await t("tpm2_createprimary", ["-C", "o", "-c", "prim.ctx"])
            _ = try await t("tpm2_flushcontext", ["-t"])
            try Data("disk encryption key".utf8).write(to: dir.appendingPathComponent("secret.txt"))
            _ = try await t("tpm2_create", ["-C", "prim.ctx", "-L", "pcr.policy", "-i", "secret.txt", "-u", "seal.pub", "-r", "seal.priv"])
            _ = try await t("tpm2_flushcontext", ["-t"])
            _ = try await t("tpm2_load", ["-C", "prim.ctx", "-u", "seal.pub", "-r", "seal.priv", "-c", "seal.ctx"])
            _ = try await t("tpm2_flushcontext", ["-t"])
            #expect(try await t("tpm2_unseal", ["-c", "seal.ctx", "-p", "pcr:sha256:16"]) == "disk encryption key")
            _ = try await t("tpm2_flushcontext", ["-t"])
            _ = try await t("tpm2_pcrextend", ["16:sha256=" + String(repeating: "22", count: 32)])
            let refused = try await tool("tpm2_unseal", ["-c", "seal.ctx", "-p", "pcr:sha256:16"], tcti: served.tcti, in: dir,
                                         expectSuccess: false)
            #expect(refused.0 != 0 && refused.2.contains("0x99D"))
        }
    }

    @Test func makeAndActivateCredential() async throws {
        try await withServed { _, dir, t in
            _ = try await t("tpm2_createek", ["-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub"])
            _ = try await t("tpm2_flushcontext", ["-t"])
            _ = try await t("tpm2_createak",
                            ["-C", "ek.ctx", "-c", "ak.ctx", "-G", "rsa", "-g", "sha256", "-s", "rsassa", "-u", "ak.pub", "-n", "ak.name"])
            _ = try await t("tpm2_flushcontext", ["-t"])
            try Data("12345678".utf8).write(to: dir.appendingPathComponent("secret.txt"))
            let name = try Data(contentsOf: dir.appendingPathComponent("ak.name")).map { String(format: "%02x", $0) }.joined()
            _ = try await t("tpm2_makecredential", ["-T", "none", "-e", "ek.pub", "-s", "secret.txt", "-n", name, "-o", "cred.out"])
            _ = try await t("tpm2_startauthsession", ["--policy-session", "-S", "session.ctx"])
            _ = try await t("tpm2_policysecret", ["-S", "session.ctx", "-c", "e"])
            _ = try await t("tpm2_activatecredential",
                            ["-c", "ak.ctx", "-C", "ek.ctx", "-i", "cred.out", "-o", "actcred.out", "-P", "session:session.ctx"])
            _ = try await t("tpm2_flushcontext", ["session.ctx"])
            #expect(try Data(contentsOf: dir.appendingPathComponent("actcred.out")) == Data("12345678".utf8))
        }
    }

    @Test func nvLifecycleAndEvictControl() async throws {
        try await withServed { _, dir, t in
            _ = try await t("tpm2_nvdefine", ["0x1500016", "-C", "o", "-s", "32", "-a", "ownerread|ownerwrite|authread|authwrite"])
            try Data("0123456789abcdef0123456789abcdef".utf8).write(to: dir.appendingPathComponent("nvdata"))
            _ = try await t("tpm2_nvwrite", ["0x1500016", "-C", "o", "-i", "nvdata"])
            #expect(try await t("tpm2_nvread", ["0x1500016", "-C", "o", "-s", "32"]) == "0123456789abcdef0123456789abcdef")
            _ = try await t("tpm2_nvdefine",
                            ["0x1500017", "-C", "o", "-s", "8", "-a", "ownerread|ownerwrite|authread|authwrite|nt=counter"])
            _ = try await t("tpm2_nvincrement", ["0x1500017", "-C", "o"])
            _ = try await t("tpm2_nvincrement", ["0x1500017", "-C", "o"])
            _ = try await t("tpm2_nvread", ["0x1500017", "-C", "o", "-o", "counter.bin"])
            let counter = try Data(contentsOf: dir.appendingPathComponent("counter.bin"))
            #expect(counter.count == 8 && counter.last! >= 2)
            _ = try await t("tpm2_nvdefine",
                            ["0x1500018", "-C", "o", "-a", "ownerread|ownerwrite|authread|authwrite|nt=extend", "-g", "sha256"])
            try Data("hello".utf8).write(to: dir.appendingPathComponent("ext"))
            _ = try await t("tpm2_nvextend", ["0x1500018", "-C", "o", "-i", "ext"])
            _ = try await t("tpm2_nvread", ["0x1500018", "-C", "o", "-o", "ext.bin"])
            #expect(
                [UInt8](try Data(contentsOf: dir.appendingPathComponent("ext.bin")))
                    == (try TPMCrypto.hash(.sha256, [UInt8](repeating: 0, count: 32), Array("hello".utf8))))
            for i in ["0x1500016", "0x1500017", "0x1500018"] { _ = try await t("tpm2_nvundefine", [i]) }
            _ = try await t("tpm2_createprimary", ["-C", "o", "-c", "prim.ctx"])
            _ = try await t("tpm2_evictcontrol", ["-C", "o", "-c", "prim.ctx", "0x81000005"])
            #expect(try await t("tpm2_getcap", ["handles-persistent"]).contains("0x81000005"))
            _ = try await t("tpm2_evictcontrol", ["-C", "o", "-c", "0x81000005"])
            #expect(!(try await t("tpm2_getcap", ["handles-persistent"]).contains("0x81000005")))
        }
    }

    @Test func ekCertificateVerifiesAgainstThePlatformCA() async throws {
        try await withServed { served, dir, t in
            guard let openssl = Interop.tool("openssl") else { return }
            for (index, file) in [("0x01c00002", "ek_rsa"), ("0x01c0000a", "ek_ecc")] {
                _ = try await t("tpm2_nvread", [index, "-o", "\(file).der"])
                let (s1, _, e1) = try await Interop.run(
                    openssl,
                    [
                        "x509", "-inform", "der", "-in", dir.appendingPathComponent("\(file).der").path, "-out",
                        dir.appendingPathComponent("\(file).pem").path
                    ])
                #expect(s1 == 0, "\(e1)")
                let ca = served.directory.appendingPathComponent("ca")
                let (s2, out, e2) = try await Interop.run(openssl, ["verify", "-CAfile", ca.appendingPathComponent("root-ca.pem").path,
                                                               "-untrusted", ca.appendingPathComponent("intermediate-ca.pem").path,
                                                               dir.appendingPathComponent("\(file).pem").path])
                #expect(s2 == 0 && out.contains("OK"), "openssl verify \(file): \(out) \(e2)")
                let (_, text, _) = try await Interop.run(openssl,
                                                         ["x509", "-in", dir.appendingPathComponent("\(file).pem").path, "-noout", "-text"])
                #expect(text.contains("2.23.133.8.1"))
                #expect(text.contains("2.23.133.2.1=id:544C4348"))
            }
            // tpm2_getekcertificate reads the RSA one from NV too.
            let (status, _, _) = try await tool("tpm2_getekcertificate", ["-o", "ekcert.der"], tcti: served.tcti, in: dir,
                                                expectSuccess: false)
            if status == 0 {
                #expect(
                    try Data(contentsOf: dir.appendingPathComponent("ekcert.der"))
                        == Data(contentsOf: dir.appendingPathComponent("ek_rsa.der")))
            }
        }
    }
}
