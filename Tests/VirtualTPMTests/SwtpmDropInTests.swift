import Foundation
import TLaunchTestSupport
import TPM2
import Testing
import VirtualTPM
import X509
#if canImport(Glibc)
import Glibc
#endif

/// `tlaunch vtpm socket|setup|ioctl` as drop-ins for swtpm, swtpm_setup and swtpm_ioctl, and the
/// volatile state that QEMU moves when a VM is saved, restored or migrated.
@Suite("vTPM: a drop-in for swtpm's programs")
struct SwtpmDropInTests {
    static var tlaunch: String { CrashConsistencyTests.tlaunch }

    static func temporary(_ prefix: String) throws -> URL {
        let dir = URL(fileURLWithPath: "/tmp").appendingPathComponent("\(prefix)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    // MARK: Volatile state

    /// A TPM moved with its permanent and volatile blobs (as QEMU does on save/restore) goes on
    /// where it was: same PCRs, the loaded AK still signs quotes over them, sessions still exist.
    @Test func theVolatileStateCarriesPCRsKeysAndSessionsToAnotherTPM() async throws {
        let source = VirtualTPM.ephemeral()
        let a = TPMClient(transport: InProcessTransport(source))
        let ek = try await a.createEK(.eccP256)
        let ak = try await a.createAK(ek: ek, template: TPMTemplates.akECCP256)
        _ = try await a.pcrEvent(16, data: Array("measured before the save".utf8))
        let session = try await a.startAuthSession()
        let sel = TPMLPCRSelection([TPMSPCRSelection(hash: .sha256, pcrs: [0, 16])])
        let before = try await a.pcrRead(sel)

        let permanent = source.exportPermanentState()
        let volatile = source.exportVolatileState()
        #expect(volatile.count > 1000, "PCRs of four banks, the objects and the session: \(volatile.count) bytes")

        let target = VirtualTPM.ephemeral()
        try target.importPermanentState(permanent)
        try target.resumeVolatileState(volatile)
        let b = TPMClient(transport: InProcessTransport(target))
        #expect(try await b.pcrRead(sel) == before, "the PCRs came along")
        #expect(before.first?.values[16] != [UInt8](repeating: 0, count: 32))
        // The AK (its private key) came along: it quotes the moved PCRs.
        let quote = try await b.quote(ak.object.handle, qualifyingData: [1, 2, 3], pcrs: sel)
        guard case .quote(let info) = quote.attest.attested else { Issue.record("not a quote"); return }
        let expected = try TPMCrypto.hash(.sha256, before[0].values[0]! + before[0].values[16]!)
        #expect(info.pcrDigest.bytes == expected)
        // The session came along (flushing it succeeds); a handle that never existed does not.
        try await b.flushContext(session.handle)
        await #expect(throws: TPMError.self) { try await b.flushContext(session.handle) }
        // The TPM was started: a second Startup is refused as on real hardware.
        await #expect(throws: TPMError.self) { try await b.startup(.clear) }
    }

    /// A blob from the hypervisor is untrusted input: every truncation and a corrupted bank are
    /// refused with a typed error, and the TPM keeps what it had.
    @Test func aDamagedVolatileStateIsRefusedAndChangesNothing() async throws {
        let source = VirtualTPM.ephemeral()
        let a = TPMClient(transport: InProcessTransport(source))
        _ = try await a.pcrEvent(10, data: [1])
        let blob = source.exportVolatileState()
        let target = VirtualTPM.ephemeral()
        let t = TPMClient(transport: InProcessTransport(target))
        _ = try await t.pcrEvent(10, data: [2])
        let sel = TPMLPCRSelection([TPMSPCRSelection(hash: .sha256, pcrs: [10])])
        let mine = try await t.pcrRead(sel)
        for cut in stride(from: 0, to: blob.count, by: max(1, blob.count / 97)) {
            #expect(throws: VTPMError.self, "cut at \(cut)") { try target.resumeVolatileState(Array(blob.prefix(cut))) }
        }
        var wrongMagic = blob
        wrongMagic[0] ^= 0xFF
        #expect(throws: VTPMError.self) { try target.resumeVolatileState(wrongMagic) }
        #expect(try await t.pcrRead(sel) == mine, "a refused blob left the TPM as it was")
        #expect(VTPMFuzzing.volatileState(blob).isEmpty)
    }

    @Test func volatileStateCorpus() throws {
        #expect(try FuzzCorpus.replay("vtpm-volatile", VTPMFuzzing.volatileState) >= 3, "the seed corpus is committed")
    }

    /// With TLAUNCH_RECORD_CORPUS=1, records real volatile blobs as seeds.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["TLAUNCH_RECORD_CORPUS"] == "1"))
    func recordVolatileSeeds() async throws {
        let dir = FuzzCorpus.directory.appendingPathComponent("corpus/vtpm-volatile")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let tpm = VirtualTPM.ephemeral()
        try Data(tpm.exportVolatileState()).write(to: dir.appendingPathComponent("fresh"))
        let c = TPMClient(transport: InProcessTransport(tpm))
        let ek = try await c.createEK(.eccP256)
        try Data(tpm.exportVolatileState()).write(to: dir.appendingPathComponent("with-ek"))
        _ = try await c.createAK(ek: ek, template: TPMTemplates.akECCP256)
        _ = try await c.startAuthSession()
        _ = try await c.pcrEvent(7, data: [7])
        try Data(tpm.exportVolatileState()).write(to: dir.appendingPathComponent("with-ak-session-pcr"))
    }

    // MARK: The programs

    /// `tlaunch vtpm setup` as libvirt runs swtpm_setup, then `tlaunch vtpm socket` on what it made.
    @Test func setupMakesAStateThatTheSocketServesWithTheSameEKCertificates() async throws {
        let dir = try Self.temporary("tl-setup")
        defer { try? FileManager.default.removeItem(at: dir) }
        let state = dir.appendingPathComponent("tpm2"), certs = dir.appendingPathComponent("certs"),
            data = dir.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: certs, withIntermediateDirectories: true)
        let common = ["vtpm", "setup", "--data", data.path, "--tpm-state", state.path, "--logfile",
                      dir.appendingPathComponent("setup.log").path]
        let (rc, out, err) = try await Interop.run(
            Self.tlaunch,
            common + [
                "--tpm2", "--vmid", "vm1:0f0e", "--createek", "--create-ek-cert", "--create-platform-cert",
                                                                           "--lock-nvram", "--not-overwrite", "--write-ek-cert-files",
                                                                           certs.path, "--display"])
        #expect(rc == 0, "\(out) \(err)")
        let file = state.appendingPathComponent("tlaunch-vtpm.state")
        let made = try Data(contentsOf: file)
        let log = try String(contentsOf: dir.appendingPathComponent("setup.log"), encoding: .utf8)
        #expect(log.contains("vm1:0f0e") && log.contains("Successfully set up the vTPM"), "\(log)")
        // As swtpm_setup: existing state is kept with --not-overwrite, refused without either flag.
        let again = try await Interop.run(Self.tlaunch, common + ["--tpm2", "--not-overwrite"])
        let kept = try Data(contentsOf: file)
        #expect(again.0 == 0 && kept == made)
        let refused = try await Interop.run(Self.tlaunch, common + ["--tpm2"])
        #expect(refused.0 == 1 && refused.2.contains("--overwrite"), "\(refused)")
        #expect(!refused.2.contains("Usage"), "a failure is one line, as swtpm_setup's")
        // What this vTPM cannot do is refused, not faked.
        let tpm12 = try await Interop.run(Self.tlaunch, common + ["--overwrite"])
        #expect(tpm12.0 == 1 && tpm12.2.contains("TPM 2.0 only"), "\(tpm12)")
        let banks = try await Interop.run(Self.tlaunch, common + ["--tpm2", "--overwrite", "--pcr-banks", "sha256"])
        #expect(banks.0 == 1 && banks.2.contains("PCR_Allocate"), "\(banks)")
        let untouched = try Data(contentsOf: file)
        #expect(untouched == made, "a refused setup left the state alone")
        // --print-states (swtpm_setup asks it) says a permanent state exists.
        let states = try await Interop.run(Self.tlaunch, ["vtpm", "socket", "--print-states", "--tpmstate", "dir=\(state.path)"])
        #expect(states.1.contains("\"name\": \"permall\""), "\(states.1)")

        // The socket serves it; the EK certificates are the ones setup wrote out, from the data folder's CA.
        let port = try SwtpmProcess.freePortPair()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.tlaunch)
        p.arguments = ["vtpm", "socket", "--tpm2", "--data", data.path, "--tpmstate", "backend-uri=dir://\(state.path)",
                       "--server", "type=tcp,port=\(port)", "--ctrl", "type=tcp,port=\(port + 1)", "--flags", "not-need-init,startup-clear"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { p.terminate(); p.waitUntilExit() }
        let client = TPMClient(transport: SwtpmTransport(data: .tcp(host: "127.0.0.1", port: port), control: nil, timeout: .seconds(30)))
        var served: [UInt8]?
        try await withTeardown({ await client.close() }) {
            for _ in 0..<100 where served == nil {
                served = try? await client.readEKCertificate(.rsa2048)
                if served == nil { try await Task.sleep(for: .milliseconds(100)) }
            }
        }
        let written = try [UInt8](Data(contentsOf: certs.appendingPathComponent("ek-rsa2048.crt")))
        #expect(served == written)
        let issuer = try Certificate(derEncoded: written).issuer
        let ca = try VTPMCertificateAuthority.loadOrCreate(directory: data.appendingPathComponent("vtpm-ca"))
        #expect(issuer == ca.intermediate.subject)
    }

    /// A passphrase (libvirt passes a domain's `<encryption secret=…>` through a file descriptor,
    /// as Nova does with its key manager's secret) seals the state: setup and socket derive the
    /// same key from it; without it, or with another, the state does not open.
    @Test func aPassphraseSealsTheState() async throws {
        let dir = try Self.temporary("tl-pwd")
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = dir.appendingPathComponent("data").path, state = dir.appendingPathComponent("st").path
        let pass = dir.appendingPathComponent("pass"), other = dir.appendingPathComponent("other")
        try Data("correct horse battery staple".utf8).write(to: pass)
        try Data("another passphrase".utf8).write(to: other)
        let setup = try await Interop.run(
            Self.tlaunch,
            ["vtpm", "setup", "--tpm2", "--data", data, "--tpm-state", state, "--pwdfile", pass.path, "--cipher", "aes-256-cbc"])
        #expect(setup.0 == 0, "\(setup.2)")
        func serve(_ key: [String]) async throws -> [UInt8]? {
            let port = try SwtpmProcess.freePortPair()
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Self.tlaunch)
            p.arguments = ["vtpm", "socket", "--tpm2", "--data", data, "--tpmstate", "dir=\(state)", "--server", "type=tcp,port=\(port)",
                           "--ctrl", "type=tcp,port=\(port + 1)", "--flags", "not-need-init,startup-clear"] + key
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            defer { if p.isRunning { p.terminate() }; p.waitUntilExit() }
            let client = TPMClient(transport: SwtpmTransport(data: .tcp(host: "127.0.0.1", port: port), control: nil,
                                                             timeout: .seconds(30)))
            return try await withTeardown({ await client.close() }) { () async throws -> [UInt8]? in
                for _ in 0..<100 where p.isRunning {
                    if let der = try? await client.readEKCertificate(.rsa2048) { return der }
                    try await Task.sleep(for: .milliseconds(100))
                }
                return nil
            }
        }
        #expect(try await serve(["--key", "pwdfile=\(pass.path),mode=aes-256-cbc"]) != nil, "the passphrase opens it")
        #expect(try await serve(["--key", "pwdfile=\(other.path)"]) == nil, "another passphrase does not")
        #expect(try await serve([]) == nil, "the host key does not")
    }

    /// The capability documents libvirt reads: what this vTPM does, and nothing it does not.
    @Test func printCapabilitiesClaimsOnlyWhatIsImplemented() async throws {
        for (args, type) in [(["vtpm", "socket", "--print-capabilities"], "swtpm"),
                             (["vtpm", "socket", "--tpm2", "--print-capabilities"], "swtpm"),
                             (["vtpm", "setup", "--print-capabilities"], "swtpm_setup")] {
            let (rc, out, _) = try await Interop.run(Self.tlaunch, args)
            #expect(rc == 0)
            let doc = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any], "\(out)")
            let features = doc["features"] as? [String] ?? []
            #expect(doc["type"] as? String == type)
            #expect(features.contains("tpm-2.0") && !features.contains("tpm-1.2"), "\(features)")
            #expect(features.contains(type == "swtpm" ? "cmdarg-pwd-fd" : "cmdarg-pwdfile-fd"),
                    "passphrases (libvirt's <encryption secret>): \(features)")
        }
    }

    /// The real swtpm_ioctl drives our control channel (no --server: as libvirt starts swtpm),
    /// including saving and loading state blobs, and CMD_SHUTDOWN ends the process.
    @Test func swtpmIoctlDrivesOurControlChannel() async throws {
        guard let ioctl = Interop.tool("swtpm_ioctl") else { return }
        let dir = try Self.temporary("tl-ioctl")
        defer { try? FileManager.default.removeItem(at: dir) }
        let ctrl = dir.appendingPathComponent("ctrl.sock").path
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.tlaunch)
        p.arguments = ["vtpm", "socket", "--tpm2", "--data", dir.appendingPathComponent("data").path, "--tpmstate",
                       "dir=\(dir.appendingPathComponent("st").path),mode=0600",
            "--ctrl", "type=unixio,path=\(ctrl),mode=0600", "--log", "file=\(dir.appendingPathComponent("log").path)", "--pid",
            "file=\(dir.appendingPathComponent("pid").path)",
                       "--flags", "startup-clear"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { p.terminate() }; p.waitUntilExit() }
        for _ in 0..<200 where !FileManager.default.fileExists(atPath: ctrl) { try await Task.sleep(for: .milliseconds(50)) }
        var st = stat()
        #expect(stat(ctrl, &st) == 0 && st.st_mode & 0o777 == 0o600, "mode=0600 applies to the socket")
        func run(_ args: String...) async throws -> (Int32, String, String) { try await Interop.run(ioctl, args + ["--unix", ctrl]) }
        #expect(try await run("-c").1.hasPrefix("ptm capability is 0x"))
        #expect(try await run("--info", "3").1.contains("\"model\":\"TrustedLaunch vTPM\""))
        #expect(try await run("-i").0 == 0)
        #expect(try await run("-l", "1").0 == 0)
        #expect(try await run("-h", "measured by the hypervisor").0 == 0)
        #expect(try await run("-e").1.contains("tpmEstablished is 1"), "the H-CRTM sequence set tpmEstablished")
        let permanent = dir.appendingPathComponent("permanent.blob").path, volatile = dir.appendingPathComponent("volatile.blob").path
        #expect(try await run("--save", "permanent", permanent).0 == 0)
        #expect(try await run("--save", "volatile", volatile).0 == 0)
        let vBytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: volatile)))
        #expect(VTPMFuzzing.volatileState(vBytes).isEmpty && vBytes.count > 1000)
        // The permanent blob is the TPM: its EK certificate comes along.
        let copy = VirtualTPM.ephemeral()
        try copy.importPermanentState(try [UInt8](Data(contentsOf: URL(fileURLWithPath: permanent))))
        let c = TPMClient(transport: InProcessTransport(copy))
        try await c.startup(.clear)
        #expect(try await c.readEKCertificate(.rsa2048) != nil)
        // A blob is loaded only into a stopped TPM, then resumed by CMD_INIT — as QEMU resumes a
        // restored VM, with PTM_INIT_FLAG_DELETE_VOLATILE set (swtpm_ioctl -i sets it too): the
        // H-CRTM measurement in PCR 0 is still there (a fresh power-on would have zeroed it).
        #expect(try await run("--load", "volatile", volatile).0 != 0)
        #expect(try await run("--stop").0 == 0)
        #expect(try await run("--load", "volatile", volatile).0 == 0)
        #expect(try await run("-i").0 == 0)
        let resumed = dir.appendingPathComponent("resumed.blob").path
        #expect(try await run("--save", "volatile", resumed).0 == 0)
        func pcr0(_ file: String) async throws -> [UInt8]? {
            let t = VirtualTPM.ephemeral()
            try t.importPermanentState(try [UInt8](Data(contentsOf: URL(fileURLWithPath: permanent))))
            try t.resumeVolatileState(try [UInt8](Data(contentsOf: URL(fileURLWithPath: file))))
            return try await TPMClient(transport: InProcessTransport(t)).pcrRead(
                TPMLPCRSelection([TPMSPCRSelection(hash: .sha256, pcrs: [0])])
            ).first?.values[0]
        }
        let measured = try await pcr0(volatile)
        #expect(measured != nil && measured != [UInt8](repeating: 0, count: 32))
        #expect(try await pcr0(resumed) == measured, "CMD_INIT resumed the loaded volatile state")
        // Our own ioctl reads the same blob back.
        let ours = try await Interop.run(Self.tlaunch,
                                         ["vtpm", "ioctl", "--save", "permanent", dir.appendingPathComponent("p2").path, "--unix", ctrl])
        let theirs = try Data(contentsOf: URL(fileURLWithPath: permanent))
        #expect(ours.0 == 0 && (try? Data(contentsOf: dir.appendingPathComponent("p2"))) == theirs)
        #expect(try await run("-s").0 == 0)
        for _ in 0..<100 where p.isRunning { try await Task.sleep(for: .milliseconds(50)) }
        #expect(!p.isRunning, "CMD_SHUTDOWN ends the vTPM, as swtpm")
        let log = try String(contentsOf: dir.appendingPathComponent("log"), encoding: .utf8)
        #expect(log.contains("over the control channel (CMD_SET_DATAFD)"), "\(log)")
    }

    /// `--terminate` (libvirt passes it), as swtpm behaves — checked against swtpm in the same
    /// test: clients of the control channel alone (swtpm_ioctl) come and go; the process ends
    /// when the data channel QEMU passed with CMD_SET_DATAFD closes (QEMU went away).
    @Test func terminateEndsWithTheDataChannelAsSwtpm() async throws {
        guard let swtpm = Interop.tool("swtpm") else { return }
        for (label, program) in [("swtpm", [swtpm, "socket"]), ("ours", [Self.tlaunch, "vtpm", "socket"])] {
            let dir = try Self.temporary("tl-term")
            defer { try? FileManager.default.removeItem(at: dir) }
            let ctrl = dir.appendingPathComponent("ctrl.sock").path
            let p = Process()
            p.executableURL = URL(fileURLWithPath: program[0])
            p.arguments = Array(program.dropFirst()) + (label == "ours" ? ["--data", dir.appendingPathComponent("data").path] : [])
                + ["--tpm2", "--terminate", "--tpmstate", "dir=\(dir.appendingPathComponent("st").path)", "--ctrl",
                   "type=unixio,path=\(ctrl)"]
            try FileManager.default.createDirectory(at: dir.appendingPathComponent("st"), withIntermediateDirectories: true)
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            defer { if p.isRunning { p.terminate() }; p.waitUntilExit() }
            for _ in 0..<400 where !FileManager.default.fileExists(atPath: ctrl) { try await Task.sleep(for: .milliseconds(50)) }
            for _ in 0..<2 {
                let ioctl = try await Interop.run(Self.tlaunch, ["vtpm", "ioctl", "-c", "--unix", ctrl])
                #expect(ioctl.0 == 0, "\(label): \(ioctl.2)")
            }
            try await Task.sleep(for: .milliseconds(500))
            #expect(p.isRunning, "\(label): control clients came and went; the vTPM goes on")
            // The VM's side: a control connection passing one end of a socket pair as the data channel.
            let (control, data) = try connectPassingDataChannel(ctrl)
            defer { close(control) }
            let getRandom: [UInt8] = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7B, 0, 8]
            _ = getRandom.withUnsafeBytes { write(data, $0.baseAddress, 12) }
            var response = [UInt8](repeating: 0, count: 10)
            #expect(read(data, &response, 10) == 10, "\(label): the passed data channel answers")
            close(data)
            for _ in 0..<600 where p.isRunning { try await Task.sleep(for: .milliseconds(50)) }
            #expect(!p.isRunning, "\(label): the data channel closed — QEMU went — and the vTPM ended")
        }
    }

    /// Connects to a control socket and passes one end of a new socket pair with CMD_SET_DATAFD,
    /// as QEMU does; returns the control connection and the other end (the data channel).
    func connectPassingDataChannel(_ path: String) throws -> (Int32, Int32) {
        let ctrl = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { b in let u = Array(path.utf8); b.copyBytes(from: u); b[u.count] = 0 }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(ctrl, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { throw SkipPeer() }
        guard let passed = passDataChannel(over: ctrl), passed.result == [0, 0, 0, 0] else { throw SkipPeer() }
        return (ctrl, passed.data)
    }

    /// Our ioctl drives the real swtpm: the same wire, the other way round.
    @Test func ourIoctlDrivesSwtpm() async throws {
        guard let swtpm = Interop.tool("swtpm") else { return }
        let dir = try Self.temporary("tl-ioctl-sw")
        defer { try? FileManager.default.removeItem(at: dir) }
        let ctrl = dir.appendingPathComponent("ctrl.sock").path
        let p = Process()
        p.executableURL = URL(fileURLWithPath: swtpm)
        p.arguments = ["socket", "--tpm2", "--tpmstate", "dir=\(dir.path)", "--ctrl", "type=unixio,path=\(ctrl)", "--flags",
                       "not-need-init"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { p.terminate() }; p.waitUntilExit() }
        for _ in 0..<200 where !FileManager.default.fileExists(atPath: ctrl) { try await Task.sleep(for: .milliseconds(50)) }
        func run(_ args: String...) async throws -> (Int32, String, String) {
            try await Interop.run(Self.tlaunch, ["vtpm", "ioctl"] + args + ["--unix", ctrl])
        }
        #expect(try await run("-c").1.hasPrefix("ptm capability is 0x"))
        #expect(try await run("--info", "1").1.contains("\"family\":\"2.0\""))
        let blob = dir.appendingPathComponent("permanent.blob")
        #expect(try await run("--save", "permanent", blob.path).0 == 0)
        let saved = try Data(contentsOf: blob)
        #expect(saved.count > 1000, "swtpm's permanent state, read in chunks")
        let bad = try await run("-x")
        #expect(bad.0 == 1 && bad.2.contains("unrecognized option '-x'"))
        #expect(try await run("-s").0 == 0)
        for _ in 0..<100 where p.isRunning { try await Task.sleep(for: .milliseconds(50)) }
        #expect(!p.isRunning)
    }
}
