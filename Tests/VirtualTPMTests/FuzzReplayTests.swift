import Foundation
import TLaunchTestSupport
import TPM2
import Testing
import VirtualTPM
import Synchronization

/// Replays the vTPM dispatcher's fuzz corpus and crashers; records seeds on request.
@Suite("vTPM: fuzz corpus replay")
struct FuzzReplayTests {
    @Test func vtpmCommandCorpus() throws {
        #expect(try FuzzCorpus.replay("vtpm-commands", VTPMFuzzing.commands) >= 10, "the seed corpus is committed")
    }

    /// With TLAUNCH_RECORD_CORPUS=1, records real command streams of client flows as seeds.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["TLAUNCH_RECORD_CORPUS"] == "1"))
    func recordSeeds() async throws {
        let dir = FuzzCorpus.directory.appendingPathComponent("corpus/vtpm-commands")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        func flow(_ name: String, _ body: (TPMClient) async throws -> Void) async throws {
            let recorder = CommandRecorder(InProcessTransport(VirtualTPM.ephemeral()))
            try await body(TPMClient(transport: recorder))
            let commands = recorder.commands.withLock { $0 }
            try Data(commands.flatMap { $0 }).write(to: dir.appendingPathComponent("flow-\(name)"))
            for (i, c) in commands.enumerated() where i < 40 {
                try Data(c).write(to: dir.appendingPathComponent("cmd-\(name)-\(i)"))
            }
        }
        try await flow("ek-ak-quote") { tpm in
            let ek = try await tpm.createEK(.eccP256)
            let ak = try await tpm.createAK(ek: ek, template: TPMTemplates.akECCP256)
            _ = try await tpm.quote(ak.object.handle, qualifyingData: [1, 2, 3],
                                    pcrs: TPMLPCRSelection([TPMSPCRSelection(hash: .sha256, pcrs: [0, 16])]))
            let (b, s) = try TPMCredential.make(credential: [9, 9], objectName: ak.object.name, ekPublic: ek.publicArea)
            _ = try await tpm.activateCredential(ak: ak.object, ek: ek, blob: b, secret: s)
        }
        try await flow("nv") { tpm in
            let i = TPMHandle(0x0150_0001)
            try await tpm.nvDefineSpace(TPMSNVPublic(nvIndex: i, attributes: [.authRead, .authWrite], dataSize: 32), authValue: [1])
            try await tpm.nvWrite(i, data: [1, 2, 3], auth: .password([1]))
            _ = try await tpm.nvRead(i, size: 3, auth: .password([1]))
            let c = TPMHandle(0x0150_0002)
            try await tpm.nvDefineSpace(TPMSNVPublic(nvIndex: c, attributes: TPMANV([.ownerRead, .ownerWrite], type: .counter),
                                                     dataSize: 8))
            try await tpm.nvIncrement(c, authHandle: .owner)
        }
        try await flow("sessions") { tpm in
            let srk = try await tpm.createPrimary(.owner, template: TPMTemplates.storageECCP256).object
            let s = try await tpm.startAuthSession(type: .hmac, symmetric: .aes128CFB, salt: srk,
                                                   attributes: [.continueSession, .decrypt, .encrypt])
            _ = try await tpm.execute(TPM2GetRandom.make(16), extraSessions: [s])
            let p = try await tpm.startAuthSession(type: .policy)
            try await tpm.policyPCR(p, pcrs: TPMLPCRSelection([TPMSPCRSelection(hash: .sha256, pcrs: [16])]))
            try await tpm.policyCommandCode(p, .unseal)
            _ = try await tpm.policyGetDigest(p)
            let sealed = try await tpm.create(parent: srk.handle, template: TPMTemplates.sealedObject(),
                                              sensitive: TPMSSensitiveCreate(data: [7]))
            let item = try await tpm.load(parent: srk.handle, privateBlob: sealed.privateBlob, publicArea: sealed.publicArea)
            _ = try await tpm.unseal(item.handle)
            let ctx = try await tpm.contextSave(item.handle)
            try await tpm.flushContext(item.handle)
            _ = try await tpm.contextLoad(ctx)
        }
    }
}

/// Keeps every command sent.
final class CommandRecorder: TPMTransport {
    let inner: InProcessTransport
    let commands = Mutex<[[UInt8]]>([])
    init(_ inner: InProcessTransport) { self.inner = inner }
    nonisolated(nonsending) func send(_ command: [UInt8]) async throws(TPMError) -> [UInt8] {
        commands.withLock { $0.append(command) }
        return try await inner.send(command)
    }
    func close() async {}
}

extension TPM2GetRandom {
    static func make(_ n: UInt16) -> TPM2GetRandom {
        var c = TPM2GetRandom()
        c.bytesRequested = n
        return c
    }
}
