import Foundation

/// The initramfs format: a "newc" cpio archive (ASCII headers, 4-byte alignment), as the Linux
/// kernel unpacks it into its root file system. Entries are root-owned.
public enum CPIO {
    public struct Entry: Sendable {
        public var path: String
        /// The full st_mode: 0o040755 for a directory, 0o100755 for an executable, 0o120777 for a symlink.
        public var mode: UInt32
        public var data: [UInt8]
        public init(path: String, mode: UInt32, data: [UInt8] = []) { self.path = path; self.mode = mode; self.data = data }
        public static func directory(_ path: String) -> Entry { Entry(path: path, mode: 0o040755) }
        public static func file(_ path: String, _ data: [UInt8],
                                executable: Bool = false) -> Entry { Entry(path: path, mode: executable ? 0o100755 : 0o100644, data: data) }
        public static func symlink(_ path: String,
                                   to target: String) -> Entry { Entry(path: path, mode: 0o120777, data: Array(target.utf8)) }
    }

    public static func newc(_ entries: [Entry]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(entries.reduce(0) { $0 + $1.data.count + 128 } + 128)
        func pad() { while out.count % 4 != 0 { out.append(0) } }
        func header(_ name: String, _ mode: UInt32, _ size: Int, _ ino: Int) {
            // ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check
            let fields: [Int] = [ino, Int(mode), 0, 0, 1, 0, size, 0, 0, 0, 0, name.utf8.count + 1, 0]
            out += Array("070701".utf8)
            for f in fields { out += Array(String(format: "%08X", f).utf8) }
            out += Array(name.utf8) + [0]
            pad()
        }
        for (i, e) in entries.enumerated() {
            header(e.path, e.mode, e.data.count, i + 1)
            out += e.data
            pad()
        }
        header("TRAILER!!!", 0, 0, 0)
        return out
    }
}
