import Foundation

/// What this package built, as the tests run it (`swift build --build-tests` builds the debug
/// executables beside the tests).
public enum Built {
    /// The package's root folder.
    public static let packageRoot: URL = {
        var dir = URL(fileURLWithPath: #filePath)   // Tests/TestSupport/Built.swift
        for _ in 0..<3 { dir.deleteLastPathComponent() }
        return dir
    }()

    /// The debug `tlaunch` executable.
    public static var tlaunch: String { packageRoot.appendingPathComponent(".build/debug/tlaunch").path }
}
