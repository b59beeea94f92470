import Attestation
import AttestationAPI
import Foundation
import GuestAgent
import Synchronization
import TPM2
import Testing
import VirtualTPM

/// The guest agent's evidence on its own (no service): a quote and the PCR values read after it
/// must agree, whatever extends a PCR in between.
@Suite("GuestAgent: evidence that agrees with itself")
struct EvidenceTests {
    /// A vTPM whose PCR 7 is extended right after each of its first `extensions` quotes — as a
    /// measurement landing between the agent's quote and its PCR read.
    final class ExtendsAfterQuotes: TPMTransport {
        let inner: InProcessTransport
        let other: TPMClient
        let extensions: Int
        let quotes = Mutex(0)
        init(_ tpm: VirtualTPM, extensions: Int) {
            inner = InProcessTransport(tpm)
            other = TPMClient(transport: InProcessTransport(tpm))
            self.extensions = extensions
        }
        nonisolated(nonsending) func send(_ command: [UInt8]) async throws(TPMError) -> [UInt8] {
            let response = try await inner.send(command)
            // TPM_CC_Quote (0x158) in the header's command code (bytes 6–9).
            guard command.count >= 10, command[6..<10].elementsEqual([0, 0, 0x01, 0x58]) else { return response }
            let n = quotes.withLock { $0 += 1; return $0 }
            if n <= extensions {
                try await other.pcrExtend(7, digests: [TPMTHA(hashAlg: .sha256, digest: [UInt8](repeating: UInt8(n), count: 32))])
            }
            return response
        }
        func close() async {}
    }

    func evidence(extensions: Int) async throws -> (ExtendsAfterQuotes, Result<Evidence, any Error>, TPMObject, [UInt8]) {
        let transport = ExtendsAfterQuotes(VirtualTPM.ephemeral(), extensions: extensions)
        let agent = GuestAgent(tpm: TPMClient(transport: transport), service: ServiceClient(baseURL: "http://unused", token: nil), vm: "vm",
                               eventLog: [])
        let ak = try await agent.attestationKey()
        let nonce = [UInt8](repeating: 0xA5, count: 32)
        let result: Result<Evidence, any Error>
        do { result = .success(try await agent.evidence(nonce: nonce, ak: ak)) } catch { result = .failure(error) }
        return (transport, result, ak, nonce)
    }

    @Test func aPCRExtendedBetweenQuoteAndReadIsQuotedAgain() async throws {
        let (transport, result, ak, nonce) = try await evidence(extensions: 1)
        let e = try result.get()
        #expect(transport.quotes.withLock { $0 } == 2, "the first quote no longer matched the PCRs read after it")
        // What was sent agrees with itself: the quoted digest is the digest of the sha256 values
        // sent (PCR 7 among them, as extended), signed by the AK over the nonce.
        let attestBytes = try #require([UInt8](hex: e.quote))
        let signed = TPMSignedAttest(attestBytes: attestBytes, attest: try TPMSAttest(tpmBytes: attestBytes),
                                     signature: try TPMTSignature(tpmBytes: try #require([UInt8](hex: e.signature))))
        let sent = try #require(e.pcrs["sha256"])
        let values = Dictionary(uniqueKeysWithValues: try sent.map { (try #require(Int($0.key)), try #require([UInt8](hex: $0.value))) })
        #expect(values.count == 16 && values[7] != [UInt8](repeating: 0, count: 32))
        _ = try TPMQuoteVerifier.verify(signed, akPublic: ak.publicArea, nonce: nonce, pcrs: [TPMPCRBank(hashAlg: .sha256, values: values)])
        #expect([UInt8](hex: e.nonce) == nonce)
    }

    @Test func pcrsThatKeepChangingAreAnErrorNotEvidence() async throws {
        let (transport, result, _, _) = try await evidence(extensions: .max)
        guard case .failure(let error) = result else { Issue.record("evidence from PCRs that never held still"); return }
        #expect((error as? AgentError)?.step == "quote" && "\(error)".contains("kept changing"), "\(error)")
        #expect(transport.quotes.withLock { $0 } == 4)
    }
}
