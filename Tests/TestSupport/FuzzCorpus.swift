import Foundation
import Testing

/// The libFuzzer corpora and crashers kept in `Fuzz/`, replayed by every module's tests.
public enum FuzzCorpus {
    /// The repository's `Fuzz/` folder.
    public static var directory: URL {
        var dir = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { dir.deleteLastPathComponent() }
        return dir.appendingPathComponent("Fuzz")
    }

    /// Every saved input of `target` (corpus, then crashers), named "corpus/TARGET/FILE".
    public static func inputs(_ target: String) throws -> [(name: String, bytes: [UInt8])] {
        var out: [(name: String, bytes: [UInt8])] = []
        for sub in ["corpus/\(target)", "crashers/\(target)"] {
            let dir = directory.appendingPathComponent(sub)
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir.path) else { continue }
            for n in names.sorted() where !n.hasPrefix(".") {
                out.append(("\(sub)/\(n)", [UInt8](try Data(contentsOf: dir.appendingPathComponent(n)))))
            }
        }
        return out
    }

    /// Runs every saved input of `target` through a fuzz entry point (which returns invariant
    /// violations); each violation fails the test. Returns how many inputs there were.
    public static func replay(_ target: String, sourceLocation: SourceLocation = #_sourceLocation,
                              _ body: ([UInt8]) -> [String]) throws -> Int {
        let all = try inputs(target)
        for (name, bytes) in all {
            let violations = body(bytes)
            #expect(violations.isEmpty, "\(name): \(violations)", sourceLocation: sourceLocation)
        }
        return all.count
    }
}
