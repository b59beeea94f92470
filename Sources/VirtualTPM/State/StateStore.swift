import Crypto
import Foundation
import TPM2
#if canImport(Glibc)
import Glibc
#endif

/// One encrypted, crash-safe state file per vTPM.
///
/// The file is a header and a journal of records, each sealed with AES-256-GCM under the host
/// key (nonce ‖ ciphertext ‖ tag) and framed by its length. A record is a complete state, or —
/// for the frequent NV writes — the new contents of the NV indices a command changed; its kind
/// and sequence number are authenticated with it. The file is preallocated, so an append is a
/// positioned write and fdatasync (the file's size does not change); zeros end the journal. A save appends a record and fsyncs before the
/// command's
/// response is released, so an acknowledged change is durable; a record torn by a crash fails
/// authentication and the previous one is used. When the journal grows, a new file holding one
/// record replaces it atomically (write, fsync, rename, fsync the directory).
final class StateStore: @unchecked Sendable {
    static let magic = Array("TLVTPM01".utf8)
    static let compactAfter = 64

    let path: String
    private let key: SymmetricKey
    private var fd: Int32 = -1
    private var records = 0
    private var sequence: UInt64 = 0
    /// Where the next record goes, and the preallocated size.
    private var writeOffset = 0
    private var capacity = 256 * 1024

    init(path: String, key: [UInt8]) throws(VTPMError) {
        guard key.count == 32 else { throw VTPMError(.key, "the host key must be 32 bytes (AES-256), got \(key.count)") }
        self.path = path
        self.key = SymmetricKey(data: key)
    }

    deinit { if fd >= 0 { close(fd) } }

    /// The newest intact state, or nil when there is no state file yet.
    func load() throws(VTPMError) -> PersistentState? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let bytes = [UInt8](data)
        guard bytes.count >= Self.magic.count, Array(bytes.prefix(Self.magic.count)) == Self.magic else {
            throw VTPMError(.corruptState, "\(path) is not a TrustedLaunch vTPM state file (bad header)")
        }
        var offset = Self.magic.count
        var newest: (UInt64, PersistentState)?
        var count = 0
        var lastSequence: UInt64 = 0
        while offset + 4 <= bytes.count {
            let length = Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
            guard length >= 28, offset + 4 + length <= bytes.count else { break }  // zeros (the end) or a torn tail
            let sealed = Array(bytes[(offset + 4)..<(offset + 4 + length)])
            offset += 4 + length
            guard let box = try? AES.GCM.SealedBox(combined: sealed),
                  let plain = try? AES.GCM.open(box, using: key, authenticating: Self.magic) else {
                // A record that does not authenticate: torn by a crash, or a wrong key.
                if newest == nil {
                    throw VTPMError(.corruptState, "\(path): no record authenticates (wrong host key, or the file is damaged)")
                }
                break
            }
            let p = [UInt8](plain)
            guard p.count >= 9 else { break }
            let kind = p[0]
            let seq = p[1..<9].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            guard seq > lastSequence else { break }
            lastSequence = seq
            do {
                switch kind {
                case Self.fullRecord:
                    newest = (seq, try PersistentState(tpmBytes: p.dropFirst(9)))
                case Self.nvRecord:
                    guard var state = newest?.1 else { throw VTPMError(.corruptState, "\(path): an NV record precedes any full state") }
                    let changed = try NVDelta(tpmBytes: p.dropFirst(9))
                    for rec in changed.indices {
                        if let i = state.nv.firstIndex(where: { $0.publicArea.nvIndex == rec.publicArea.nvIndex }) { state.nv[i] = rec }
                    }
                    newest = (seq, state)
                default:
                    throw VTPMError(.corruptState, "\(path): unknown record kind \(kind)")
                }
                count += 1
            } catch let e as VTPMError {
                throw e
            } catch {
                throw VTPMError(.corruptState, "\(path): an authenticated record does not parse: \(error)")
            }
        }
        guard let newest else {
            throw VTPMError(.corruptState, "\(path) holds no intact state record")
        }
        sequence = newest.0
        records = count
        return newest.1
    }

    static let fullRecord: UInt8 = 1
    static let nvRecord: UInt8 = 2

    /// Makes `state` durable before returning.
    func save(_ state: PersistentState) throws(VTPMError) {
        let body: [UInt8]
        do { body = try state.tpmBytes() } catch {
            throw VTPMError(.corruptState, "the state cannot be encoded: \(error)")
        }
        try append(kind: Self.fullRecord, body: body)
    }

    /// Makes new contents of some NV indices durable (`full` is written instead when the
    /// journal is due for compaction).
    func saveNV(_ indices: [NVIndexRecord], full: @autoclosure () -> PersistentState) throws(VTPMError) {
        if fd < 0 || records >= Self.compactAfter {
            try save(full())
            return
        }
        let body: [UInt8]
        do { body = try NVDelta(indices: indices).tpmBytes() } catch {
            throw VTPMError(.corruptState, "an NV record cannot be encoded: \(error)")
        }
        try append(kind: Self.nvRecord, body: body)
    }

    private func append(kind: UInt8, body: [UInt8]) throws(VTPMError) {
        sequence += 1
        let plain = [kind] + withUnsafeBytes(of: sequence.bigEndian, Array.init) + body
        let sealed: [UInt8]
        do { sealed = Array(try AES.GCM.seal(plain, using: key, authenticating: Self.magic).combined!) } catch {
            throw VTPMError(.key, "sealing the state failed: \(error)")
        }
        let record = withUnsafeBytes(of: UInt32(sealed.count).bigEndian, Array.init) + sealed
        if fd < 0 || records >= Self.compactAfter || writeOffset + record.count > capacity {
            try rewrite(with: record)
        } else {
            try writeAll(fd, record, at: writeOffset)
            guard fdatasync(fd) == 0 else { throw VTPMError(.io, "fdatasync \(path): \(String(cString: strerror(errno)))") }
            writeOffset += record.count
            records += 1
        }
    }

    /// Replaces the file with the header and one record, atomically.
    private func rewrite(with record: [UInt8]) throws(VTPMError) {
        let tmp = path + ".tmp"
        let t = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard t >= 0 else { throw VTPMError(.io, "cannot create \(tmp): \(String(cString: strerror(errno)))") }
        // Room for the journal: at least four times the full record.
        while capacity < 4 * (Self.magic.count + record.count) { capacity *= 2 }
        do throws(VTPMError) {
            try writeAll(t, Self.magic + record, at: 0)
            if posix_fallocate(t, 0, off_t(capacity)) != 0 {
                // No preallocation on this file system: zero-fill instead.
                try writeAll(t, [UInt8](repeating: 0, count: capacity - Self.magic.count - record.count),
                             at: Self.magic.count + record.count)
            }
            guard fsync(t) == 0 else { throw VTPMError(.io, "fsync \(tmp): \(String(cString: strerror(errno)))") }
        } catch {
            close(t)
            throw error
        }
        close(t)
        guard rename(tmp, path) == 0 else { throw VTPMError(.io, "rename \(tmp): \(String(cString: strerror(errno)))") }
        let dir = (path as NSString).deletingLastPathComponent
        let d = open(dir.isEmpty ? "." : dir, O_RDONLY | O_CLOEXEC)
        if d >= 0 { fsync(d); close(d) }
        if fd >= 0 { close(fd) }
        fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw VTPMError(.io, "cannot reopen \(path): \(String(cString: strerror(errno)))") }
        records = 1
        writeOffset = Self.magic.count + record.count
    }

    private func writeAll(_ fd: Int32, _ bytes: [UInt8], at offset: Int) throws(VTPMError) {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress! + done, bytes.count - done, off_t(offset + done)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw VTPMError(.io, "write \(path): \(String(cString: strerror(errno)))")
            }
            done += n
        }
    }
}
