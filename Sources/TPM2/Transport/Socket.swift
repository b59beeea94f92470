#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A blocking stream socket (TCP or Unix) where every wait is bounded by a deadline:
/// connect, send and receive use non-blocking descriptors and poll(2), so a dead or silent
/// peer becomes a `timeout` error, never a hang.
final class DeadlineSocket {
    private(set) var fd: Int32
    let peer: String

    private init(fd: Int32, peer: String) {
        self.fd = fd
        self.peer = peer
    }

    deinit { close() }

    func close() {
        if fd >= 0 {
            _ = sysClose(fd)
            fd = -1
        }
    }

    /// Connects to host:port (IPv4 or IPv6, names resolved with getaddrinfo).
    static func connect(host: String, port: Int, timeout: Duration) throws(TPMError) -> DeadlineSocket {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &res)
        guard rc == 0, let first = res else {
            throw TPMError(.transport, reason: "cannot resolve \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(first) }
        var lastError = "no address"
        var ai: UnsafeMutablePointer<addrinfo>? = first
        let deadline = ContinuousClock.now + timeout
        while let a = ai {
            let fd = socket(a.pointee.ai_family, a.pointee.ai_socktype | closeOnExec, a.pointee.ai_protocol)
            if fd >= 0 {
                let s = DeadlineSocket(fd: fd, peer: "\(host):\(port)")
                do {
                    try s.connect(address: a.pointee.ai_addr, length: a.pointee.ai_addrlen, deadline: deadline)
                    var one: Int32 = 1
                    _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                    return s
                } catch {
                    lastError = error.reason
                }
            }
            ai = a.pointee.ai_next
        }
        throw TPMError(.transport, reason: "cannot connect to \(host):\(port): \(lastError)")
    }

    /// Connects to a Unix-domain stream socket.
    static func connect(path: String, timeout: Duration) throws(TPMError) -> DeadlineSocket {
        #if canImport(Glibc)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | closeOnExec, 0)
        #else
        let fd = socket(AF_UNIX, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw TPMError(.transport, reason: "socket(): \(errnoString())") }
        let s = DeadlineSocket(fd: fd, peer: path)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            throw TPMError(.configuration, reason: "socket path \(path) is too long")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { p in
            p.copyBytes(from: bytes)
            p[bytes.count] = 0
        }
        let deadline = ContinuousClock.now + timeout
        try withUnsafePointer(to: &addr) { (p: UnsafePointer<sockaddr_un>) throws(TPMError) in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { (sa: UnsafePointer<sockaddr>) throws(TPMError) in
                try s.connect(address: sa, length: socklen_t(MemoryLayout<sockaddr_un>.size), deadline: deadline)
            }
        }
        return s
    }

    /// Wraps an already open descriptor (e.g. a character device); takes ownership.
    static func adopt(fd: Int32, peer: String) -> DeadlineSocket {
        let s = DeadlineSocket(fd: fd, peer: peer)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        return s
    }

    private func connect(address: UnsafePointer<sockaddr>, length: socklen_t, deadline: ContinuousClock.Instant) throws(TPMError) {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        #if canImport(Glibc)
        let rc = Glibc.connect(fd, address, length)
        #else
        let rc = Darwin.connect(fd, address, length)
        #endif
        if rc == 0 { return }
        guard errno == EINPROGRESS || errno == EAGAIN else {
            throw TPMError(.transport, reason: errnoString())
        }
        try wait(events: Int16(POLLOUT), deadline: deadline, what: "connecting")
        var err: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
        if err != 0 { throw TPMError(.transport, reason: String(cString: strerror(err))) }
    }

    private func wait(events: Int16, deadline: ContinuousClock.Instant, what: String) throws(TPMError) {
        while true {
            let left = deadline - ContinuousClock.now
            let ms = max(0, Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000))
            if left <= .zero {
                throw TPMError(.timeout, reason: "\(peer) did not respond in time while \(what)")
            }
            var p = pollfd(fd: fd, events: events, revents: 0)
            let r = poll(&p, 1, ms == 0 ? 1 : ms)
            if r > 0 {
                if p.revents & Int16(POLLNVAL) != 0 { throw TPMError(.transport, reason: "\(peer): descriptor closed") }
                return
            }
            if r < 0 && errno != EINTR { throw TPMError(.transport, reason: "poll: \(errnoString())") }
        }
    }

    func sendAll(_ bytes: [UInt8], deadline: ContinuousClock.Instant) throws(TPMError) {
        guard fd >= 0 else { throw TPMError(.transport, reason: "\(peer): connection is closed") }
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { p in
                #if canImport(Glibc)
                Glibc.send(fd, p.baseAddress! + sent, p.count - sent, Int32(MSG_NOSIGNAL))
                #else
                Darwin.send(fd, p.baseAddress! + sent, p.count - sent, 0)
                #endif
            }
            if n > 0 { sent += n; continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                try wait(events: Int16(POLLOUT), deadline: deadline, what: "sending")
                continue
            }
            if n < 0 && errno == ENOTSOCK {
                // Character devices: write(2).
                let w = bytes.withUnsafeBytes { p in write(fd, p.baseAddress! + sent, p.count - sent) }
                if w > 0 { sent += w; continue }
            }
            throw TPMError(.transport, reason: "\(peer): send failed: \(errnoString())")
        }
    }

    /// Receives exactly `count` bytes.
    func receive(exactly count: Int, deadline: ContinuousClock.Instant) throws(TPMError) -> [UInt8] {
        guard fd >= 0 else { throw TPMError(.transport, reason: "\(peer): connection is closed") }
        var out = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = out.withUnsafeMutableBytes { p in read(fd, p.baseAddress! + got, count - got) }
            if n > 0 { got += n; continue }
            if n == 0 {
                throw TPMError(.transport, reason: "\(peer) closed the connection after \(got) of \(count) bytes")
            }
            if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR {
                try wait(events: Int16(POLLIN), deadline: deadline, what: "waiting for \(count - got) more bytes")
                continue
            }
            throw TPMError(.transport, reason: "\(peer): receive failed: \(errnoString())")
        }
        return out
    }

    /// Receives whatever one read returns (up to `max` bytes), for message-oriented devices.
    /// Linux's TPM character devices opened non-blocking run the command in the background and
    /// answer a read that comes before the response with 0 bytes: with `zeroIsPending` that is
    /// "not yet", not the end of the stream.
    func receiveMessage(max: Int, deadline: ContinuousClock.Instant, zeroIsPending: Bool = false) throws(TPMError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: max)
        while true {
            let n = out.withUnsafeMutableBytes { p in read(fd, p.baseAddress!, max) }
            if n > 0 { return Array(out[0..<n]) }
            if n == 0 && zeroIsPending {
                // Its poll says "readable" until the response was read once, even before it is
                // there: wait a little instead of spinning.
                if ContinuousClock.now >= deadline { throw TPMError(.timeout, reason: "\(peer) did not respond in time") }
                usleep(500)
                continue
            }
            if n == 0 { throw TPMError(.transport, reason: "\(peer): end of file") }
            if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR {
                try wait(events: Int16(POLLIN), deadline: deadline, what: "waiting for the response")
                continue
            }
            throw TPMError(.transport, reason: "\(peer): read failed: \(errnoString())")
        }
    }
}

func errnoString() -> String { String(cString: strerror(errno)) }

private func sysClose(_ fd: Int32) -> Int32 {
    #if canImport(Glibc)
    Glibc.close(fd)
    #else
    Darwin.close(fd)
    #endif
}

func readU32BE(_ b: [UInt8], _ at: Int = 0) -> UInt32 {
    UInt32(b[at]) << 24 | UInt32(b[at + 1]) << 16 | UInt32(b[at + 2]) << 8 | UInt32(b[at + 3])
}

/// Sockets are not inherited by processes the host spawns later (a launched swtpm or QEMU
/// holding a copy would keep a connection open after this side closes it).
#if canImport(Glibc)
let closeOnExec = Int32(SOCK_CLOEXEC.rawValue)
#else
let closeOnExec: Int32 = 0
#endif
