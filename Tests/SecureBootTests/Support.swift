import Foundation
import Testing

/// The shared real-world test data (../shared/testdata; see its SOURCES.md).
enum SharedData {
    static var root: URL {
        if let env = ProcessInfo.processInfo.environment["TLAUNCH_TESTDATA"] { return URL(fileURLWithPath: env) }
        var dir = URL(fileURLWithPath: #filePath)
        for _ in 0..<4 { dir.deleteLastPathComponent() }
        return dir.appendingPathComponent("shared/testdata")
    }

    static func require(sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
        if FileManager.default.fileExists(atPath: root.appendingPathComponent("pe").path) { return true }
        Issue.record("the shared test data is missing at \(root.path): the Secure Boot tests read real images and signature lists from ../shared/testdata (or set TLAUNCH_TESTDATA)",
                     sourceLocation: sourceLocation)
        return false
    }

    static func url(_ path: String) -> URL { root.appendingPathComponent(path) }
    static func bytes(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: url(path))) }
    static func json(_ path: String) throws -> Any { try JSONSerialization.jsonObject(with: Data(contentsOf: url(path))) }
}

/// Debian's signed boot chain (shim-signed, grub-efi-amd64-signed, linux-image-amd64; the test
/// command installs them).
enum DebianImages {
    static let shim = "/usr/lib/shim/shimx64.efi.signed"
    static let grub = "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"
    static var kernel: String? {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/boot")) ?? []
        return names.filter { $0.hasPrefix("vmlinuz-") }.sorted().last.map { "/boot/" + $0 }
    }
}
