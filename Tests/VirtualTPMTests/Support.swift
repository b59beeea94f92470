import Foundation
import TLaunchTestSupport
import TPM2
import Testing
import VirtualTPM
#if canImport(Glibc)
import Glibc
#endif

/// A vTPM served on loopback in this process, as `tlaunch vtpm socket` serves it.
final class ServedVTPM: @unchecked Sendable {
    let server: VTPMServer
    let port: Int
    let directory: URL
    let authority: VTPMCertificateAuthority

    var tcti: String { "swtpm:host=127.0.0.1,port=\(port)" }

    init(protocol wire: VTPMServer.WireProtocol = .swtpm, startupClear: Bool = true, notNeedInit: Bool = true) async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tl-vtpm-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        authority = try VTPMCertificateAuthority.loadOrCreate(directory: directory.appendingPathComponent("ca"))
        let tpm = try await VirtualTPM.open(stateFile: directory.appendingPathComponent("tlaunch-vtpm.state").path,
                                           hostKey: [UInt8](repeating: 7, count: 32), authority: authority)
        var lastError: (any Error)?
        for _ in 0..<10 {
            let p = try SwtpmProcess.freePortPair()
            var options = VTPMServer.Options(data: .tcp(host: "127.0.0.1", port: p), control: .tcp(host: "127.0.0.1", port: p + 1))
            options.wireProtocol = wire
            options.notNeedInit = notNeedInit
            options.startupClear = startupClear
            do {
                let s = try VTPMServer(tpm: tpm, options: options)
                s.start()
                server = s
                port = p
                return
            } catch {
                lastError = error
            }
        }
        throw lastError!
    }

    func stop() {
        server.terminate()
        try? FileManager.default.removeItem(at: directory)
    }
}

/// Runs a tpm2-tools command against `tcti` (off the cooperative pool: the vTPM it talks to may be
/// served by this process); the test fails with its output when it fails.
@discardableResult
func tool(_ name: String, _ args: [String], tcti: String, in dir: URL, expectSuccess: Bool = true,
          sourceLocation: SourceLocation = #_sourceLocation) async throws -> (Int32, String, String) {
    guard let path = Interop.tool(name, sourceLocation: sourceLocation) else { throw SkipPeer() }
    let result = try await Interop.run(path, args, environment: ["TPM2TOOLS_TCTI": tcti], directory: dir)
    if expectSuccess {
        #expect(result.0 == 0, "\(name) \(args.joined(separator: " ")) failed: \(result.2)", sourceLocation: sourceLocation)
    }
    return result
}

/// Thrown when a peer tool is missing and interop is not required: the test ends early.
struct SkipPeer: Error {}

/// Passes one end of a new socket pair over a swtpm control connection with CMD_SET_DATAFD
/// (SCM_RIGHTS), as QEMU does, and reads the 4-byte result. Returns the kept end (now the
/// TPM's data channel; the caller closes it), the bytes `sendmsg` sent and the result; nil when
/// no socket pair could be made.
func passDataChannel(over ctrl: Int32) -> (data: Int32, sent: Int, result: [UInt8])? {
    var pair: [Int32] = [0, 0]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0 else { return nil }
    var command: [UInt8] = [0, 0, 0, 0x10]
    var control = [UInt8](repeating: 0, count: 24)
    control.withUnsafeMutableBytes { c in
        c.storeBytes(of: 20, toByteOffset: 0, as: Int.self)          // cmsg_len = CMSG_LEN(sizeof(int))
        c.storeBytes(of: SOL_SOCKET, toByteOffset: 8, as: Int32.self)
        c.storeBytes(of: Int32(SCM_RIGHTS), toByteOffset: 12, as: Int32.self)
        c.storeBytes(of: pair[1], toByteOffset: 16, as: Int32.self)
    }
    let sent = command.withUnsafeMutableBytes { cmd in
        control.withUnsafeMutableBytes { c in
            var iov = iovec(iov_base: cmd.baseAddress, iov_len: 4)
            return withUnsafeMutablePointer(to: &iov) { iovp in
                var msg = msghdr()
                msg.msg_iov = iovp
                msg.msg_iovlen = 1
                msg.msg_control = c.baseAddress
                msg.msg_controllen = 24
                return sendmsg(ctrl, &msg, 0)
            }
        }
    }
    close(pair[1])
    var result = [UInt8](repeating: 0xFF, count: 4)
    _ = read(ctrl, &result, 4)
    return (pair[0], sent, result)
}
