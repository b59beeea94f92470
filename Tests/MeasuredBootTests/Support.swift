import Foundation
import MeasuredBoot
import TPM2
import Testing

/// The shared real-world test data (../shared/testdata; see its SOURCES.md). Copyleft files
/// stay there and are read from there; the tests fail with this message when it is absent.
enum SharedData {
    static var root: URL {
        if let env = ProcessInfo.processInfo.environment["TLAUNCH_TESTDATA"] { return URL(fileURLWithPath: env) }
        var dir = URL(fileURLWithPath: #filePath)
        for _ in 0..<4 { dir.deleteLastPathComponent() }
        return dir.appendingPathComponent("shared/testdata")
    }

    static func require(sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
        if FileManager.default.fileExists(atPath: root.appendingPathComponent("eventlogs").path) { return true }
        Issue.record("the shared test data is missing at \(root.path): the Measured Boot tests read real logs from ../shared/testdata (or set TLAUNCH_TESTDATA)",
                     sourceLocation: sourceLocation)
        return false
    }

    static func url(_ path: String) -> URL { root.appendingPathComponent(path) }
    static func bytes(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: url(path))) }

    /// The binary event logs, by file name, sorted.
    static var eventLogs: [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: url("eventlogs").path)) ?? []
        return names.filter { $0.hasSuffix(".bin") }.sorted()
    }

    /// Logs that are malformed on purpose (SOURCES.md).
    static let malformed: Set<String> = ["edge_short_no_action_go-attestation.bin", "fragment_specid_vendordata_tpm2-tools.bin"]

    static func json(_ path: String) throws -> Any { try JSONSerialization.jsonObject(with: Data(contentsOf: url(path))) }
}
