import Foundation
import TPM2
import Testing
import TLaunchTestSupport

@Suite("swtpm: basics")
struct SwtpmBasicTests {
    @Test(arguments: TPMKind.allCases)
    func randomCapabilitiesAndPCRs(kind: TPMKind) async throws {
        try await withTPM(kind) { tpm in
            let r = try await tpm.getRandom(100)
            #expect(r.count == 100)
            #expect(Set(r).count > 20)
            let props = try await tpm.tpmProperties()
            #expect(props[.familyIndicator] == 0x322E_3000) // "2.0\0"
            #expect(props[.pcrCount] == 24)
            let banks = try await tpm.pcrBanks()
            #expect(banks.pcrSelections.contains { $0.hash == .sha256 && $0.pcrs.count == 24 })
            let sel = TPMLPCRSelection([TPMSPCRSelection(hash: .sha256, pcrs: 0..<24)])
            let values = try await tpm.pcrRead(sel)
            #expect(values.first?.values.count == 24)
            #expect(values.first?.values[0] == [UInt8](repeating: 0, count: 32))
        }
    }
}
