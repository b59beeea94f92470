import Foundation
import MeasuredBoot
import SecureBoot
import TLaunchTestSupport
import Testing

@Suite("Secure Boot: EFI signature lists from real machines")
struct SignatureListTests {
    static let typeNames: [String: EFIGUID] = ["x509": .certX509, "sha256": .certSHA256, "sha1": .certSHA1, "x509_sha256": .certX509SHA256]

    @Test(.corpus) func everyListHasItsExpectedContents() throws {
        guard Corpus.require() else { return }
        let files = try FileManager.default.contentsOfDirectory(atPath: Corpus.url("uefi").path).filter {
            $0.hasPrefix("esl_") && $0.hasSuffix(".expected.json")
        }.sorted()
        #expect(files.count >= 4)
        for f in files {
            let x = try Corpus.json("uefi/\(f)") as? [String: Any] ?? [:]
            let bytes = try Corpus.bytes("uefi/\(x["file"] as? String ?? "")")
            let db = try SignatureDatabase(esl: bytes)
            let lists = x["lists"] as? [[String: Any]] ?? []
            #expect(db.lists.count == lists.count, "\(f)")
            for (l, want) in zip(db.lists, lists) {
                #expect(l.type.description == want["signature_type"] as? String, "\(f)")
                #expect(l.header.count == x["header_size"] as? Int ?? -1)
                let sigs = want["signatures"] as? [[String: Any]] ?? []
                #expect(l.entries.count == sigs.count, "\(f)")
                for (e, s) in zip(l.entries, sigs) {
                    #expect(e.owner.description == s["owner"] as? String)
                    #expect(Self.typeNames[s["type"] as? String ?? ""] == e.type, "\(f) \(s["type"] ?? "")")
                    if let hex = s["data_hex"] as? String {
                        #expect(hexString(e.data) == hex)
                    } else {
                        #expect(e.data.count == s["data_len"] as? Int)
                        #expect(hexString(EventLogHash.hash(.sha256, e.data) ?? []) == s["data_sha256"] as? String)
                    }
                }
            }
            // Encoding gives back the bytes.
            #expect(db.encoded == bytes, "\(f)")
        }
    }

    @Test(.corpus) func brokenListsFailPrecisely() throws {
        guard Corpus.require() else { return }
        let cases: [(String, String)] = [
            ("esl_invalid_inconsistent_sizes1_go-efilib.siglist", "EFI_SIGNATURE_LIST[0].Signature"),
            ("esl_invalid_invalid_sigheader_size_go-efilib.siglist", "SignatureHeaderSize"),
            ("esl_invalid_invalid_signature_size_divide_by_zero_go-efilib.siglist", "SignatureSize"),
            ("esl_invalid_invalid_signature_size_go-efilib.siglist", "SignatureSize"),
        ]
        for (file, field) in cases {
            let e = #expect(throws: SecureBootError.self) { try SignatureDatabase(esl: Corpus.bytes("uefi/\(file)")) }
            #expect(e?.field?.contains(field) == true, "\(file): \(String(describing: e))")
            #expect(e?.offset != nil, "\(file)")
        }
    }

    @Test(.corpus) func realDatabasesAndCertificates() throws {
        guard Corpus.require() else { return }
        // A Dell laptop's db (efivarfs: 4 attribute bytes, then the lists) holds Microsoft's CAs.
        let raw = try Corpus.bytes("uefi/efivars_dell_precision_7510_secboot/db-d719b2cb-3d3a-4596-a3bc-dad00e67656f")
        let db = try SignatureDatabase(esl: Array(raw.dropFirst(4)))
        let subjects = db.certificates.map(\.certificate.subject.description)
        #expect(subjects.contains { $0.contains("Microsoft Corporation UEFI CA 2011") })
        let dbx = try SignatureDatabase(
            esl: Array(try Corpus.bytes("uefi/efivars_dell_precision_7510_secboot/dbx-d719b2cb-3d3a-4596-a3bc-dad00e67656f").dropFirst(4)))
        #expect(dbx.lists.reduce(0) { $0 + $1.entries.count } > 10)
    }
}
