import Crypto
import _CryptoExtras
import Foundation
import X509
import MeasuredBoot
import SecureBoot
import TLaunchTestSupport
import Testing

/// `tlaunch secureboot sign` with the ovmf package's snakeoil key; the results checked by our
/// decision against OVMF_VARS_4M.snakeoil.fd and by sbverify.
@Suite("Secure Boot: signing images as sbsign does")
struct SigningTests {
    static let tlaunch = Built.tlaunch
    static let snakeoilVars = "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd"
    static let snakeoilKey = "/usr/share/ovmf/PkKek-1-snakeoil.key"
    static let snakeoilCert = "/usr/share/ovmf/PkKek-1-snakeoil.pem"

    @Test(.corpus) func kernelSignedWithSnakeoilBootsAgainstTheSnakeoilStore() async throws {
        guard let openssl = Interop.tool("openssl"), let sbverify = Interop.tool("sbverify"), let kernel = DebianImages.kernel,
              FileManager.default.fileExists(atPath: Self.snakeoilVars) else { return }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tlaunch-sign-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        // The packaged key is encrypted (passphrase "snakeoil", per the ovmf package).
        let key = dir.appendingPathComponent("snakeoil.key").path
        let (ks, _, ke) = try await Interop.run(openssl, ["pkcs8", "-in", Self.snakeoilKey, "-passin", "pass:snakeoil", "-out", key])
        #expect(ks == 0, "\(ke)")
        // Refused with a clear message while encrypted.
        let (es, _, ee) = try await Interop.run(
            Self.tlaunch,
            [
                "secureboot", "sign", kernel, "--key", Self.snakeoilKey, "--cert", Self.snakeoilCert, "--output",
                dir.appendingPathComponent("x").path
            ])
        #expect(es != 0 && ee.contains("encrypted"))

        let store = try VariableStore(Array(try Data(contentsOf: URL(fileURLWithPath: Self.snakeoilVars))))
        let original = try PEImage(Array(try Data(contentsOf: URL(fileURLWithPath: kernel))))
        #expect(ImageVerifier.decide(original, db: store.db, dbx: store.dbx).verdict == .denied)

        for (name, input) in [("kernel", kernel), ("unsigned", Corpus.url("pe/test_pecoff_unsigned_go-uefi.efi").path)] {
            let out = dir.appendingPathComponent("\(name).signed").path
            let (s, o, e) = try await Interop.run(Self.tlaunch,
                                                  ["secureboot", "sign", input, "--key", key, "--cert", Self.snakeoilCert, "--output", out])
            #expect(s == 0, "\(o) \(e)")
            let signed = try PEImage(Array(try Data(contentsOf: URL(fileURLWithPath: out))))
            let d = ImageVerifier.decide(signed, db: store.db, dbx: store.dbx)
            #expect(d.verdict == .allowed && d.code == .allowedBySignature, "\(name): \(d)")
            #expect(d.authority?.subject?.contains("SnakeOil") == true)
            let (vs, _, ve) = try await Interop.run(sbverify, ["--cert", Self.snakeoilCert, out])
            #expect(vs == 0, "sbverify \(name): \(ve)")
            // The CLI's verdict and exit status.
            let (cs, co, _) = try await Interop.run(Self.tlaunch, ["secureboot", "verify", out, "--vars", Self.snakeoilVars, "--json"])
            #expect(cs == 0)
            let json = try JSONSerialization.jsonObject(with: Data(co.utf8)) as? [String: Any]
            #expect(json?["verdict"] as? String == "allowed" && (json?["authority"] as? [String: Any])?["variable"] as? String == "db")
            let (ms, mo, _) = try await Interop.run(Self.tlaunch,
                                                    ["secureboot", "verify", out, "--vars", "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"])
            #expect(ms == 1 && mo.hasPrefix("DENIED"))
        }
        // The kernel keeps Debian's signature and gains ours; its digest is unchanged.
        let both = try PEImage(Array(try Data(contentsOf: URL(fileURLWithPath: dir.appendingPathComponent("kernel.signed").path))))
        #expect(try both.signatures().count == 2)
        #expect(try both.authenticodeDigest() == (try original.authenticodeDigest()))
        let (ds, dout, _) = try await Interop.run(Self.tlaunch, ["secureboot", "digest", dir.appendingPathComponent("kernel.signed").path])
        let want = hexString(try original.authenticodeDigest())
        #expect(ds == 0 && dout.trimmingCharacters(in: .whitespacesAndNewlines) == want)
    }
}

@Suite("Secure Boot: a tenant's own keys, end to end")
struct KeygenTests {
    @Test(.corpus) func keygenSignEnrollVerify() async throws {
        guard let sbverify = Interop.tool("sbverify"), Corpus.require(),
            FileManager.default.fileExists(atPath: "/usr/share/OVMF/OVMF_VARS_4M.fd")
        else { return }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tlaunch-keygen-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        func run(_ args: [String]) async throws -> String {
            let (s, o, e) = try await Interop.run(SigningTests.tlaunch, args)
            #expect(s == 0, "\(args): \(e)")
            return o
        }
        _ = try await run(["secureboot", "keygen", "--output", dir.path, "--name", "Tenant"])
        for k in ["PK", "KEK", "db"] {
            for ext in ["key", "pem",
                        "esl"] { #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("\(k).\(ext)").path)) }
        }
        let signed = dir.appendingPathComponent("app.efi").path, vars = dir.appendingPathComponent("vars.fd").path
        _ = try await run(["secureboot", "sign", Corpus.url("pe/test_pecoff_unsigned_go-uefi.efi").path, "--key",
                           dir.appendingPathComponent("db.key").path,
                     "--cert", dir.appendingPathComponent("db.pem").path, "--output", signed])
        _ = try await run(["secureboot", "vars", "enroll", "/usr/share/OVMF/OVMF_VARS_4M.fd", "--output", vars, "--pk",
                           dir.appendingPathComponent("PK.pem").path,
                     "--kek", dir.appendingPathComponent("KEK.esl").path, "--db", dir.appendingPathComponent("db.esl").path])
        #expect(try await run(["secureboot", "verify", signed, "--vars", vars]).hasPrefix("ALLOWED"))
        let (vs, _, _) = try await Interop.run(sbverify, ["--cert", dir.appendingPathComponent("db.pem").path, signed])
        #expect(vs == 0)
        // Signed with the KEK instead: not in db, denied by us and by sbverify against the db cert.
        let wrong = dir.appendingPathComponent("wrong.efi").path
        _ = try await run(["secureboot", "sign", Corpus.url("pe/test_pecoff_unsigned_go-uefi.efi").path, "--key",
                           dir.appendingPathComponent("KEK.key").path,
                     "--cert", dir.appendingPathComponent("KEK.pem").path, "--output", wrong])
        let (ws, wo, _) = try await Interop.run(SigningTests.tlaunch, ["secureboot", "verify", wrong, "--vars", vars])
        #expect(ws == 1 && wo.hasPrefix("DENIED"))
        let (ss, _, _) = try await Interop.run(sbverify, ["--cert", dir.appendingPathComponent("db.pem").path, wrong])
        #expect(ss != 0)
    }

    /// Serial numbers whose top bit is set must be encoded as positive INTEGERs in SignerInfo
    /// (sbverify and firmware look the signer up by issuer and serial).
    @Test(.corpus, arguments: [[0x01, 0x02, 0x03], [0x80, 0x01, 0x02], [0xFF, 0xFF, 0xFF, 0xFF]] as [[UInt8]])
    func serialNumbersOfEveryShape(_ serial: [UInt8]) async throws {
        guard let sbverify = Interop.tool("sbverify"), Corpus.require() else { return }
        let key = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        let name = try DistinguishedName { CommonName("serial test") }
        let cert = try Certificate(version: .v3, serialNumber: .init(bytes: serial), publicKey: .init(key.publicKey),
                                   notValidBefore: Date() - 60, notValidAfter: Date() + 86400, issuer: name, subject: name,
                                   signatureAlgorithm: .sha256WithRSAEncryption, extensions: Certificate.Extensions(),
                                   issuerPrivateKey: .init(key))
        let signer = AuthenticodeSigner(key: .rsa(key), certificate: cert)
        let signed = try signer.sign(PEImage(Corpus.bytes("pe/test_pecoff_unsigned_go-uefi.efi")))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tlaunch-serial-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data(signed).write(to: dir.appendingPathComponent("s.efi"))
        try cert.serializeAsPEM().pemString.write(to: dir.appendingPathComponent("c.pem"), atomically: true, encoding: .utf8)
        let (s, _, _) = try await Interop.run(
            sbverify, ["--cert", dir.appendingPathComponent("c.pem").path, dir.appendingPathComponent("s.efi").path])
        #expect(s == 0, "serial \(serial)")
        let d = ImageVerifier.decide(try PEImage(signed), db: try SignatureDatabase(certificates: [cert]), dbx: SignatureDatabase())
        #expect(d.verdict == .allowed)
    }
}
