import Foundation
import MeasuredBoot
import TPM2

// The attestation API's requests and answers (the JSON of `/v1`), its error and its rules for
// names, shared by the service that answers, the agent and the CLI that ask, and the fleet.

/// A refusal of the attestation service: its kind (an HTTP status to the API) and what to do.
public struct AttestationServiceError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable {
        case badRequest, unauthorized, forbidden, notFound, conflict, gone, `internal`
        public var status: Int {
            switch self {
            case .badRequest: 400
            case .unauthorized: 401
            case .forbidden: 403
            case .notFound: 404
            case .conflict: 409
            case .gone: 410
            case .internal: 500
            }
        }
    }
    public var kind: Kind
    public var message: String
    /// The request field at fault, when one is.
    public var field: String?
    public init(_ kind: Kind, _ message: String, field: String? = nil) { self.kind = kind; self.message = message; self.field = field }
    public var description: String { message }
}

/// VM names as the API takes them (a path segment, a key in every table).
public enum VMName {
    public static func check(_ vm: String) throws(AttestationServiceError) {
        guard (1...64).contains(vm.utf8.count),
            vm.utf8.allSatisfy({
                ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x61 && $0 <= 0x7a) || $0 == 0x2e || $0 == 0x5f
                    || $0 == 0x2d
            }),
              vm.first != "." else {
            throw AttestationServiceError(.badRequest, "VM name \"\(vm.prefix(80))\" must be 1–64 letters, digits, '.', '_' or '-'",
                                          field: "vm")
        }
    }
}

/// How a VM's first baseline is set.
public enum BaselineMode: String, Sendable, Codable, CaseIterable {
    /// Trust on first use: the first boot with complete evidence that passes the policy.
    case learn
    /// The first baseline waits for a person to approve a boot.
    case approve
    /// Set from the VM's disk before it boots (`vm baseline predict`); nothing is learned.
    case predicted
}

// MARK: Requests and answers (the JSON of the HTTP API)

public struct NonceGrant: Sendable, Codable, Hashable {
    public var nonce: String
    public var expires: String
    public var expiresIn: Int
    /// What the quote must cover for the current policy (the agent quotes at least this).
    public var quote: QuoteRequest?
    /// The audience the token will be issued for.
    public var audience: String?

    public struct QuoteRequest: Sendable, Codable, Hashable {
        /// Bank names (sha256, …) and the PCRs to quote in each.
        public var banks: [String]
        public var pcrs: [Int]
        public init(banks: [String], pcrs: [Int]) { self.banks = banks; self.pcrs = pcrs }
    }

    public init(nonce: String, expires: String, expiresIn: Int, quote: QuoteRequest?, audience: String?) {
        self.nonce = nonce; self.expires = expires; self.expiresIn = expiresIn; self.quote = quote; self.audience = audience
    }
}

/// Asking for a nonce: a relying party names the audience its token must carry (`aud`).
public struct NonceRequest: Sendable, Codable, Hashable {
    public var audience: String?
    public init(audience: String?) { self.audience = audience }
}

public struct EnrolmentRequest: Sendable, Codable, Hashable {
    /// TPMT_PUBLIC of the EK and of the new AK, hex.
    public var ekPublic: String
    public var akPublic: String
    /// The EK certificate as read from NV, DER in base64.
    public var ekCertificate: String?
    public init(ekPublic: String, akPublic: String,
                ekCertificate: String?) { self.ekPublic = ekPublic; self.akPublic = akPublic; self.ekCertificate = ekCertificate }
}

public struct EnrolmentChallenge: Sendable, Codable, Hashable {
    public var id: String
    /// TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET (with their size prefixes), hex: ActivateCredential's inputs.
    public var credentialBlob: String
    public var encryptedSecret: String
    public var expires: String
    public init(id: String, credentialBlob: String, encryptedSecret: String, expires: String) {
        self.id = id; self.credentialBlob = credentialBlob; self.encryptedSecret = encryptedSecret; self.expires = expires
    }
}

public struct ActivationAnswer: Sendable, Codable, Hashable {
    public var secret: String
    public init(secret: String) { self.secret = secret }
}

public struct EnrolmentReceipt: Sendable, Codable, Hashable {
    public var vm: String
    public var akName: String
    public var akCertificate: String
    public var ekCertificateSubject: String
    public init(vm: String, akName: String, akCertificate: String, ekCertificateSubject: String) {
        self.vm = vm; self.akName = akName; self.akCertificate = akCertificate; self.ekCertificateSubject = ekCertificateSubject
    }
}

/// What an attestation yields: every check with its reason, the baseline changes, the token.
public struct AttestationOutcome: Sendable, Codable, Hashable {
    public var id: String
    public var vm: String
    public var time: String
    public var passed: Bool
    public var status: String
    public var checks: [Check]
    /// How this boot stands against the VM's baseline.
    public var baseline: BaselineStatus?
    /// Where the VM's baseline came from and since when (nil when it has none).
    public var baselineSource: BaselineInfo?
    public var changes: [BaselineChange]
    public var rebooted: Bool?
    public var token: String?
    public var tokenID: String?
    public var policy: PolicyRef
    /// Secure Boot state, boot chain and command line as the verified log shows them.
    public var facts: FactsSummary?

    public init(id: String, vm: String, time: String, passed: Bool, status: String, checks: [Check], baseline: BaselineStatus?,
                baselineSource: BaselineInfo?, changes: [BaselineChange], rebooted: Bool?, token: String?, tokenID: String?,
                policy: PolicyRef, facts: FactsSummary?) {
        self.id = id; self.vm = vm; self.time = time; self.passed = passed; self.status = status; self.checks = checks
        self.baseline = baseline; self.baselineSource = baselineSource; self.changes = changes; self.rebooted = rebooted
        self.token = token; self.tokenID = tokenID; self.policy = policy; self.facts = facts
    }

    public struct PolicyRef: Sendable, Codable, Hashable {
        public var id: String
        public var version: Int
        public init(id: String, version: Int) { self.id = id; self.version = version }
    }
    public struct BaselineInfo: Sendable, Codable, Hashable {
        public var source: BaselineSource
        /// When it was set (RFC 3339) and from which attestation.
        public var since: String
        public var attestationId: String?
        public init(source: BaselineSource, since: String, attestationId: String?) {
            self.source = source; self.since = since; self.attestationId = attestationId
        }
    }
    public struct FactsSummary: Sendable, Codable, Hashable {
        public var secureBoot: Bool?
        public var bootChain: [String]
        public var kernelCommandLine: String?
        public var pcrDigest: String?
        /// The boot applications (PCR 4) by file path, else device path.
        public init(_ f: BootFacts, pcrDigest: String?) {
            secureBoot = f.secureBoot.enabled
            bootChain = f.bootChain.filter { $0.pcr == 4 }.map { $0.filePath ?? $0.devicePath ?? "?" }
            kernelCommandLine = f.kernelCommandLine
            self.pcrDigest = pcrDigest
        }
    }
}

