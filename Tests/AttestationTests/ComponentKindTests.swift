import Attestation
import AttestationAPI
import Foundation
import Testing

/// Baseline component kinds are a type in the code and text in stored baselines, outcomes and
/// alerts: what this build writes reads back as the same constant, and a baseline stored with a
/// kind this build does not name (by an older or newer version) still decodes — and still compares.
@Suite struct ComponentKindTests {
    @Test func storedBaselinesKeepKindsThisBuildDoesNotName() throws {
        let mine = BaselineComponent(key: "PCR 8 kernel command line 1", pcr: 8, kind: .kernelCommandLine, name: "kernel command line",
                                     value: "ro quiet")
        let json = String(decoding: try JSONEncoder().encode([mine]), as: UTF8.self)
        #expect(json.contains("\"kind\":\"kernel-command-line\""), "\(json)")
        #expect(try JSONDecoder().decode([BaselineComponent].self, from: Data(json.utf8)) == [mine])

        let older = #"[{"key":"PCR 9 file /boot/x 1","pcr":9,"kind":"boot-loader-config","name":"/boot/x","value":"00"}]"#
        let stored = try JSONDecoder().decode([BaselineComponent].self, from: Data(older.utf8))
        #expect(stored.first?.kind.rawValue == "boot-loader-config")
        // Compared with a boot that measured the same file under today's kind, the change is seen.
        let today = BaselineComponent(key: "PCR 9 file /boot/x 1", pcr: 9, kind: .bootLoaderFile, name: "/boot/x", value: "11")
        let changes = Baseline.diff(baseline: stored, current: [today])
        #expect(changes.count == 1 && changes.first?.change == .changed && changes.first?.kind == .bootLoaderFile)
    }
}
