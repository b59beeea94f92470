import AttestationAPI
import Crypto
import Foundation
import MeasuredBoot
import Synchronization
import TPM2

/// An attestation's outcome: every check in order; the boot facts when the log replayed.
public struct AttestationResult: Sendable {
    public var checks: [Check]
    public var facts: BootFacts?
    /// SHA-256 over the quoted PCR values (the quote's PCR digest), hex.
    public var pcrDigest: String?
    /// The quote's clock, reset and restart counters.
    public var clock: TPMSClockInfo?
    /// The events the replay vouched for, and the quoted PCR values.
    public var verified: VerifiedEventLog?
    public var quoted: PCRValues?
    /// The boot's components for baselines (from the replay-verified events).
    public var components: [BaselineComponent]?
    /// `components` as `LeanJSONEncoder` writes them (sorted keys), made once per verified boot.
    public var componentsJSON: [UInt8]?
    /// Whether the evidence is complete enough to learn a baseline from on first use: the quote
    /// covered what the policy reads, the log replayed, and the facts show no anomaly (whatever
    /// the policy says of anomalies).
    public var completeEvidence: Bool {
        checks.contains { $0.name == .coverage && $0.passed } && checks.contains { $0.name == .replay && $0.passed }
            && checks.passed(.evidence) && facts.map { $0.anomalies.isEmpty } == true
    }
    public init(checks: [Check], facts: BootFacts?,
                pcrDigest: String?) { self.checks = checks; self.facts = facts; self.pcrDigest = pcrDigest }
    public var passed: Bool { checks.allPassed }
    /// The first check that did not pass.
    public var failure: Check? { checks.firstFailure }
}

/// Why evidence is refused before any check runs: which field, and what is wrong with it.
public struct EvidenceError: Error, Sendable, CustomStringConvertible {
    public var field: String
    public var reason: String
    public init(_ field: String, _ reason: String) { self.field = field; self.reason = reason }
    public var description: String { "evidence field \(field): \(reason)" }
}

/// Evidence decoded and structurally checked (nothing verified yet).
public struct DecodedEvidence: Sendable {
    public var signed: TPMSignedAttest
    public var banks: [TPMPCRBank]
    public var nonce: [UInt8]
    public var eventLog: EventLog
    /// SHA-256 of the event log's bytes (the key of the boot-facts cache).
    public var eventLogDigest: [UInt8]
    public var imaLog: IMALog?

    /// Limits on what a guest may send (a 100,000-event log is ~10 MiB; real ones are < 100 KiB).
    public static let maxEventLogBytes = 16 << 20
    public static let maxQuoteBytes = 4096

    public init(_ e: Evidence) throws(EvidenceError) {
        guard e.quote.utf8.count <= 2 * Self.maxQuoteBytes, let attestBytes = [UInt8](hex: e.quote) else {
            throw EvidenceError("quote", "must be the TPMS_ATTEST bytes in hex (at most \(Self.maxQuoteBytes) bytes)")
        }
        guard e.signature.utf8.count <= 2 * Self.maxQuoteBytes, let sigBytes = [UInt8](hex: e.signature) else {
            throw EvidenceError("signature", "must be the TPMT_SIGNATURE bytes in hex")
        }
        guard let nonce = [UInt8](hex: e.nonce), (8...64).contains(nonce.count) else {
            throw EvidenceError("nonce", "must be the nonce the service issued, in hex (8–64 bytes)")
        }
        guard e.eventLog.utf8.count <= Self.maxEventLogBytes * 4 / 3 + 4, let logBytes = Data(base64Encoded: e.eventLog) else {
            throw EvidenceError("eventLog", "must be the TCG event log in base64 (at most \(Self.maxEventLogBytes >> 20) MiB)")
        }
        let attest: TPMSAttest, signature: TPMTSignature
        do { attest = try TPMSAttest(tpmBytes: attestBytes) } catch {
            throw EvidenceError("quote", "does not decode as TPMS_ATTEST: \(error)")
        }
        guard case .quote = attest.attested else { throw EvidenceError("quote", "is a TPMS_ATTEST of another kind than a quote") }
        do { signature = try TPMTSignature(tpmBytes: sigBytes) } catch {
            throw EvidenceError("signature", "does not decode as TPMT_SIGNATURE: \(error)")
        }
        var banks: [TPMPCRBank] = []
        for (name, values) in e.pcrs.sorted(by: { $0.key < $1.key }) {
            guard let alg = PCRValues.bankNames[name] else { throw EvidenceError("pcrs", "unknown PCR bank \"\(name)\"") }
            var v: [Int: [UInt8]] = [:]
            for (k, hex) in values {
                guard let p = Int(k), (0..<24).contains(p), let bytes = [UInt8](hex: hex),
                    bytes.count == ((try? TPMCrypto.digestSize(alg)) ?? -1)
                else {
                    throw EvidenceError("pcrs", "\(name):\(k) is not a PCR index 0–23 with a \(name) digest in hex")
                }
                v[p] = bytes
            }
            banks.append(TPMPCRBank(hashAlg: alg, values: v))
        }
        let log: EventLog
        do { log = try EventLog(parsing: Array(logBytes)) } catch {
            throw EvidenceError("eventLog", "does not parse: \(error)")
        }
        var ima: IMALog?
        if let text = e.imaLog {
            do { ima = try IMALog(parsing: Array(text.utf8)) } catch {
                throw EvidenceError("imaLog", "does not parse: \(error)")
            }
        }
        self.signed = TPMSignedAttest(attestBytes: attestBytes, attest: attest, signature: signature)
        self.banks = banks; self.nonce = nonce; self.eventLog = log; self.imaLog = ima
        self.eventLogDigest = Array(SHA256.hash(data: logBytes))
    }
}

/// Verifies evidence: the quote's signature with the enrolled AK over the original bytes, the
/// nonce, the PCR digest over the given values, the event log's replay against the quoted PCRs,
/// then the policy over the boot facts the replay vouches for. Verification stops at the first
/// failure of the evidence itself (nothing after it could be trusted); policy rules all run.
public enum AttestationVerifier {
    public static func verify(_ evidence: Evidence, akPublic: TPMTPublic, expectedNonce: [UInt8],
                              policy: AttestationPolicy = .default) -> AttestationResult {
        let decoded: DecodedEvidence
        do { decoded = try DecodedEvidence(evidence) } catch {
            return AttestationResult(checks: [Check(.evidence, passed: false, error.description)], facts: nil, pcrDigest: nil)
        }
        // Freshness: the nonce is the one this verifier issued.
        guard constantTimeEqual(decoded.nonce, expectedNonce) else {
            return AttestationResult(checks: [Check(.nonce, passed: false,
                "the evidence answers nonce \(evidence.nonce), not the one issued (\(hexString(expectedNonce))): a replayed or foreign "
              + "attestation")],
                facts: nil, pcrDigest: nil)
        }
        var r = verify(decoded, akPublic: akPublic, policy: policy)
        r.checks.insert(Check(.nonce, passed: true, "answers the issued nonce"), at: 0)
        return r
    }

    /// The memo key of a replay: the log's SHA-256, then every compared value in bank and PCR
    /// order, each as bank (2 bytes), PCR (4 bytes), length (2 bytes) and value — unambiguous.
    static func replayKey(logDigest: [UInt8], compared: PCRValues) -> [UInt8] {
        var key = logDigest
        key.reserveCapacity(logDigest.count + compared.banks.values.reduce(0) { $0 + $1.count * 40 })
        for (alg, pcrs) in compared.banks.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            for (pcr, value) in pcrs.sorted(by: { $0.key < $1.key }) {
                key += [UInt8(truncatingIfNeeded: alg.rawValue >> 8), UInt8(truncatingIfNeeded: alg.rawValue),
                    UInt8(truncatingIfNeeded: pcr >> 24), UInt8(truncatingIfNeeded: pcr >> 16), UInt8(truncatingIfNeeded: pcr >> 8),
                    UInt8(truncatingIfNeeded: pcr),
                        UInt8(truncatingIfNeeded: value.count >> 8), UInt8(truncatingIfNeeded: value.count)]
                key += value
            }
        }
        return key
    }

    /// The checks after freshness: quote, its coverage of what the policy reads, replay, policy.
    public static func verify(_ d: DecodedEvidence, akPublic: TPMTPublic, policy: AttestationPolicy,
                              cache: BootFactsCache? = nil) -> AttestationResult {
        var result = AttestationResult(checks: [], facts: nil, pcrDigest: nil)
        func fail(_ name: CheckName, _ reason: String) -> AttestationResult {
            result.checks.append(Check(name, passed: false, reason))
            return result
        }
        // The quote: signature over the original bytes, nonce in extraData, PCR digest.
        let verified: TPMVerifiedQuote
        do {
            verified = try TPMQuoteVerifier.verify(d.signed, akPublic: akPublic, nonce: d.nonce, pcrs: d.banks)
        } catch {
            return fail(.quote, "the quote does not verify with the enrolled attestation key: \(error.reason)")
        }
        result.pcrDigest = hexString(verified.quoteInfo.pcrDigest.bytes)
        result.clock = verified.attest.clockInfo
        result.checks.append(Check(.quote, passed: true, "signed by the enrolled AK over the nonce; PCR digest matches the PCR values"))
        // Complete: the quote covers every bank and PCR the policy reads (missing is never a pass).
        let coverage = policy.checkCoverage(verified.quoteInfo.pcrSelect)
        result.checks.append(coverage)
        guard coverage.passed else { return result }
        // The event log replays to the quoted PCRs; only the quoted (verified) banks vouch.
        let quoted = PCRValues(verified.pcrs)
        let forLog = d.eventLog.comparable(quoted)
        // A replay and the facts it proves are a function of the log's bytes and the values it is
        // compared with, nothing else: a VM attesting the same boot again (the same log, the same
        // quoted values) reuses them. The key holds both — the log's SHA-256 and every compared
        // bank, PCR and value — so one PCR extended beside the log is a new key and a new replay.
        // Only replays that matched are kept; the quote above was verified for this request.
        let key = cache.map { _ in Self.replayKey(logDigest: d.eventLogDigest, compared: forLog) }
        let boot: VerifiedBoot
        if let cache, let key, let hit = cache.lookup(key) {
            boot = hit
        } else {
            let report = d.eventLog.replay(against: forLog)
            guard report.allMatch else {
                let mismatches = report.comparisons.filter { $0.status != .match }
                let list = mismatches.map {
                    "\(PCRValues.bankName($0.bank)) PCR \($0.pcr)\($0.status == .bankNotReplayable ? " (the log has no such bank)" : "")"
                }.joined(separator: ", ")
                return fail(.replay,
                            "the event log does not replay to the quoted PCRs (\(list)): the log was changed or is not this boot's")
            }
            let facts = report.verified.explain()
            let components = Baseline.components(of: report.verified, facts: facts)
            boot = VerifiedBoot(compared: report.comparisons.count, verifiedBanks: report.verified.verifiedBanks, facts: facts,
                                components: components, componentsJSON: try? LeanJSONEncoder().encodeBytes(components))
            if let cache, let key { cache.store(key, boot) }
            result.verified = report.verified
        }
        result.checks.append(Check(.replay, passed: true, """
            the event log replays to every quoted PCR (\(boot.compared) values in \
            \(boot.verifiedBanks.map(PCRValues.bankName).sorted().joined(separator: ", ")))
            """))
        if let ima = d.imaLog {
            var state = IMAReplayState()
            let applied = (try? state.apply(ima.entries)) != nil
            let ok = applied && boot.verifiedBanks.contains { alg in quoted[alg, 10].map { state.matches(alg, $0) } ?? false }
            result.checks.append(Check(.imaReplay, passed: ok,
                                       ok ? "the IMA log (\(ima.entries.count) entries) replays to the quoted PCR 10"
                                       : "the IMA log does not replay to the quoted PCR 10: files were measured that the log does not "
                                       + "show (or PCR 10 was not quoted)"))
            if !ok { return result }
        }
        let facts = boot.facts, components = boot.components
        result.facts = facts
        result.components = components
        result.componentsJSON = boot.componentsJSON
        result.quoted = quoted
        result.checks += policy.evaluate(facts, quoted: quoted, ima: d.imaLog)
        return result
    }
}

/// A bounded memo of a pure function's results, shared by concurrent requests; emptied when full
/// (the values are recomputed on the next miss, so dropping them only costs time).
public final class BoundedMemo<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private let entries = Mutex<[Key: Value]>([:])
    public let capacity: Int
    public init(capacity: Int) { self.capacity = capacity }
    public func lookup(_ key: Key) -> Value? { entries.withLock { $0[key] } }
    public func store(_ key: Key, _ value: Value) {
        entries.withLock { e in
            if e.count >= capacity { e.removeAll(keepingCapacity: true) }
            e[key] = value
        }
    }
}

/// What a matched replay proved: how many values it compared, the banks that vouch, the boot's
/// facts and its baseline components.
public struct VerifiedBoot: Sendable {
    public var compared: Int
    public var verifiedBanks: Set<TPMAlgID>
    public var facts: BootFacts
    public var components: [BaselineComponent]
    /// `components` as `LeanJSONEncoder` writes them (sorted keys): a stored result of this boot
    /// reuses them instead of encoding the components again.
    public var componentsJSON: [UInt8]?
}

/// Verified boots by event log and compared PCR values (`AttestationVerifier.replayKey`), so that
/// repeated attestations of one boot neither replay its log nor parse its certificates again.
public typealias BootFactsCache = BoundedMemo<[UInt8], VerifiedBoot>
