import Foundation
import TLaunchTestSupport
import Testing
import VirtualFirmware

@Suite("Virtual firmware: fuzz corpora replayed")
struct VirtualFirmwareFuzzReplayTests {
    @Test func espImageCorpus() throws { #expect(try FuzzCorpus.replay("esp", VirtualFirmwareFuzzing.espImage) >= 2) }
    @Test func grubConfigCorpus() throws { #expect(try FuzzCorpus.replay("grubcfg", VirtualFirmwareFuzzing.grubConfig) >= 6) }
}
