import Foundation

/// Creates a directory of files all at once: `populate` fills a private temporary directory
/// which is then renamed into place. Two processes creating the same directory at once (a
/// service and a vTPM starting together) end up with one of the two, whole; the loser reads it.
/// Returns false when another process's directory won (or already existed).
public enum AtomicDirectory {
    public static func create(at directory: URL, populate: (URL) throws -> Void) throws -> Bool {
        let fm = FileManager.default
        let parent = directory.deletingLastPathComponent()
        try fm.createDirectory(at: parent, withIntermediateDirectories: true)
        let tmp = parent.appendingPathComponent(".\(directory.lastPathComponent).tmp-\(UUID().uuidString)")
        try fm.createDirectory(at: tmp, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        do { try populate(tmp) } catch {
            try? fm.removeItem(at: tmp)
            throw error
        }
        // An empty directory left by an older version (or made by hand) is replaced.
        if let contents = try? fm.contentsOfDirectory(atPath: directory.path), contents.isEmpty { rmdir(directory.path) }
        if rename(tmp.path, directory.path) == 0 { return true }
        try? fm.removeItem(at: tmp)
        return false
    }
}
