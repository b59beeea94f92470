import Foundation
import Testing

/// The real-world corpus: event logs from real machines and clouds with their expected PCRs, IMA
/// logs, UEFI signature lists and dbx updates, signed PE files and quotes, gathered from public
/// projects (their origins and licences are listed in the corpus's `SOURCES.md`). Copyleft files
/// stay in the corpus and are read from there, never copied into this repository.
///
/// Where it is: `TLAUNCH_TESTDATA` if set, else `../shared/testdata` beside the repository.
/// Tests that need it carry the `.corpus` trait: skipped (with `Corpus.skipComment`) when it is
/// absent, unless interop is required (CI, `TLAUNCH_REQUIRE_INTEROP=1`), where they run and an
/// absent corpus fails them with `Corpus.require()`'s message.
public enum Corpus {
    public static var root: URL {
        if let env = ProcessInfo.processInfo.environment["TLAUNCH_TESTDATA"], !env.isEmpty { return URL(fileURLWithPath: env) }
        var dir = URL(fileURLWithPath: #filePath)
        for _ in 0..<4 { dir.deleteLastPathComponent() }   // Tests/TestSupport/Corpus.swift → the folder holding the repository
        return dir.appendingPathComponent("shared/testdata")
    }

    /// The corpus is present when its `SOURCES.md` and its folders are.
    public static var isAvailable: Bool {
        let fm = FileManager.default
        return ["SOURCES.md", "eventlogs", "pe", "uefi"].allSatisfy { fm.fileExists(atPath: root.appendingPathComponent($0).path) }
    }

    /// The words of a skip; `scripts/test.sh` counts them to print one line at the end of a run.
    public static let skipComment: Comment = """
        needs the real-world corpus (TLAUNCH_TESTDATA or ../shared/testdata; see README, \"The real-world corpus\")
        """

    /// False when the corpus is absent; records a failure saying where it was looked for when
    /// interop is required (CI must run every corpus test).
    public static func require(sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
        if isAvailable { return true }
        if Interop.required {
            Issue.record("""
                the real-world corpus is missing at \(root.path) (TLAUNCH_REQUIRE_INTEROP=1 requires it): set TLAUNCH_TESTDATA to its \
                folder
                """,
                         sourceLocation: sourceLocation)
        }
        return false
    }

    public static func url(_ path: String) -> URL { root.appendingPathComponent(path) }
    public static func bytes(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: url(path))) }
    public static func data(_ path: String) throws -> Data { try Data(contentsOf: url(path)) }
    public static func json(_ path: String) throws -> Any { try JSONSerialization.jsonObject(with: Data(contentsOf: url(path))) }

    /// The binary event logs, by file name, sorted (empty without the corpus).
    public static var eventLogs: [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: url("eventlogs").path)) ?? []
        return names.filter { $0.hasSuffix(".bin") }.sorted()
    }
}

extension Trait where Self == ConditionTrait {
    /// The test reads the real-world corpus: it runs when the corpus is present or interop is
    /// required, and is skipped (saying how to get the corpus) otherwise.
    public static var corpus: Self { .enabled(if: Corpus.isAvailable || Interop.required, Corpus.skipComment) }
}
