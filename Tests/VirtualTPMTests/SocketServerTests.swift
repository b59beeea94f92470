import Foundation
import TLaunchTestSupport
import TPM2
import Testing
import VirtualTPM
#if canImport(Glibc)
import Glibc
#endif

@Suite("vTPM: socket protocols and hostile streams")
struct SocketServerTests {
    @Test func ourClientOverSwtpmProtocolWithControlChannel() async throws {
        let served = try await ServedVTPM(startupClear: false, notNeedInit: false)
        defer { served.stop() }
        let transport = SwtpmTransport(data: .tcp(host: "127.0.0.1", port: served.port),
                                       control: .tcp(host: "127.0.0.1", port: served.port + 1))
        let tpm = TPMClient(transport: transport)
        // Before CMD_INIT the TPM is not initialized.
        let e = await #expect(throws: TPMError.self) { _ = try await tpm.getRandom(8) }
        #expect(e?.responseCode?.base == .failure)
        try await transport.powerOn()
        try await tpm.startup(.clear)
        #expect(try await tpm.getRandom(32).count == 32)
        // Locality from the control channel: PCR 20 resets only from locality 2.
        let reset20 = await #expect(throws: TPMError.self) { try await tpm.pcrReset(20) }
        #expect(reset20?.responseCode?.base == .locality)
        try await transport.setLocality(2)
        try await tpm.pcrReset(20)
        try await transport.setLocality(0)
        // A power cycle keeps persistent state and counts a reset.
        let before = try await tpm.readClock()
        try await tpm.shutdown(.clear)
        try await transport.powerOn()
        try await tpm.startup(.clear)
        #expect(try await tpm.readClock().clockInfo.resetCount == before.clockInfo.resetCount + 1)
        await tpm.close()
    }

    @Test func ourClientAndTpm2ToolsOverMssim() async throws {
        let served = try await ServedVTPM(protocol: .mssim, startupClear: false, notNeedInit: false)
        defer { served.stop() }
        let transport = MssimTransport(command: .tcp(host: "127.0.0.1", port: served.port),
                                       platform: .tcp(host: "127.0.0.1", port: served.port + 1))
        try await transport.powerOn()
        let tpm = TPMClient(transport: transport)
        try await tpm.startup(.clear)
        let ek = try await tpm.createEK(.eccP256)
        #expect(ek.publicArea.eccComponents != nil)
        try await tpm.flushContext(ek.handle)
        await tpm.close()
        // tpm2-tools' mssim TCTI (power-on is a no-op on a powered TPM, so the startup holds).
        guard Interop.tool("tpm2_getrandom") != nil else { return }
        let out = try await tool("tpm2_getrandom", ["8", "--hex"], tcti: "mssim:host=127.0.0.1,port=\(served.port)", in: served.directory)
        #expect(out.1.count == 16)
        let pcrs = try await tool("tpm2_pcrread", ["sha256:0"], tcti: "mssim:host=127.0.0.1,port=\(served.port)", in: served.directory)
        #expect(pcrs.1.contains("0 : 0x0000"))
    }

    /// Raw bytes on the data channel.
    func exchange(_ port: Int, _ bytes: [UInt8], read: Int = 10) throws -> [UInt8]? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { return nil }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if read == 0 { return [] }
        var out = [UInt8](repeating: 0, count: 4096)
        var got = 0
        while got < read {
            let n = out.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, 4096 - got, 0) }
            if n <= 0 { break }
            got += n
        }
        return Array(out[0..<got])
    }

    func responseCode(_ r: [UInt8]?) -> UInt32? {
        guard let r, r.count >= 10 else { return nil }
        return UInt32(r[6]) << 24 | UInt32(r[7]) << 16 | UInt32(r[8]) << 8 | UInt32(r[9])
    }

    @Test func malformedCommandsGetTheTPMsOwnCodes() async throws {
        let served = try await ServedVTPM()
        defer { served.stop() }
        let p = served.port
        // Bad tag → TPM_RC_BAD_TAG.
        #expect(responseCode(try exchange(p, [0x12, 0x34, 0, 0, 0, 12, 0, 0, 0x01, 0x7B, 0, 8])) == 0x1E)
        // commandSize beyond the buffer → TPM_RC_COMMAND_SIZE, and the stream is dropped.
        #expect(responseCode(try exchange(p, [0x80, 0x01, 0x7F, 0xFF, 0xFF, 0xFF, 0, 0, 0x01, 0x7B])) == 0x142)
        // Unknown command code → TPM_RC_COMMAND_CODE.
        #expect(responseCode(try exchange(p, [0x80, 0x01, 0, 0, 0, 10, 0x00, 0x00, 0x0F, 0xFF])) == 0x143)
        // GetRandom missing its parameter → TPM_RC_INSUFFICIENT on parameter 1.
        #expect(responseCode(try exchange(p, [0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x7B])) == 0x1DA)
        // GetRandom with a trailing byte → TPM_RC_SIZE.
        #expect(responseCode(try exchange(p, [0x80, 0x01, 0, 0, 0, 13, 0, 0, 0x01, 0x7B, 0, 8, 9])) == 0x95)
        // PCR_Read with a selection count above the limit → TPM_RC_SIZE on parameter 1.
        #expect(responseCode(try exchange(p, [0x80, 0x01, 0, 0, 0, 14, 0, 0, 0x01, 0x7E, 0xFF, 0xFF, 0xFF, 0xFF])) == 0x1D5)
        // PCR_Extend without an authorization area → TPM_RC_AUTH_MISSING.
        #expect(responseCode(try exchange(p, [0x80, 0x01, 0, 0, 0, 18, 0, 0, 0x01, 0x82, 0, 0, 0, 16, 0, 0, 0, 0])) == 0x125)
        // An authorization size larger than the command → TPM_RC_AUTHSIZE.
        #expect(responseCode(try exchange(p, [0x80, 0x02, 0, 0, 0, 22, 0, 0, 0x01, 0x82, 0, 0, 0, 16, 0, 0, 0x10, 0, 0, 0, 0, 0])) == 0x144)
        // ReadPublic on a handle that is not loaded → TPM_RC_HANDLE on handle 1.
        #expect(responseCode(try exchange(p, [0x80, 0x01, 0, 0, 0, 14, 0, 0, 0x01, 0x73, 0x80, 0, 0, 9])) == 0x18B)
        // A client that disconnects mid-command leaves nothing behind: the next client is served.
        _ = try exchange(p, [0x80, 0x01, 0, 0, 0, 200, 0, 0, 0x01, 0x7B], read: 0)
        let ok = try exchange(p, [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7B, 0, 8], read: 20)
        #expect(responseCode(ok) == 0 && ok?.count == 20)
    }

    @Test func controlChannelAnswers() async throws {
        let served = try await ServedVTPM()
        defer { served.stop() }
        let ctrl = served.port + 1
        // CMD_GET_CAPABILITY: 8 bytes of capability bits (INIT, SHUTDOWN, …, SET_DATAFD, SET_BUFFERSIZE, GET_INFO).
        let caps = try #require(try exchange(ctrl, [0, 0, 0, 1], read: 8))
        let bits = caps.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        for bit in [0, 1, 2, 3, 12, 13, 14] { #expect(bits & (1 << UInt64(bit)) != 0, "capability bit \(bit)") }
        // CMD_GET_TPMESTABLISHED: result + bit + padding.
        #expect(try exchange(ctrl, [0, 0, 0, 4], read: 8) == [0, 0, 0, 0, 0, 0, 0, 0])
        // CMD_SET_BUFFERSIZE query: result, size, min, max.
        let sizes = try #require(try exchange(ctrl, [0, 0, 0, 0x11, 0, 0, 0, 0], read: 16))
        #expect(Array(sizes[0..<4]) == [0, 0, 0, 0] && Array(sizes[4..<8]) == [0, 0, 0x10, 0])
        // CMD_GET_INFO with TPMSpecification.
        let info = try #require(try exchange(ctrl, [0, 0, 0, 0x12] + [0, 0, 0, 0, 0, 0, 0, 1] + [0, 0, 0, 0, 0, 0, 0, 0], read: 60))
        #expect(String(decoding: info.dropFirst(12), as: UTF8.self).contains("\"family\":\"2.0\""))
        // CMD_SET_LOCALITY 5 is refused.
        #expect(try exchange(ctrl, [0, 0, 0, 5, 5], read: 4) == [0, 0, 0, 0x3D])
    }

    @Test func dataChannelPassedOverTheControlSocketAsQEMUDoes() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tl-datafd-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let tpm = VirtualTPM.ephemeral()
        let ctrlPath = dir.appendingPathComponent("ctrl.sock").path
        var options = VTPMServer.Options(data: .unix(path: dir.appendingPathComponent("data.sock").path), control: .unix(path: ctrlPath))
        options.notNeedInit = true
        options.startupClear = true
        let server = try VTPMServer(tpm: tpm, options: options)
        server.start()
        defer { server.terminate() }
        // Connect to the control socket, make a socketpair, pass one end with CMD_SET_DATAFD.
        let ctrl = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(ctrl) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { p in
            let b = Array(ctrlPath.utf8)
            p.copyBytes(from: b)
            p[b.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(ctrl, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(rc == 0)
        let passed = try #require(passDataChannel(over: ctrl))
        defer { close(passed.data) }
        #expect(passed.sent == 4)
        #expect(passed.result == [0, 0, 0, 0])
        // The passed descriptor is now the data channel.
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(passed.data, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let getRandom: [UInt8] = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7B, 0, 8]
        _ = getRandom.withUnsafeBytes { write(passed.data, $0.baseAddress, 12) }
        var response = [UInt8](repeating: 0, count: 20)
        var got = 0
        while got < 20 {
            let n = response.withUnsafeMutableBytes { read(passed.data, $0.baseAddress! + got, 20 - got) }
            if n <= 0 { break }
            got += n
        }
        #expect(got == 20 && Array(response[6..<10]) == [0, 0, 0, 0])
    }
}
