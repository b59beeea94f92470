import Foundation
import MeasuredBoot
import SecureBoot
import TLaunchTestSupport
import Testing
import X509

/// Our decision with db = {one certificate} against `sbverify --cert` for each pair.
@Suite("Secure Boot: decisions compared with sbverify")
struct SbverifyTests {
    @Test(.corpus) func everyImageCertificatePair() async throws {
        guard Corpus.require(), let sbverify = Interop.tool("sbverify"), let kernel = DebianImages.kernel else { return }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tlaunch-sbverify-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var certs: [(String, [UInt8])] = []
        for name in ["MicCorUEFCA2011_2011-06-27", "microsoft_uefi_ca_2023", "MicWinProPCA2011_2011-10-19", "canonical-uefi-ca",
                     "PkKek-1-snakeoil"] {
            certs.append((name, try Corpus.bytes("uefi/certs/\(name).der")))
        }
        let pem = try String(contentsOf: Corpus.url("pe/test_pecoff_signer_db_go-uefi.pem"), encoding: .utf8)
        certs.append(("go-uefi test db", try PEMToDER(pem)))
        let images = [DebianImages.shim, DebianImages.grub, kernel, Corpus.url("pe/test_pecoff_signed_go-uefi.efi").path]
        var agreed = 0, sbverifyBug = 0
        for (certName, der) in certs {
            let certPath = dir.appendingPathComponent("\(certName).pem").path
            try
                ("-----BEGIN CERTIFICATE-----\n" + Data(der).base64EncodedString(options: .lineLength64Characters)
                + "\n-----END CERTIFICATE-----\n")
                .write(toFile: certPath, atomically: true, encoding: .utf8)
            let db = SignatureDatabase(lists: [SignatureList(type: .certX509, signatureSize: 16 + der.count,
                                                             entries: [SignatureEntry(owner: .globalVariable, type: .certX509,
                                                                                      data: der)])])
            for path in images {
                let image = try PEImage(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
                let ours = ImageVerifier.decide(image, db: db, dbx: SignatureDatabase()).verdict == .allowed
                let (status, _, _) = try await Interop.run(sbverify, ["--cert", certPath, path])
                let theirs = status == 0
                if ours == theirs { agreed += 1; continue }
                // sbverify bug: when a signature embeds an intermediate whose issuer is absent (shim's
                // Microsoft CAs), sbverify waives the unresolved chain and accepts any --cert, even an
                // unrelated self-signed one. We deny: no signer chains to that certificate.
                let incomplete = try image.signatures().contains { sig in
                    sig.certificates.contains { c in c.issuer != c.subject && !sig.certificates.contains { $0.subject == c.issuer } }
                }
                #expect(theirs && !ours && incomplete, "\(certName) × \(path): ours \(ours), sbverify \(theirs)")
                sbverifyBug += 1
            }
        }
        #expect(agreed >= 16)
        // The images whose chains end in our certificate agree in both directions.
        #expect(sbverifyBug <= 4)
    }
}
