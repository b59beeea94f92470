import TLaunchTestSupport
import Testing
@testable import Attestation

@Suite("Attestation: fuzz corpus replayed")
struct AttestationFuzzReplayTests {
    @Test func evidenceAndPolicyCorpus() throws {
        #expect(try FuzzCorpus.replay("evidence", AttestationFuzzing.evidence) >= 5, "the corpus is committed")
    }
}
