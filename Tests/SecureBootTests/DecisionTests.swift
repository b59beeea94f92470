import Foundation
import MeasuredBoot
@testable import SecureBoot
import TLaunchTestSupport
import TPM2
import Testing
import X509

@Suite("Secure Boot: the firmware's decision against real variable stores")
struct DecisionTests {
    static let msVars = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"

    func image(_ path: String) throws -> PEImage { try PEImage(Array(try Data(contentsOf: URL(fileURLWithPath: path)))) }

    func msStore() throws -> VariableStore? {
        guard FileManager.default.fileExists(atPath: Self.msVars) else {
            if Interop.required { Issue.record("\(Self.msVars) is missing; scripts/test.sh installs ovmf") }
            return nil
        }
        return try VariableStore(Array(try Data(contentsOf: URL(fileURLWithPath: Self.msVars))))
    }

    @Test func microsoftStoreHasTheExpectedKeys() throws {
        guard let store = try msStore() else { return }
        #expect(store.isAuthenticated)
        #expect(store.secureBootWillBeEnabled)
        let db = store.db.certificates.map(\.certificate.subject.description)
        #expect(db.contains { $0.contains("Microsoft Corporation UEFI CA 2011") })
        #expect(db.contains { $0.contains("Microsoft Windows Production PCA 2011") })
        #expect(store.kek.certificates.contains { $0.certificate.subject.description.contains("Microsoft Corporation KEK CA 2011") })
        #expect(store.pk.certificates.count == 1)
    }

    /// Against Microsoft's db: shim (signed by the Microsoft UEFI CA) is allowed, and the authority
    /// is that CA's db entry; grub and the kernel (signed with Debian's key, which only shim
    /// trusts) are denied.
    @Test func debianChainAgainstMicrosoftDb() throws {
        guard let store = try msStore() else { return }
        guard FileManager.default.fileExists(atPath: DebianImages.shim), let kernel = DebianImages.kernel else {
            if Interop.required { Issue.record("Debian's signed shim/grub/kernel are missing; scripts/test.sh installs them") }
            return
        }
        let shim = ImageVerifier.decide(try image(DebianImages.shim), db: store.db, dbx: store.dbx)
        #expect(shim.verdict == .allowed, "\(shim)")
        #expect(shim.code == .allowedBySignature)
        #expect(shim.authority?.subject?.contains("Microsoft Corporation UEFI CA 2011") == true)
        #expect(shim.authority?.variable == "db")
        #expect(shim.signatures.contains { $0.valid && $0.chain.last?.contains("Microsoft Corporation UEFI CA 2011") == true })
        // The authority as JSON: its EFI_SIGNATURE_DATA as hex (owner GUID, then the CA's DER),
        // read back to the same bytes; text that is not hex is refused by field.
        let authority = try #require(shim.authority)
        let msCA = try #require(
            store.db.lists.flatMap(\.entries).first {
                $0.type == .certX509 && authority.signatureBytes.suffix($0.data.count).elementsEqual($0.data)
            })
        #expect(authority.signatureBytes == msCA.owner.bytes + msCA.data)
        let json = try JSONEncoder().encode(authority)
        let object = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
        #expect(object["signatureData"] as? String == hexString(authority.signatureBytes) && object["signatureBytes"] == nil)
        #expect(try JSONDecoder().decode(BootDecision.Authority.self, from: json) == authority)
        var bad = object
        bad["signatureData"] = "zz" + (object["signatureData"] as? String ?? "")
        #expect { _ = try JSONDecoder().decode(BootDecision.Authority.self,
                                               from: try JSONSerialization.data(withJSONObject: bad)) } throws: { e in
            if case DecodingError.dataCorrupted(let c) = e { return c.codingPath.last?.stringValue == "signatureData" }
            return false
        }
        for path in [DebianImages.grub, kernel] {
            let d = ImageVerifier.decide(try image(path), db: store.db, dbx: store.dbx)
            #expect(d.verdict == .denied, "\(path): \(d)")
            #expect(d.code == .deniedNotInDb)
            #expect(d.signatures.contains { $0.valid && $0.signer?.contains("Debian") == true })
        }
    }

    @Test(.corpus) func tamperedAndRevokedImagesAreDenied() throws {
        guard let store = try msStore(), FileManager.default.fileExists(atPath: DebianImages.shim) else { return }
        let shim = try image(DebianImages.shim)
        // One byte changed inside a section: the signed digest no longer matches.
        var bytes = shim.bytes
        let s = shim.sections.first { $0.sizeOfRawData > 0 }!
        bytes[s.pointerToRawData + 100] ^= 0x01
        let tampered = ImageVerifier.decide(try PEImage(bytes), db: store.db, dbx: store.dbx)
        #expect(tampered.verdict == .denied)
        #expect(tampered.signatures.allSatisfy { !$0.valid && $0.problem?.contains("changed after signing") == true })
        // The image's digest in dbx.
        var dbx = store.dbx
        dbx.lists.append(SignatureList(type: .certSHA256, signatureSize: 48,
                                       entries: [SignatureEntry(owner: .globalVariable, type: .certSHA256,
                                                                data: try shim.authenticodeDigest())]))
        let byHash = ImageVerifier.decide(shim, db: store.db, dbx: dbx)
        #expect(byHash.verdict == .denied && byHash.code == .deniedHashInDbx && byHash.authority?.variable == "dbx")
        // The signer's certificate in dbx.
        let signer = try shim.signatures().first!
        let signerCert = signer.certificates.first { $0.serialNumber == signer.signers[0].serialNumber }!
        var dbx2 = store.dbx
        dbx2.lists.append(SignatureList(type: .certX509SHA256, signatureSize: 16 + 48,
                                        entries: [SignatureEntry(owner: .globalVariable, type: .certX509SHA256,
                        data: EventLogHash.hash(.sha256, Array(signerCert.tbsCertificateBytes))! + [UInt8](repeating: 0, count: 16))
                ]))
        let bySigner = ImageVerifier.decide(shim, db: store.db, dbx: dbx2)
        #expect(bySigner.verdict == .denied && bySigner.code == .deniedSignerInDbx, "\(bySigner)")
        // The image's digest in db allows an unsigned image.
        let unsigned = try PEImage(Corpus.bytes("pe/test_pecoff_unsigned_go-uefi.efi"))
        #expect(ImageVerifier.decide(unsigned, db: store.db, dbx: store.dbx).code == .deniedUnsigned)
        var db = store.db
        db.lists.append(SignatureList(type: .certSHA256, signatureSize: 48,
                                      entries: [SignatureEntry(owner: .globalVariable, type: .certSHA256,
                                                               data: try unsigned.authenticodeDigest())]))
        let allowed = ImageVerifier.decide(unsigned, db: db, dbx: store.dbx)
        #expect(allowed.verdict == .allowed && allowed.code == .allowedByHash)
    }

    /// go-uefi's signed test image verifies with the db certificate the source names.
    @Test(.corpus) func sharedSignedImageWithItsDbCertificate() throws {
        guard Corpus.require() else { return }
        let pem = try String(contentsOf: Corpus.url("pe/test_pecoff_signer_db_go-uefi.pem"), encoding: .utf8)
        let der = try PEMToDER(pem)
        let db = SignatureDatabase(lists: [SignatureList(type: .certX509, signatureSize: 16 + der.count,
                                                         entries: [SignatureEntry(owner: .globalVariable, type: .certX509, data: der)])])
        let signed = try PEImage(Corpus.bytes("pe/test_pecoff_signed_go-uefi.efi"))
        let d = ImageVerifier.decide(signed, db: db, dbx: SignatureDatabase())
        #expect(d.verdict == .allowed, "\(d)")
        #expect(ImageVerifier.decide(signed, db: SignatureDatabase(), dbx: SignatureDatabase()).verdict == .denied)
    }

    /// The decision names certificates with `DistinguishedName.text` (plain loops, for a fresh
    /// process's start): the same words as swift-certificates' `description`, for every subject and
    /// issuer in the shared certificates and signed images, and for names with multi-valued RDNs and
    /// characters RFC 4514 escapes.
    @Test func certificateNamesReadAsSwiftCertificatesWritesThem() throws {
        var names: [DistinguishedName] = []
        if Corpus.require() {
            let certs = Corpus.url("uefi/certs")
            for file in try FileManager.default.contentsOfDirectory(atPath: certs.path).sorted() {
                let bytes = Array(try Data(contentsOf: certs.appendingPathComponent(file)))
                let cert = (try? Certificate(derEncoded: bytes))
                    ?? (try? Certificate(pemEncoded: String(decoding: bytes, as: UTF8.self)))
                let parsed = try #require(cert, "\(file)")
                names += [parsed.subject, parsed.issuer]
            }
            let pe = Corpus.url("pe")
            let images = try FileManager.default.contentsOfDirectory(atPath: pe.path).filter { $0.hasSuffix(".efi") }
                .map { pe.path + "/" + $0 }
            for path in images + [DebianImages.shim, DebianImages.grub] where FileManager.default.fileExists(atPath: path) {
                for signature in try image(path).signatures() {
                    names += signature.signers.map(\.issuer)
                    for c in signature.certificates { names += [c.subject, c.issuer] }
                }
            }
            #expect(names.count >= 40)
        }
        let multi = RelativeDistinguishedName([
            RelativeDistinguishedName.Attribute(type: .RDNAttributeType.commonName, utf8String: "a,b+c"),
            RelativeDistinguishedName.Attribute(type: .RDNAttributeType.organizationalUnitName, utf8String: " lead\\ \"q\" #x"),
        ])
        names.append(DistinguishedName([multi, try RelativeDistinguishedName(.init(type: .RDNAttributeType.countryName,
                                                                                       printableString: "US"))]))
        names.append(try DistinguishedName { CommonName("Tenant; <db> = key"); OrganizationName("Ünïcode Ltd") })
        names.append(DistinguishedName())
        for name in names { #expect(name.text == name.description) }
    }
}

func PEMToDER(_ pem: String) throws -> [UInt8] {
    let body = pem.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
    guard let d = Data(base64Encoded: body) else { throw SecureBootError(.invalidInput, "not PEM") }
    return Array(d)
}
