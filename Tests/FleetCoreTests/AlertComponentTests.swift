import AttestationAPI
import FleetCore
import Foundation
import Testing

/// An alert's evidence names its component as a type: the builder groups a boot's changed
/// components as a person would (grub's configuration file is the boot loader's configuration),
/// each with the words a sentence uses; on the wire and in the database it is text, and a
/// component another version stored reads back as it was.
@Suite struct AlertComponentTests {
    static func outcome(_ changes: [BaselineChange]) -> AttestationOutcome {
        AttestationOutcome(id: "a1", vm: "web-01", time: "2026-12-07T12:00:00.000Z", passed: false, status: "contraindicated",
                           checks: [Check(.baseline, passed: false, "the boot differs from its baseline")], baseline: .changed,
                           baselineSource: nil, changes: changes, rebooted: true, token: nil, tokenID: nil,
                           policy: .init(id: "default", version: 1), facts: nil)
    }

    @Test func changesAreGroupedTitledAndStoredAsText() throws {
        let vm = try FleetRules.deploy(DeployRequest(name: "web-01", integrityMonitoring: true), image: RulesTests.gen2)
        let grubCfg = BaselineChange(change: .changed, key: "PCR 9 file 1", pcr: 9, kind: .bootLoaderFile, name: "/boot/grub/grub.cfg",
                                     from: "aa", to: "bb")
        let alert = try #require(AlertBuilder.attestation(Self.outcome([grubCfg]), vm: vm))
        let e = try #require(alert.evidence.first)
        #expect(e.component == .bootLoaderConfiguration && alert.evidence.count == 1)
        #expect(alert.title == "Boot loader configuration changed: /boot/grub/grub.cfg", "\(alert.title)")
        #expect(alert.recommendations.contains { $0.contains("tlaunch vm baseline approve web-01") })

        // A Secure Boot variable is high severity and says what to compare.
        let db = BaselineChange(change: .changed, key: "PCR 7 variable db", pcr: 7, kind: .secureBootConfiguration, name: "db",
                                from: "aa", to: "cc")
        let sb = try #require(AlertBuilder.attestation(Self.outcome([db]), vm: vm))
        #expect(sb.evidence.first?.component == .secureBootConfiguration && sb.severity == .high)
        #expect(sb.title.hasPrefix("Secure Boot configuration changed"), "\(sb.title)")

        let json = String(decoding: try JSONEncoder().encode(e), as: UTF8.self)
        #expect(json.contains("\"component\":\"boot-loader-configuration\""), "\(json)")
        var stored = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] ?? [:]
        stored["component"] = "option-rom"
        let read = try JSONDecoder().decode(AlertEvidence.self, from: JSONSerialization.data(withJSONObject: stored))
        #expect(read.component.rawValue == "option-rom" && read.component.title == "option-rom" && read.component != .firmware)
    }
}
