import Crypto
import Foundation
import MeasuredBoot
import TPM2

/// What a guest attestation agent sends: a quote (the TPMS_ATTEST bytes exactly as signed, and
/// the TPMT_SIGNATURE), the PCR values it covers, the TCG event log, and the nonce it answers.
public struct Evidence: Sendable, Codable, Hashable {
    public var quote: String          // hex TPMS_ATTEST
    public var signature: String      // hex TPMT_SIGNATURE
    public var pcrs: [String: [String: String]]   // bank → PCR → hex
    public var eventLog: String       // base64
    public var nonce: String          // hex

    public init(quote: TPMSignedAttest, pcrs: [TPMPCRBank], eventLog: [UInt8], nonce: [UInt8]) throws {
        self.quote = hexString(quote.attestBytes)
        self.signature = hexString(try quote.signature.tpmBytes())
        var out: [String: [String: String]] = [:]
        for b in pcrs { out[PCRValues.bankName(b.hashAlg)] = Dictionary(uniqueKeysWithValues: b.values.map { (String($0.key), hexString($0.value)) }) }
        self.pcrs = out
        self.eventLog = Data(eventLog).base64EncodedString()
        self.nonce = hexString(nonce)
    }
}

/// The verdict of one check, with a reason a person can act on.
public struct CheckResult: Sendable, Codable, Hashable {
    public var name: String
    public var passed: Bool
    public var reason: String
}

/// An attestation's outcome: every check in order; the boot facts when the log replayed.
public struct AttestationResult: Sendable {
    public var checks: [CheckResult]
    public var facts: BootFacts?
    /// SHA-256 over the quoted PCR values (the quote's PCR digest), hex.
    public var pcrDigest: String?
    public var passed: Bool { !checks.isEmpty && checks.allSatisfy(\.passed) }
    /// The first failing check's reason.
    public var failure: CheckResult? { checks.first { !$0.passed } }
}

/// Verifies evidence: the quote's signature with the enrolled AK over the original bytes, the
/// nonce, the PCR digest over the given values, the event log's replay against the quoted PCRs,
/// then the policy over the boot facts the replay vouches for. Verification stops at the first
/// failure of the evidence itself (nothing after it could be trusted); policy rules all run.
public enum AttestationVerifier {
    public static func verify(_ evidence: Evidence, akPublic: TPMTPublic, expectedNonce: [UInt8], policy: AttestationPolicy = .default) -> AttestationResult {
        var result = AttestationResult(checks: [], facts: nil, pcrDigest: nil)
        func fail(_ name: String, _ reason: String) -> AttestationResult {
            result.checks.append(CheckResult(name: name, passed: false, reason: reason))
            return result
        }
        // Decode (hostile input: every field checked).
        guard let attestBytes = [UInt8](hex: evidence.quote), let sigBytes = [UInt8](hex: evidence.signature),
              let nonce = [UInt8](hex: evidence.nonce), let logBytes = Data(base64Encoded: evidence.eventLog) else {
            return fail("evidence", "the evidence is not well-formed: quote and signature must be hex, eventLog base64, nonce hex")
        }
        let attest: TPMSAttest, signature: TPMTSignature
        do {
            attest = try TPMSAttest(tpmBytes: attestBytes)
            signature = try TPMTSignature(tpmBytes: sigBytes)
        } catch {
            return fail("evidence", "the quote or its signature does not decode: \(error)")
        }
        var banks: [TPMPCRBank] = []
        for (name, values) in evidence.pcrs {
            guard let alg = PCRValues.bankNames[name] else { return fail("evidence", "unknown PCR bank \"\(name)\"") }
            var v: [Int: [UInt8]] = [:]
            for (k, hex) in values {
                guard let p = Int(k), (0..<24).contains(p), let bytes = [UInt8](hex: hex) else { return fail("evidence", "PCR \(name):\(k) is not a PCR index 0–23 with a hex value") }
                v[p] = bytes
            }
            banks.append(TPMPCRBank(hashAlg: alg, values: v))
        }
        // Freshness: the nonce is the one this verifier issued.
        guard constantTimeEqual(nonce, expectedNonce) else {
            return fail("nonce", "the evidence answers nonce \(evidence.nonce), not the one issued (\(hexString(expectedNonce))): a replayed or foreign attestation")
        }
        result.checks.append(CheckResult(name: "nonce", passed: true, reason: "answers the issued nonce"))
        // The quote: signature over the original bytes, nonce in extraData, PCR digest.
        let verified: TPMVerifiedQuote
        do {
            verified = try TPMQuoteVerifier.verify(TPMSignedAttest(attestBytes: attestBytes, attest: attest, signature: signature),
                                                   akPublic: akPublic, nonce: expectedNonce, pcrs: banks)
        } catch {
            return fail("quote", "the quote does not verify with the enrolled attestation key: \(error.reason)")
        }
        if case .quote(let info) = verified.attest.attested { result.pcrDigest = hexString(info.pcrDigest.bytes) }
        result.checks.append(CheckResult(name: "quote", passed: true, reason: "signed by the enrolled AK; PCR digest matches the PCR values"))
        // The event log replays to the quoted PCRs.
        let log: EventLog
        do { log = try EventLog(parsing: Array(logBytes)) } catch {
            return fail("eventlog", "the event log does not parse: \(error)")
        }
        let report = log.replay(against: PCRValues(verified.pcrs))
        let mismatches = report.comparisons.filter { $0.status != .match }
        guard report.allMatch else {
            let list = mismatches.map { "\(PCRValues.bankName($0.bank)) PCR \($0.pcr)" }.joined(separator: ", ")
            return fail("replay", "the event log does not replay to the quoted PCRs (\(list)): the log was changed or is not this boot's")
        }
        result.checks.append(CheckResult(name: "replay", passed: true, reason: "the event log replays to every quoted PCR (\(report.comparisons.count) values)"))
        let facts = report.verified.explain()
        result.facts = facts
        result.checks += policy.evaluate(facts, quoted: PCRValues(verified.pcrs))
        return result
    }
}
