import Crypto
import Foundation
import TPM2
#if canImport(Glibc)
import Glibc
#endif

/// One encrypted, crash-safe state file per vTPM.
///
/// The file is a header and a journal of records; each record is a complete state sealed with
/// AES-256-GCM under the host key (nonce ‖ ciphertext ‖ tag), framed by its length, with its
/// sequence number authenticated. A save appends a record and fsyncs before the command's
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
        while offset + 4 <= bytes.count {
            let length = Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
            guard length >= 28, offset + 4 + length <= bytes.count else { break }  // a torn tail
            let sealed = Array(bytes[(offset + 4)..<(offset + 4 + length)])
            offset += 4 + length
            guard let box = try? AES.GCM.SealedBox(combined: sealed),
                  let plain = try? AES.GCM.open(box, using: key, authenticating: Self.magic) else {
                // A record that does not authenticate: torn by a crash, or a wrong key.
                if newest == nil && offset >= bytes.count {
                    throw VTPMError(.corruptState, "\(path): no record authenticates (wrong host key?)")
                }
                break
            }
            let p = [UInt8](plain)
            guard p.count >= 8 else { break }
            let seq = p.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            do {
                let state = try PersistentState(tpmBytes: p.dropFirst(8))
                if newest == nil || seq > newest!.0 { newest = (seq, state) }
                count += 1
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

    /// Makes `state` durable before returning.
    func save(_ state: PersistentState) throws(VTPMError) {
        sequence += 1
        let plain: [UInt8]
        do { plain = withUnsafeBytes(of: sequence.bigEndian, Array.init) + (try state.tpmBytes()) } catch {
            throw VTPMError(.corruptState, "the state cannot be encoded: \(error)")
        }
        let sealed: [UInt8]
        do { sealed = Array(try AES.GCM.seal(plain, using: key, authenticating: Self.magic).combined!) } catch {
            throw VTPMError(.key, "sealing the state failed: \(error)")
        }
        let record = withUnsafeBytes(of: UInt32(sealed.count).bigEndian, Array.init) + sealed
        if fd < 0 || records >= Self.compactAfter {
            try rewrite(with: record)
        } else {
            try writeAll(fd, record)
            guard fsync(fd) == 0 else { throw VTPMError(.io, "fsync \(path): \(String(cString: strerror(errno)))") }
            records += 1
        }
    }

    /// Replaces the file with the header and one record, atomically.
    private func rewrite(with record: [UInt8]) throws(VTPMError) {
        let tmp = path + ".tmp"
        let t = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard t >= 0 else { throw VTPMError(.io, "cannot create \(tmp): \(String(cString: strerror(errno)))") }
        do throws(VTPMError) {
            try writeAll(t, Self.magic + record)
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
        fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
        guard fd >= 0 else { throw VTPMError(.io, "cannot reopen \(path): \(String(cString: strerror(errno)))") }
        records = 1
    }

    private func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws(VTPMError) {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, bytes.count - done) }
            if n < 0 {
                if errno == EINTR { continue }
                throw VTPMError(.io, "write \(path): \(String(cString: strerror(errno)))")
            }
            done += n
        }
    }
}
