import Foundation
import Synchronization
import TPM2
import Testing
import TLaunchTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A one-connection loopback TCP server whose behaviour the test chooses: it is the
/// misbehaving peer a client must survive.
final class MisbehavingServer: @unchecked Sendable {
    let port: Int
    private let fd: Int32
    /// Whether the listener is closed; closing and shutting it down happen under this lock.
    private let closed = Flag()

    final class Flag: Sendable {
        let value = Mutex(false)
        func withLock<R>(_ body: (inout Bool) -> R) -> R { value.withLock { body(&$0) } }
    }

    init(_ behaviour: @escaping @Sendable (Int32) -> Void) throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, len) } }
        listen(listener, 4)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &len) } }
        fd = listener
        port = Int(UInt16(bigEndian: addr.sin_port))
        // Only this thread closes the listener: closing it from deinit while the thread has yet to
        // call accept would let the descriptor number be reused by another test's socket, and this
        // thread would then accept that test's connection (tests run in parallel).
        let closed = self.closed
        Thread.detachNewThread {
            let c = accept(listener, nil, nil)
            closed.withLock { isClosed in
                close(listener)
                isClosed = true
            }
            guard c >= 0 else { return }
            behaviour(c)
            close(c)
        }
    }

    /// Wakes the accept (it then fails and the thread closes the listener).
    deinit {
        closed.withLock { isClosed in
            if !isClosed { shutdown(fd, Int32(SHUT_RDWR)) }
        }
    }

    /// A loopback port nobody listens on: bound, then closed, without any thread.
    static func unusedPort() -> Int {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(s) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    static func readSome(_ c: Int32) {
        var buf = [UInt8](repeating: 0, count: 4096)
        _ = read(c, &buf, buf.count)
    }

    static func write(_ c: Int32, _ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.write(c, $0.baseAddress, $0.count) }
    }
}

@Suite("transports: dead and misbehaving peers give clear errors, never hangs")
struct TransportFailureTests {
    func client(port: Int, timeout: Duration = .seconds(20)) -> TPMClient {
        TPMClient(transport: SwtpmTransport(data: .tcp(host: "127.0.0.1", port: port), control: nil, timeout: timeout))
    }

    @Test func nobodyListening() async throws {
        // A port that was bound and closed again: nobody is listening on it.
        let port = MisbehavingServer.unusedPort()
        let tpm = client(port: port)
        let e = await #expect(throws: TPMError.self) { _ = try await tpm.getRandom(8) }
        #expect(e?.code == .transport || e?.code == .timeout)
    }

    @Test func silentPeerTimesOut() async throws {
        let server = try MisbehavingServer { c in
            MisbehavingServer.readSome(c)
            Thread.sleep(forTimeInterval: 3)
        }
        defer { withExtendedLifetime(server) {} }
        let tpm = client(port: server.port, timeout: .milliseconds(300))
        let started = ContinuousClock.now
        let e = await #expect(throws: TPMError.self) { _ = try await tpm.getRandom(8) }
        #expect(e?.code == .timeout)
        #expect(ContinuousClock.now - started < .seconds(2))
        #expect(e?.description.contains("did not respond in time") == true)
    }

    @Test func peerClosesMidResponse() async throws {
        let server = try MisbehavingServer { c in
            MisbehavingServer.readSome(c)
            MisbehavingServer.write(c, [0x80, 0x01, 0x00, 0x00, 0x00, 0x14, 0x00])
        }
        defer { withExtendedLifetime(server) {} }
        let e = await #expect(throws: TPMError.self) { _ = try await client(port: server.port).getRandom(8) }
        #expect(e?.code == .transport)
        #expect(e?.reason.contains("closed the connection") == true)
    }

    @Test func oversizedResponseHeader() async throws {
        let server = try MisbehavingServer { c in
            MisbehavingServer.readSome(c)
            MisbehavingServer.write(c, [0x80, 0x01, 0x7F, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0])
        }
        defer { withExtendedLifetime(server) {} }
        let e = await #expect(throws: TPMError.self) { _ = try await client(port: server.port).getRandom(8) }
        #expect(e?.code == .malformedResponse)
    }

    @Test func malformedResponseBody() async throws {
        // A well-framed success response whose TPM2B_DIGEST claims 0x4000 bytes.
        let server = try MisbehavingServer { c in
            MisbehavingServer.readSome(c)
            MisbehavingServer.write(c, [0x80, 0x01, 0, 0, 0, 0x0C, 0, 0, 0, 0, 0x40, 0x00])
        }
        defer { withExtendedLifetime(server) {} }
        let e = await #expect(throws: TPMError.self) { _ = try await client(port: server.port).getRandom(8) }
        #expect(e?.code == .malformedResponse)
        #expect(e?.wire?.code == .sizeExceedsLimit)
        #expect(e?.command == .getRandom)
    }

    @Test func missingDevice() async {
        let tpm = TPMClient(transport: DeviceTransport(path: "/nonexistent/tpmrm9"))
        let e = await #expect(throws: TPMError.self) { _ = try await tpm.getRandom(8) }
        #expect(e?.code == .transport)
        #expect(e?.reason.contains("/nonexistent/tpmrm9") == true)
    }

    @Test func mssimFramingAgainstAFakeSimulator() async throws {
        // The mssim command port: TPM_SEND_COMMAND, locality, size, command → size, response, 0.
        let server = try MisbehavingServer { c in
            // 4 (cmd) + 1 (locality) + 4 (size) + 12 (GetRandom); the client may
            // send the frame in several writes, so read until all 21 bytes are in.
            var buf = [UInt8](repeating: 0, count: 21)
            var n = 0
            while n < buf.count {
                let got = buf.withUnsafeMutableBytes { read(c, $0.baseAddress! + n, $0.count - n) }
                if got <= 0 { break }
                n += got
            }
            guard n == 21, buf[3] == 8, buf[4] == 3 else { return }
            let resp: [UInt8] = [0x80, 0x01, 0, 0, 0, 0x0E, 0, 0, 0, 0, 0, 2, 0xAB, 0xCD]
            MisbehavingServer.write(c, [0, 0, 0, UInt8(resp.count)] + resp + [0, 0, 0, 0])
        }
        defer { withExtendedLifetime(server) {} }
        let transport = MssimTransport(command: .tcp(host: "127.0.0.1", port: server.port), platform: .tcp(host: "127.0.0.1", port: 1))
        try await transport.setLocality(3)
        let tpm = TPMClient(transport: transport)
        #expect(try await tpm.getRandom(2) == [0xAB, 0xCD])
    }
}
