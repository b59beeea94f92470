import Crypto
import MeasuredBoot
import SwiftASN1
import TPM2
import X509

/// A signature database (db, dbx, KEK, PK, MokList): EFI signature lists.
public struct SignatureDatabase: Sendable {
    public var lists: [SignatureList] { didSet { certificates = Self.parseCertificates(lists) } }

    /// X.509 entries with their certificates (entries that do not parse are skipped), parsed
    /// once when the lists are set: every boot decision consults them.
    public private(set) var certificates: [(entry: SignatureEntry, certificate: Certificate)]

    public init(lists: [SignatureList] = []) {
        self.lists = lists
        certificates = Self.parseCertificates(lists)
    }

    /// Parses EFI_SIGNATURE_LISTs (an `.esl` file or a variable's data).
    public init(esl bytes: [UInt8]) throws(SecureBootError) {
        do { lists = try SignatureList.parseAll(bytes[...]) } catch {
            throw SecureBootError(.invalidInput, error.reason, offset: error.offset, field: error.field)
        }
        certificates = Self.parseCertificates(lists)
    }

    static func parseCertificates(_ lists: [SignatureList]) -> [(entry: SignatureEntry, certificate: Certificate)] {
        lists.flatMap { l in l.entries.compactMap { e in
            guard e.type == .certX509, let c = try? Certificate(derEncoded: e.data) else { return nil }
            return (e, c)
        } }
    }

    public var encoded: [UInt8] { lists.flatMap(\.encoded) }

    /// One EFI_CERT_X509 list per certificate, owned by `owner`.
    public init(certificates: [Certificate], owner: EFIGUID = .globalVariable) throws(SecureBootError) {
        var lists: [SignatureList] = []
        for c in certificates {
            var s = DER.Serializer()
            do { try s.serialize(c) } catch { throw SecureBootError(.invalidInput, "cannot encode \(c.subject): \(error)") }
            let der = s.serializedBytes
            lists.append(SignatureList(type: .certX509, signatureSize: 16 + der.count,
                                       entries: [SignatureEntry(owner: owner, type: .certX509, data: der)]))
        }
        self.lists = lists
        self.certificates = Self.parseCertificates(lists)
    }

    /// The hash entry equal to `digest` of the given algorithm.
    public func hashEntry(_ alg: TPMAlgID, _ digest: [UInt8]) -> SignatureEntry? {
        guard let type = Self.hashType(alg) else { return nil }
        for l in lists where l.type == type { for e in l.entries where e.data == digest { return e } }
        return nil
    }

    /// Whether the database holds image hashes of this algorithm (so a digest is worth computing).
    public func hasHashes(_ alg: TPMAlgID) -> Bool {
        guard let type = Self.hashType(alg) else { return false }
        return lists.contains { $0.type == type && !$0.entries.isEmpty }
    }

    static func hashType(_ alg: TPMAlgID) -> EFIGUID? {
        switch alg {
        case .sha1: return .certSHA1
        case .sha256: return .certSHA256
        case .sha384: return .certSHA384
        case .sha512: return .certSHA512
        default: return nil
        }
    }

    /// An entry revoking this certificate: the certificate itself, or the hash of its TBS
    /// (EFI_CERT_X509_SHA256/384/512, whose data starts with the hash).
    public func revocation(of cert: Certificate) -> SignatureEntry? {
        // Each form is computed once, and only when a list of its type is there (a dbx of image
        // hashes, the usual one, needs none of them).
        var der: [UInt8]?
        var tbsDigests: [EFIGUID: [UInt8]] = [:]
        func tbsDigest(_ type: EFIGUID) -> [UInt8] {
            if let d = tbsDigests[type] { return d }
            let tbs = cert.tbsCertificateBytes
            let d: [UInt8]
            switch type {
            case .certX509SHA256: d = SHA256.hash(data: tbs).byteArray
            case .certX509SHA384: d = SHA384.hash(data: tbs).byteArray
            default: d = SHA512.hash(data: tbs).byteArray
            }
            tbsDigests[type] = d
            return d
        }
        for l in lists {
            for e in l.entries {
                switch l.type {
                case .certX509:
                    if der == nil {
                        var serializer = DER.Serializer()
                        der = (try? serializer.serialize(cert)).map { serializer.serializedBytes } ?? []
                    }
                    if e.data == der { return e }
                case .certX509SHA256 where e.data.count >= 32 && e.data.prefix(32).elementsEqual(tbsDigest(.certX509SHA256)): return e
                case .certX509SHA384 where e.data.count >= 48 && e.data.prefix(48).elementsEqual(tbsDigest(.certX509SHA384)): return e
                case .certX509SHA512 where e.data.count >= 64 && e.data.prefix(64).elementsEqual(tbsDigest(.certX509SHA512)): return e
                default: continue
                }
            }
        }
        return nil
    }
}

/// The firmware's decision about one image, with the reason and the db entry that authorised
/// it (what the firmware measures into PCR 7 as EV_EFI_VARIABLE_AUTHORITY).
public struct BootDecision: Sendable, Codable, Hashable {
    public enum Verdict: String, Sendable, Codable { case allowed, denied }
    public struct Code: RawRepresentable, Sendable, Codable, Hashable {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public static let allowedBySignature = Self(rawValue: "allowed-by-signature")
        public static let allowedByHash = Self(rawValue: "allowed-by-hash")
        public static let deniedHashInDbx = Self(rawValue: "denied-hash-in-dbx")
        public static let deniedSignerInDbx = Self(rawValue: "denied-signer-in-dbx")
        public static let deniedNotInDb = Self(rawValue: "denied-not-in-db")
        public static let deniedUnsigned = Self(rawValue: "denied-unsigned")
    }
    public struct Authority: Sendable, Codable, Hashable {
        /// "db" (or "dbx" for the entry that revoked).
        public var variable: String
        public var owner: String
        public var type: String
        public var subject: String?
        public var sha256Fingerprint: String?
        public var hash: String?
        /// EFI_SIGNATURE_DATA (owner ‖ data): the bytes firmware measures as the authority, hex.
        public var signatureData: String
        /// The same bytes, as the firmware measures them (not encoded: `signatureData` carries them).
        public var signatureBytes: [UInt8]

        enum CodingKeys: String, CodingKey { case variable, owner, type, subject, sha256Fingerprint, hash, signatureData }

        public init(variable: String, owner: String, type: String, subject: String?, sha256Fingerprint: String?, hash: String?,
                    signatureBytes: [UInt8]) {
            self.variable = variable; self.owner = owner; self.type = type; self.subject = subject
            self.sha256Fingerprint = sha256Fingerprint; self.hash = hash
            self.signatureBytes = signatureBytes
            self.signatureData = hexString(signatureBytes)
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            variable = try c.decode(String.self, forKey: .variable)
            owner = try c.decode(String.self, forKey: .owner)
            type = try c.decode(String.self, forKey: .type)
            subject = try c.decodeIfPresent(String.self, forKey: .subject)
            sha256Fingerprint = try c.decodeIfPresent(String.self, forKey: .sha256Fingerprint)
            hash = try c.decodeIfPresent(String.self, forKey: .hash)
            signatureData = try c.decode(String.self, forKey: .signatureData)
            guard let bytes = [UInt8](hex: signatureData) else {
                throw DecodingError.dataCorruptedError(forKey: .signatureData, in: c,
                                                       debugDescription: "not hex: the EFI_SIGNATURE_DATA's bytes are written as hex")
            }
            signatureBytes = bytes
        }
    }
    public struct SignatureReport: Sendable, Codable, Hashable {
        public var signer: String?
        public var issuer: String?
        public var digestAlgorithm: String
        public var valid: Bool
        public var problem: String?
        /// The certificates from the signer up to the db anchor, when one was reached.
        public var chain: [String]
    }

    public var verdict: Verdict
    public var code: Code
    public var reason: String
    public var authority: Authority?
    public var imageDigestSHA256: String
    public var signatures: [SignatureReport]
}

/// An image ready for boot decisions: its SHA-256 Authenticode digest, its signatures and each
/// signer's verification, computed once.
public struct PreparedImage: Sendable {
    public let image: PEImage
    public let sha256: [UInt8]
    public let signatures: Result<[AuthenticodeSignature], SecureBootError>
    /// `signerResults[i][j]`: `verifySigner` of signature i's signer j.
    public let signerResults: [[Result<Certificate, SecureBootError>]]

    public init(_ image: PEImage) {
        self.image = image
        sha256 = (try? image.authenticodeDigest(.sha256)) ?? []
        do throws(SecureBootError) {
            let sigs = try image.signatures()
            signatures = .success(sigs)
            signerResults = sigs.map { sig in sig.signers.map { sig.verifySigner($0) } }
        } catch {
            signatures = .failure(error)
            signerResults = []
        }
    }
}

public enum ImageVerifier {
    /// UEFI image verification (UEFI 2.10, 32.5.3; as EDK2's DxeImageVerificationLib does it):
    /// denied if the image's digest or a certificate of a signer's chain is in dbx; allowed if a
    /// valid signature chains to a db certificate, or the digest is in db; denied otherwise.
    public static func decide(_ image: PEImage, db: SignatureDatabase, dbx: SignatureDatabase) -> BootDecision {
        decide(PreparedImage(image), db: db, dbx: dbx)
    }

    /// The same decision for an image whose digest, signatures and signer checks were computed
    /// once (firmware and shim decide the same image against several databases).
    public static func decide(_ prepared: PreparedImage, db: SignatureDatabase, dbx: SignatureDatabase) -> BootDecision {
        let image = prepared.image
        let sha256 = prepared.sha256
        var decision = BootDecision(verdict: .denied, code: .deniedNotInDb, reason: "", authority: nil,
                                    imageDigestSHA256: hexString(sha256), signatures: [])
        // 1. The image's digest in dbx, in any algorithm dbx uses.
        for alg: TPMAlgID in [.sha256, .sha1, .sha384, .sha512] where dbx.hasHashes(alg) {
            guard let d = alg == .sha256 ? sha256 : try? image.authenticodeDigest(alg), let e = dbx.hashEntry(alg, d) else { continue }
            decision.code = .deniedHashInDbx
            decision.reason = "the image's \(PCRValuesName(alg)) Authenticode digest is revoked in dbx"
            decision.authority = authority("dbx", e, hashType: alg)
            return decision
        }
        let signatures: [AuthenticodeSignature]
        do { signatures = try prepared.signatures.get() } catch {
            decision.reason = "the image's signature is malformed: \(error.reason)"
            decision.signatures = [BootDecision.SignatureReport(signer: nil, issuer: nil, digestAlgorithm: "-", valid: false,
                                                                problem: error.description, chain: [])]
            return hashOrDeny(image, db: db, decision)
        }
        var allowed: (SignatureEntry, Certificate, [Certificate])?
        for (i, sig) in signatures.enumerated() {
            for (j, s) in sig.signers.enumerated() {
                var report = BootDecision.SignatureReport(signer: nil, issuer: s.issuer.text,
                                                          digestAlgorithm: PCRValuesName(s.digestAlgorithm),
                                                          valid: false, problem: nil, chain: [])
                defer { decision.signatures.append(report) }
                guard let computed = sig.digestAlgorithm == .sha256 ? sha256 : try? image.authenticodeDigest(sig.digestAlgorithm),
                    computed == sig.imageDigest
                else {
                    report.problem = "the signed digest is not the image's \(PCRValuesName(sig.digestAlgorithm)) Authenticode digest (the "
                                   + "image was changed after signing)"
                    continue
                }
                let cert: Certificate
                switch prepared.signerResults[i][j] {
                case .failure(let e):
                    report.problem = e.reason
                    continue
                case .success(let c): cert = c
                }
                report.signer = cert.subject.text
                report.valid = true
                let chain = buildChain(from: cert, embedded: sig.certificates, anchors: db.certificates)
                // 2. A certificate of the chain (or any embedded certificate) revoked in dbx.
                for c in chain.path + sig.certificates {
                    if let e = dbx.revocation(of: c) {
                        decision.code = .deniedSignerInDbx
                        decision.reason = "a certificate of the signature (\(c.subject.text)) is revoked in dbx"
                        decision.authority = authority("dbx", e, hashType: nil)
                        report.chain = chain.path.map(\.subject.text)
                        return decision
                    }
                }
                report.chain = chain.path.map(\.subject.text)
                if let anchor = chain.anchor, allowed == nil { allowed = (anchor.entry, anchor.certificate, chain.path) }
                if chain.anchor == nil { report.problem = "the signer does not chain to a certificate in db" }
            }
        }
        if let (entry, cert, _) = allowed {
            decision.verdict = .allowed
            decision.code = .allowedBySignature
            decision.reason = "signed by a key that chains to db certificate \(cert.subject.text)"
            decision.authority = authority("db", entry, hashType: nil, certificate: cert)
            return decision
        }
        if signatures.isEmpty { decision.code = .deniedUnsigned }
        decision.reason = signatures.isEmpty ? "the image is unsigned and its digest is not in db"
            : "no valid signature chains to a certificate in db, and the image's digest is not in db"
        return hashOrDeny(image, db: db, decision)
    }

    static func hashOrDeny(_ image: PEImage, db: SignatureDatabase, _ d: BootDecision) -> BootDecision {
        var d = d
        for alg: TPMAlgID in [.sha256, .sha1, .sha384, .sha512] where db.hasHashes(alg) {
            guard let digest = try? image.authenticodeDigest(alg), let e = db.hashEntry(alg, digest) else { continue }
            d.verdict = .allowed
            d.code = .allowedByHash
            d.reason = "the image's \(PCRValuesName(alg)) Authenticode digest is in db"
            d.authority = authority("db", e, hashType: alg)
            return d
        }
        return d
    }

    struct Chain {
        var path: [Certificate]
        var anchor: (entry: SignatureEntry, certificate: Certificate)?
    }

    /// From the signer towards db: the signer itself in db, or a certificate (embedded, up to 8
    /// levels) whose issuer is a db certificate that signed it. Times are not checked: the
    /// firmware has no trusted clock.
    static func buildChain(from signer: Certificate, embedded: [Certificate],
                           anchors: [(entry: SignatureEntry, certificate: Certificate)]) -> Chain {
        var path = [signer]
        var current = signer
        for _ in 0..<8 {
            if let a = anchors.first(where: { $0.certificate == current }) { return Chain(path: path, anchor: a) }
            if let a = anchors.first(where: {
                $0.certificate.subject == current.issuer && $0.certificate.publicKey.isValidSignature(current.signature, for: current)
            }) {
                return Chain(path: path + [a.certificate], anchor: a)
            }
            guard
                let next = embedded.first(where: {
                    $0 != current && $0.subject == current.issuer && $0.publicKey.isValidSignature(current.signature, for: current)
                })
            else { break }
            path.append(next)
            current = next
        }
        return Chain(path: path, anchor: nil)
    }

    static func authority(_ variable: String, _ e: SignatureEntry, hashType: TPMAlgID?,
                          certificate: Certificate? = nil) -> BootDecision.Authority {
        let cert = certificate ?? (e.type == .certX509 ? try? Certificate(derEncoded: e.data) : nil)
        return BootDecision.Authority(variable: variable, owner: e.owner.description,
                                      type: SignatureList(type: e.type, header: [], signatureSize: 0, entries: []).typeName,
            subject: cert?.subject.text, sha256Fingerprint: cert.map { _ in hexString(Array(SHA256.hash(data: e.data))) },
                                      hash: cert == nil ? hexString(e.data) : nil, signatureBytes: e.owner.bytes + e.data)
    }
}

func PCRValuesName(_ alg: TPMAlgID) -> String {
    let name = PCRValues.bankName(alg).uppercased()
    return name.hasPrefix("SHA") ? "SHA-" + name.dropFirst(3) : name
}
