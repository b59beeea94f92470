import FleetCore
import Foundation
import Testing

/// Timeline event kinds are a type on the platform's side and plain text on the wire and in the
/// database: what this build writes reads back as the same constant, and a kind another version
/// wrote reads back as it was (a timeline is never unreadable for a word this build lacks).
@Suite struct TimelineKindTests {
    @Test func kindsAreTextOnTheWireAndToleratedWhenUnknown() throws {
        let event = VMEvent(time: "2026-12-07T12:00:00Z", kind: .attestationFailed, message: "attestation a1 failed")
        let json = String(decoding: try JSONEncoder().encode(event), as: UTF8.self)
        #expect(json.contains("\"kind\":\"attestation-failed\""), "\(json)")
        #expect(try JSONDecoder().decode(VMEvent.self, from: Data(json.utf8)).kind == .attestationFailed)

        let fromAnotherVersion = #"{"time":"2026-12-07T12:00:00Z","kind":"migrated","message":"moved to host b"}"#
        let read = try JSONDecoder().decode(VMEvent.self, from: Data(fromAnotherVersion.utf8))
        #expect(read.kind.rawValue == "migrated" && read.kind != .deployed && "\(read.kind)" == "migrated")
    }
}
