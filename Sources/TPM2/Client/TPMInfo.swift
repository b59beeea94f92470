import X509

/// What `tlaunch tpm info` reports: the TPM's identity, algorithms, PCR banks and EK certificates.
public struct TPMInfo: Sendable, Codable {
    public struct EKCertificate: Sendable, Codable {
        public var nvIndex: String
        public var kind: String
        public var subject: String
        public var issuer: String
        public var serial: String
        public var notAfter: String
    }
    public var manufacturer: String
    public var vendorString: String
    public var firmwareVersion: String
    public var specFamily: String
    public var specLevel: UInt32
    public var specRevision: String
    public var specDate: String
    public var algorithms: [String]
    public var eccCurves: [String]
    public var pcrBanks: [String: [Int]]
    public var ekCertificates: [EKCertificate]

    /// Known EK certificate indices (TCG EK Credential Profile 2.x: low and high ranges).
    public static let ekCertificateIndices: [(UInt32, String)] = [
        (0x01C0_0002, "RSA 2048"), (0x01C0_000A, "ECC NIST P-256"), (0x01C0_0012, "RSA 2048 (high range)"),
        (0x01C0_0014, "ECC NIST P-256 (high range)"), (0x01C0_0016, "ECC NIST P-384"), (0x01C0_0018, "ECC NIST P-521"),
        (0x01C0_001A, "ECC SM2 P-256"), (0x01C0_001C, "RSA 3072"), (0x01C0_001E, "RSA 4096"),
    ]
}

/// ASCII of a 32-bit property (vendor strings and the manufacturer id), trailing NULs and spaces dropped.
func propertyString(_ v: UInt32) -> String {
    let bytes = be32(v).filter { $0 != 0 }
    return String(decoding: bytes, as: UTF8.self).trimmingWhitespace
}

extension TPMClient {
    /// Collects ``TPMInfo``.
    public func info() async throws(TPMError) -> TPMInfo {
        let p = try await tpmProperties()
        func v(_ k: TPMPT) -> UInt32 { p[k] ?? 0 }
        let vendor = [TPMPT.vendorString1, .vendorString2, .vendorString3, .vendorString4].map { propertyString(v($0)) }.joined()
        let fw1 = v(.firmwareVersion1), fw2 = v(.firmwareVersion2)
        // Vendor-defined; shown as the two 32-bit words in hex, as tpm2_getcap does.
        let firmware = "\(hex32(fw1)).\(hex32(fw2).dropFirst(2))"
        var algs: [String] = []
        if case .algorithms(let list) = try await getCapability(.algs, property: 0, count: 169).data {
            algs = list.map(\.alg.shortName)
        }
        var curves: [String] = []
        if case .eccCurves(let list) = try await getCapability(.eccCurves, property: 0, count: 508).data {
            curves = list.map(\.description)
        }
        var banks: [String: [Int]] = [:]
        for sel in try await pcrBanks().pcrSelections where !sel.pcrs.isEmpty {
            banks[sel.hash.shortName] = sel.pcrs
        }
        var certs: [TPMInfo.EKCertificate] = []
        let defined = Set(try await handles(from: TPMHandle(0x01C0_0000)).map(\.rawValue))
        let chunk = max(64, Int(v(.nvBufferMax)))
        for (index, kind) in TPMInfo.ekCertificateIndices where defined.contains(index) {
            let der = try await nvRead(TPMHandle(index), authHandle: .owner, chunk: chunk)
            guard let cert = try? Certificate(derEncoded: der) else {
                certs.append(.init(nvIndex: hex32(index), kind: kind, subject: "(not a parsable X.509 certificate)", issuer: "", serial: "",
                                   notAfter: ""))
                continue
            }
            certs.append(.init(nvIndex: hex32(index), kind: kind, subject: cert.subject.description, issuer: cert.issuer.description,
                               serial: cert.serialNumber.description, notAfter: "\(cert.notValidAfter)"))
        }
        let rev = v(.revision)
        return TPMInfo(
            manufacturer: propertyString(v(.manufacturer)), vendorString: vendor, firmwareVersion: firmware,
            specFamily: propertyString(v(.familyIndicator)), specLevel: v(.level),
            specRevision: "\(rev / 100).\(String(format2: rev % 100))", specDate: "\(v(.year)), day \(v(.dayOfYear))",
            algorithms: algs, eccCurves: curves, pcrBanks: banks, ekCertificates: certs)
    }
}

extension String {
    init(format2 v: UInt32) { self = v < 10 ? "0\(v)" : "\(v)" }
}
