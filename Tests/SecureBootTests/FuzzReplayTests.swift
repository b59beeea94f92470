import Foundation
import SecureBoot
import TLaunchTestSupport
import Testing

@Suite("Secure Boot: fuzz corpora and crashers replayed")
struct SecureBootFuzzReplayTests {
    @Test func peCorpus() throws { #expect(try FuzzCorpus.replay("pe", SecureBootFuzzing.peImage) >= 10) }
    @Test func signatureListCorpus() throws { #expect(try FuzzCorpus.replay("esl", SecureBootFuzzing.signatureLists) >= 10) }
    @Test func variableStoreCorpus() throws { #expect(try FuzzCorpus.replay("varstore", SecureBootFuzzing.variableStore) >= 10) }
}
