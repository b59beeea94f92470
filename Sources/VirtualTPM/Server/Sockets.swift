#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Where a server listens.
public enum VTPMEndpoint: Sendable, Hashable, CustomStringConvertible {
    case tcp(host: String, port: Int)
    case unix(path: String)

    public var description: String {
        switch self {
        case .tcp(let h, let p): "tcp \(h):\(p)"
        case .unix(let p): "unix \(p)"
        }
    }
}

/// Thin POSIX socket helpers for the servers (blocking I/O on their own threads).
enum Sock {
    static func listen(_ endpoint: VTPMEndpoint) throws(VTPMError) -> (fd: Int32, endpoint: VTPMEndpoint) {
        switch endpoint {
        case .tcp(let host, let port):
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw VTPMError(.io, "socket(): \(String(cString: strerror(errno)))") }
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(port).bigEndian)
            guard inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host, &addr.sin_addr) == 1 else {
                close(fd)
                throw VTPMError(.option, "bindaddr \(host) is not an IPv4 address")
            }
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
            guard rc == 0 else {
                let e = String(cString: strerror(errno))
                close(fd)
                throw VTPMError(.io, "cannot bind \(host):\(port): \(e)")
            }
            Glibc.listen(fd, 16)
            _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
            return (fd, .tcp(host: host, port: Int(UInt16(bigEndian: addr.sin_port))))
        case .unix(let path):
            unlink(path)
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw VTPMError(.io, "socket(): \(String(cString: strerror(errno)))") }
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
                close(fd)
                throw VTPMError(.option, "socket path \(path) is too long")
            }
            withUnsafeMutableBytes(of: &addr.sun_path) { p in
                p.copyBytes(from: bytes)
                p[bytes.count] = 0
            }
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard rc == 0 else {
                let e = String(cString: strerror(errno))
                close(fd)
                throw VTPMError(.io, "cannot bind \(path): \(e)")
            }
            Glibc.listen(fd, 16)
            return (fd, endpoint)
        }
    }

    /// Reads exactly `count` bytes; nil on EOF or error.
    static func readExactly(_ fd: Int32, _ count: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = out.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, count - got) }
            if n > 0 { got += n; continue }
            if n < 0 && errno == EINTR { continue }
            return nil
        }
        return out
    }

    /// One message as it arrived (a single receive of at most `max` bytes) and any file
    /// descriptor passed with it; nil on EOF or error.
    static func receive(_ fd: Int32, max: Int) -> (bytes: [UInt8], passed: Int32?)? {
        guard let (bytes, passed) = readWithFD(fd, max, atMostOnce: true) else { return nil }
        return (bytes, passed)
    }

    /// Reads exactly `count` bytes and any file descriptor passed with them (SCM_RIGHTS).
    static func readWithFD(_ fd: Int32, _ count: Int, atMostOnce: Bool = false) -> (bytes: [UInt8], passed: Int32?)? {
        var out = [UInt8](repeating: 0, count: count)
        var control = [UInt8](repeating: 0, count: 64)
        var passed: Int32?
        var got = 0
        while got < count {
            let n: Int = out.withUnsafeMutableBytes { buf in
                control.withUnsafeMutableBytes { ctl in
                    var iov = iovec(iov_base: buf.baseAddress! + got, iov_len: count - got)
                    return withUnsafeMutablePointer(to: &iov) { iovp in
                        var msg = msghdr()
                        msg.msg_iov = iovp
                        msg.msg_iovlen = 1
                        msg.msg_control = ctl.baseAddress
                        msg.msg_controllen = ctl.count
                        let r = recvmsg(fd, &msg, Int32(MSG_CMSG_CLOEXEC))
                        // struct cmsghdr { size_t len; int level; int type; } then the data (x86_64/aarch64 layout).
                        if r > 0 && msg.msg_controllen >= 20 {
                            let level = ctl.load(fromByteOffset: 8, as: Int32.self)
                            let type = ctl.load(fromByteOffset: 12, as: Int32.self)
                            if level == SOL_SOCKET && type == Int32(SCM_RIGHTS) {
                                passed = ctl.load(fromByteOffset: 16, as: Int32.self)
                            }
                        }
                        return r
                    }
                }
            }
            if n > 0 {
                got += n
                if atMostOnce { return (Array(out[0..<got]), passed) }
                continue
            }
            if n < 0 && errno == EINTR { continue }
            return nil
        }
        return (out, passed)
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + done, bytes.count - done, Int32(MSG_NOSIGNAL)) }
            if n > 0 { done += n; continue }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && errno == ENOTSOCK {
                let w = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, bytes.count - done) }
                if w > 0 { done += w; continue }
            }
            return false
        }
        return true
    }
}

func be32Bytes(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.bigEndian, Array.init) }
func be64Bytes(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.bigEndian, Array.init) }
func readU32(_ b: [UInt8],
             _ at: Int = 0) -> UInt32 { UInt32(b[at]) << 24 | UInt32(b[at + 1]) << 16 | UInt32(b[at + 2]) << 8 | UInt32(b[at + 3]) }
