import Foundation
import MeasuredBoot
import SecureBoot
import TLaunchTestSupport
import TPM2
import Testing
import VirtualTPM
import X509
#if canImport(Glibc)
import Glibc
#endif

/// A variable store made by `VariableStore.enroll` boots Debian's Secure Boot OVMF (with SMM) on
/// our vTPM: the firmware enforces Secure Boot with our keys (its unsigned shell is refused),
/// and its PCR 7 equals the value predicted from the store's contents.
@Suite("Secure Boot: OVMF boots with an enrolled store")
struct FirmwareTests {
    static let code = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
    static let blank = "/usr/share/OVMF/OVMF_VARS_4M.fd"

    @Test(.corpus, .timeLimit(.minutes(4)))
    func enrolledStoreIsEnforcedAndMeasured() async throws {
        guard let qemu = Interop.tool("qemu-system-x86_64") else { return }
        guard FileManager.default.fileExists(atPath: Self.code), FileManager.default.fileExists(atPath: Self.blank) else {
            if Interop.required { Issue.record("\(Self.code) is missing (Debian package ovmf)") }
            return
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tl-sb-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }

        // A per-VM store: the snakeoil certificate as PK, KEK and db; one revoked hash in dbx.
        let cert = try Certificate(derEncoded: Corpus.bytes("uefi/certs/PkKek-1-snakeoil.der"))
        let owner = EFIGUID("a0baa8a3-041d-48a8-bc87-c36d121b5e3d")!
        let keys = try SignatureDatabase(certificates: [cert], owner: owner)
        let dbx = SignatureDatabase(lists: [SignatureList(type: .certSHA256, signatureSize: 48,
                                                          entries: [SignatureEntry(owner: owner, type: .certSHA256,
                                                                                   data: [UInt8](repeating: 0xAB, count: 32))])])
        var store = try VariableStore(Array(try Data(contentsOf: URL(fileURLWithPath: Self.blank))))
        try store.enroll(pk: keys, kek: keys, db: keys, dbx: dbx)
        let vars = dir.appendingPathComponent("vars.fd")
        try Data(store.bytes).write(to: vars)
        // It reads back as written.
        let again = try VariableStore(Array(try Data(contentsOf: vars)))
        #expect(
            again.pk.certificates.first?.certificate == cert && again.dbx.lists.first?.entries.count == 1 && again.secureBootWillBeEnabled)

        var options = VTPMServer.Options(data: .unix(path: dir.appendingPathComponent("data.sock").path),
                                         control: .unix(path: dir.appendingPathComponent("ctrl.sock").path))
        options.notNeedInit = false
        let tpm = VirtualTPM.ephemeral()
        let server = try VTPMServer(tpm: tpm, options: options)
        server.start()
        defer { server.terminate() }
        let serial = dir.appendingPathComponent("serial.log")
        _ = FileManager.default.createFile(atPath: serial.path, contents: nil)
        let q = Process()
        q.executableURL = URL(fileURLWithPath: qemu)
        q.arguments = ["-machine", "q35,smm=on", "-accel", "tcg", "-m", "256", "-display", "none", "-net", "none",
                       "-global", "driver=cfi.pflash01,property=secure,value=on",
                       "-serial", "file:\(serial.path)", "-monitor", "none", "-no-reboot",
                       "-drive", "if=pflash,format=raw,unit=0,readonly=on,file=\(Self.code)",
                       "-drive", "if=pflash,format=raw,unit=1,file=\(vars.path)",
                       "-chardev", "socket,id=chrtpm,path=\(dir.appendingPathComponent("ctrl.sock").path)",
                       "-tpmdev", "emulator,id=tpm0,chardev=chrtpm", "-device", "tpm-tis,tpmdev=tpm0"]
        q.standardOutput = FileHandle.nullDevice
        q.standardError = FileHandle.nullDevice
        try q.run()
        let deadline = ContinuousClock.now + .seconds(150)
        var text = ""
        while ContinuousClock.now < deadline {
            text = String(decoding: (try? Data(contentsOf: serial)) ?? Data(), as: UTF8.self)
            if text.contains("No bootable option") || text.contains("Shell>") { break }
            if !q.isRunning { break }
            try await Task.sleep(for: .milliseconds(250))
        }
        kill(q.processIdentifier, SIGKILL)
        q.waitUntilExit()
        // Secure Boot is on with our keys: the shell in the firmware volume is not signed by them.
        #expect(text.contains("Security Violation"), "the firmware enforced Secure Boot: \(text.suffix(400))")
        #expect(!text.contains("Shell>"))

        // PCR 7 as the firmware measured it, against the prediction from the store.
        var read = TPM2PCRRead()
        read.pcrSelectionIn = TPMLPCRSelection([TPMSPCRSelection(hash: .sha256, pcrs: [7])])
        let response = tpm.handle(try TPMCommandPacket(code: .pcrRead, handles: [], sessions: [],
                                                       parameters: read.parameterBytes()).encode())
        let packet = try TPMResponsePacket.decode(response, handleCount: 0, sessionCount: 0)
        let pcr7 = try TPM2PCRRead.Response(handles: [], parameters: packet.parameters).pcrValues.digests.first?.bytes
        var b = try EventLogBuilder(banks: [.sha256])
        b.measureVariable(pcr: 7, type: .efiVariableDriverConfig, guid: .globalVariable, name: "SecureBoot", data: [1])
        b.measureVariable(pcr: 7, type: .efiVariableDriverConfig, guid: .globalVariable, name: "PK", data: keys.encoded)
        b.measureVariable(pcr: 7, type: .efiVariableDriverConfig, guid: .globalVariable, name: "KEK", data: keys.encoded)
        b.measureVariable(pcr: 7, type: .efiVariableDriverConfig, guid: .imageSecurityDatabase, name: "db", data: keys.encoded)
        b.measureVariable(pcr: 7, type: .efiVariableDriverConfig, guid: .imageSecurityDatabase, name: "dbx", data: dbx.encoded)
        b.separators(7...7)
        let predicted = b.log.replay()[.sha256, 7]
        #expect(pcr7 == predicted, "PCR 7 \(pcr7.map { hexString($0) } ?? "-") vs predicted \(predicted.map { hexString($0) } ?? "-")")
    }
}
