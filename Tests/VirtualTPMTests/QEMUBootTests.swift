import Foundation
import TLaunchTestSupport
import TPM2
import Testing
import VirtualTPM
#if canImport(Glibc)
import Glibc
#endif

/// QEMU boots OVMF with `-tpmdev emulator` on our vTPM until the firmware has measured itself
/// and started the UEFI shell; PCRs 0–7, read through the control path (CMD_SET_DATAFD, as
/// QEMU attaches), equal those of the same boot against swtpm.
@Suite("vTPM: QEMU + OVMF boot, compared with swtpm")
struct QEMUBootTests {
    static let ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
    static let ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"

    @Test(.timeLimit(.minutes(4)))
    func firmwareMeasurementsMatchSwtpm() async throws {
        guard let qemu = Interop.tool("qemu-system-x86_64"), let swtpm = Interop.tool("swtpm") else { return }
        guard FileManager.default.fileExists(atPath: Self.ovmfCode) else {
            if Interop.required { Issue.record("\(Self.ovmfCode) is missing (Debian package ovmf)") }
            return
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tl-qemu-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }

        // Our vTPM, served in this process on a control socket only QEMU uses.
        let ours = dir.appendingPathComponent("ours")
        try FileManager.default.createDirectory(at: ours, withIntermediateDirectories: true)
        var options = VTPMServer.Options(data: .unix(path: ours.appendingPathComponent("data.sock").path),
                                         control: .unix(path: ours.appendingPathComponent("ctrl.sock").path))
        options.notNeedInit = false
        let server = try VTPMServer(tpm: VirtualTPM.ephemeral(), options: options)
        server.start()
        defer { server.terminate() }
        let oursPCRs = try await boot(qemu: qemu, dir: ours, control: ours.appendingPathComponent("ctrl.sock").path)

        // swtpm, the reference, with the same firmware and variables.
        let theirs = dir.appendingPathComponent("swtpm")
        try FileManager.default.createDirectory(at: theirs, withIntermediateDirectories: true)
        let ctrl = theirs.appendingPathComponent("ctrl.sock").path
        let sw = Process()
        sw.executableURL = URL(fileURLWithPath: swtpm)
        sw.arguments = ["socket", "--tpm2", "--tpmstate", "dir=\(theirs.path)", "--ctrl", "type=unixio,path=\(ctrl)"]
        try sw.run()
        defer { kill(sw.processIdentifier, SIGKILL) }
        for _ in 0..<200 where !FileManager.default.fileExists(atPath: ctrl) { usleep(10_000) }
        let swtpmPCRs = try await boot(qemu: qemu, dir: theirs, control: ctrl)

        #expect(oursPCRs.count == 8 && swtpmPCRs.count == 8)
        #expect(oursPCRs[0] != [UInt8](repeating: 0, count: 32), "the firmware measured itself into PCR 0")
        #expect(oursPCRs[4] != [UInt8](repeating: 0, count: 32), "the boot of the shell was measured into PCR 4")
        for i in 0..<8 {
            #expect(oursPCRs[i] == swtpmPCRs[i],
                    "sha256 PCR \(i): ours \(oursPCRs[i]?.hexString ?? "-"), swtpm \(swtpmPCRs[i]?.hexString ?? "-")")
        }
    }

    /// Boots OVMF against the TPM behind `control` until the shell starts, kills QEMU, then
    /// attaches a data channel through the control socket and reads sha256 PCRs 0–7.
    func boot(qemu: String, dir: URL, control: String) async throws -> [Int: [UInt8]] {
        let vars = dir.appendingPathComponent("vars.fd")
        try FileManager.default.copyItem(atPath: Self.ovmfVars, toPath: vars.path)
        let serial = dir.appendingPathComponent("serial.log")
        _ = FileManager.default.createFile(atPath: serial.path, contents: nil)
        let q = Process()
        q.executableURL = URL(fileURLWithPath: qemu)
        q.arguments = ["-machine", "q35", "-accel", "tcg", "-m", "256", "-display", "none", "-net", "none",
                       "-serial", "file:\(serial.path)", "-monitor", "none",
                       "-drive", "if=pflash,format=raw,unit=0,readonly=on,file=\(Self.ovmfCode)",
                       "-drive", "if=pflash,format=raw,unit=1,file=\(vars.path)",
                       "-chardev", "socket,id=chrtpm,path=\(control)",
                       "-tpmdev", "emulator,id=tpm0,chardev=chrtpm", "-device", "tpm-tis,tpmdev=tpm0"]
        q.standardOutput = FileHandle.nullDevice
        q.standardError = FileHandle.nullDevice
        try q.run()
        let deadline = ContinuousClock.now + .seconds(120)
        var started = false
        while ContinuousClock.now < deadline {
            let text = String(decoding: (try? Data(contentsOf: serial)) ?? Data(), as: UTF8.self)
            if text.contains("startup.nsh") || text.contains("Shell>") { started = true; break }
            if !q.isRunning { break }
            try await Task.sleep(for: .milliseconds(250))
        }
        kill(q.processIdentifier, SIGKILL)
        q.waitUntilExit()
        #expect(started, "OVMF reached the UEFI shell (\(dir.lastPathComponent))")
        try await Task.sleep(for: .milliseconds(200))
        return try readPCRsThroughControl(control)
    }

    /// CMD_SET_DATAFD with one end of a socketpair, then TPM2_PCR_Read on the other end.
    func readPCRsThroughControl(_ path: String) throws -> [Int: [UInt8]] {
        let ctrl = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(ctrl) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { p in
            let b = Array(path.utf8)
            p.copyBytes(from: b)
            p[b.count] = 0
        }
        var connected = false
        for _ in 0..<100 {
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(ctrl, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            if rc == 0 { connected = true; break }
            usleep(20_000)
        }
        try #require(connected, "the control socket accepts a new client after QEMU is gone")
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(ctrl, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let passed = try #require(passDataChannel(over: ctrl))
        defer { close(passed.data) }
        try #require(passed.result == [0, 0, 0, 0], "CMD_SET_DATAFD accepted")
        setsockopt(passed.data, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var c = TPM2PCRRead()
        c.pcrSelectionIn = TPMLPCRSelection([TPMSPCRSelection(hash: .sha256, pcrs: 0..<8)])
        let bytes = try TPMCommandPacket(code: .pcrRead, handles: [], sessions: [], parameters: c.parameterBytes()).encode()
        _ = bytes.withUnsafeBytes { write(passed.data, $0.baseAddress, $0.count) }
        var header = [UInt8](repeating: 0, count: 10)
        var got = 0
        while got < 10 {
            let n = header.withUnsafeMutableBytes { read(passed.data, $0.baseAddress! + got, 10 - got) }
            if n <= 0 { break }
            got += n
        }
        let size = Int(header[2]) << 24 | Int(header[3]) << 16 | Int(header[4]) << 8 | Int(header[5])
        var body = [UInt8](repeating: 0, count: max(0, size - 10))
        got = 0
        while got < body.count {
            let n = body.withUnsafeMutableBytes { read(passed.data, $0.baseAddress! + got, $0.count - got) }
            if n <= 0 { break }
            got += n
        }
        let packet = try TPMResponsePacket.decode(header + body, handleCount: 0, sessionCount: 0)
        let r = try TPM2PCRRead.Response(handles: [], parameters: packet.parameters)
        let pcrs = r.pcrSelectionOut.pcrSelections.first?.pcrs ?? []
        return Dictionary(uniqueKeysWithValues: zip(pcrs, r.pcrValues.digests.map(\.bytes)))
    }
}
