import Foundation
import MeasuredBoot
import SecureBoot
import TLaunchTestSupport
import TPM2
import Testing

@Suite("Secure Boot: Authenticode digests of real images")
struct AuthenticodeDigestTests {
    @Test(.corpus) func sharedImagesHaveTheSourcesDigests() throws {
        guard Corpus.require() else { return }
        var checked = 0
        for file in ["go-uefi.expected_authenticode.json", "go-efilib.expected_authenticode.json", "fwupd.expected_authenticode.json"] {
            let object = try Corpus.json("pe/\(file)") as? [String: Any]
            let files = object?["files"] as? [String: [String: Any]] ?? [:]
            for (name, expected) in files.sorted(by: { $0.key < $1.key }) {
                let image = try PEImage(Corpus.bytes("pe/\(name)"))
                for (key, alg) in [("sha256", TPMAlgID.sha256), ("sha1", .sha1)] {
                    guard let want = expected[key] as? String else { continue }
                    #expect(hexString(try image.authenticodeDigest(alg)) == want, "\(name) \(key)")
                    checked += 1
                }
                if let padded = expected["sha256_padded8"] as? String {
                    // What a signer hashes: the image padded with zeros to 8 bytes.
                    var bytes = image.bytes
                    while bytes.count % 8 != 0 { bytes.append(0) }
                    #expect(hexString(try PEImage(bytes).authenticodeDigest()) == padded, "\(name) padded")
                    checked += 1
                }
            }
        }
        #expect(checked >= 12)
    }

    /// Debian's signed shim, grub and kernel: our digests equal pesign's, and the digest inside
    /// each image's own signature.
    @Test(arguments: ["shim", "grub", "kernel"])
    func debianImagesAgreeWithPesign(_ which: String) async throws {
        guard let pesign = Interop.tool("pesign") else { return }
        let path = which == "shim" ? DebianImages.shim : which == "grub" ? DebianImages.grub : DebianImages.kernel
        guard let path, FileManager.default.fileExists(atPath: path) else {
            if Interop.required {
                Issue.record("\(which) is not installed; scripts/test.sh installs shim-signed, grub-efi-amd64-signed and linux-image-amd64")
            }
            return
        }
        let image = try PEImage(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
        #expect(image.isSigned)
        for (alg, name) in [(TPMAlgID.sha256, "sha256"), (.sha1, "sha1")] {
            let (status, out, err) = try await Interop.run(pesign, ["-i", path, "-h", "-d", name])
            #expect(status == 0, "\(err)")
            let theirs = out.split(separator: " ").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            #expect(hexString(try image.authenticodeDigest(alg)) == theirs, "\(which) \(name)")
        }
        for alg: TPMAlgID in [.sha384, .sha512] { #expect(try image.authenticodeDigest(alg).count == (alg == .sha384 ? 48 : 64)) }
    }
}
