import Foundation
import TLaunchTestSupport
import TPM2
import Testing
import VirtualTPM
#if canImport(Glibc)
import Glibc
#endif

@Suite("vTPM: state at rest and across restarts")
struct StateTests {
    func tempDir() throws -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("tl-state-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }

    func started(_ tpm: VirtualTPM) -> TPMClient {
        _ = tpm.handle([0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x44, 0, 0])
        return TPMClient(transport: InProcessTransport(tpm))
    }

    @Test func stateSurvivesRestartAndIsEncrypted() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("vtpm.state").path
        let key = TPMCrypto.random(32)
        let secret = Array("a very recognisable NV secret".utf8)
        var ekName: [UInt8] = []
        do {
            let tpm = started(try VirtualTPM(stateFile: file, hostKey: key))
            try await tpm.nvDefineSpace(TPMSNVPublic(nvIndex: TPMHandle(0x0150_0001), attributes: [.ownerRead, .ownerWrite],
                                                     dataSize: UInt16(secret.count)))
            try await tpm.nvWrite(TPMHandle(0x0150_0001), data: secret, authHandle: .owner)
            let ek = try await tpm.createEK(.eccP256)
            ekName = ek.name
            let srk = try await tpm.createPrimary(.owner, template: TPMTemplates.storageECCP256).object
            try await tpm.evictControl(srk.handle, persistentHandle: TPMHandle(0x8100_0001))
            try await tpm.hierarchyChangeAuth(.owner, newAuth: Array("owner".utf8))
        }
        // Nothing of the secret in the file: it is sealed with AES-256-GCM.
        let raw = try Data(contentsOf: URL(fileURLWithPath: file))
        #expect(raw.range(of: Data(secret)) == nil)
        #expect(raw.prefix(8) == Data("TLVTPM01".utf8))
        // A restart (new process, same file and key): seeds, NV, persistent objects and auths are back.
        let tpm = started(try VirtualTPM(stateFile: file, hostKey: key))
        #expect(try await tpm.nvRead(TPMHandle(0x0150_0001), authHandle: .owner, auth: .password(Array("owner".utf8))) == secret)
        #expect(try await tpm.createEK(.eccP256).name == ekName)
        #expect(try await tpm.handles(from: TPMHandle(0x8100_0000)).contains(TPMHandle(0x8100_0001)))
        #expect(try await tpm.readClock().clockInfo.resetCount == 2)
        // The wrong host key is refused with a clear error.
        let e = #expect(throws: VTPMError.self) { _ = try VirtualTPM(stateFile: file, hostKey: TPMCrypto.random(32)) }
        #expect(e?.code == .corruptState)
        #expect(e?.reason.contains("wrong host key") == true)
    }

    @Test func aTornTailFallsBackToTheLastIntactRecord() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("vtpm.state").path
        let key = TPMCrypto.random(32)
        do {
            let tpm = started(try VirtualTPM(stateFile: file, hostKey: key))
            try await tpm.nvDefineSpace(TPMSNVPublic(nvIndex: TPMHandle(0x0150_0002),
                                                     attributes: TPMANV([.ownerRead, .ownerWrite], type: .counter), dataSize: 8))
            for _ in 0..<5 { try await tpm.nvIncrement(TPMHandle(0x0150_0002), authHandle: .owner) }
        }
        // Simulate a crash in the middle of appending the next record.
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: file))
        try h.seekToEnd()
        try h.write(contentsOf: [0, 0, 0x40, 0] + TPMCrypto.random(100))
        try h.close()
        let tpm = started(try VirtualTPM(stateFile: file, hostKey: key))
        let v = try await tpm.nvRead(TPMHandle(0x0150_0002), authHandle: .owner)
        #expect(v.last == 5)
        // And it goes on appending after the torn bytes are superseded.
        try await tpm.nvIncrement(TPMHandle(0x0150_0002), authHandle: .owner)
        let again = started(try VirtualTPM(stateFile: file, hostKey: key))
        #expect(try await again.nvRead(TPMHandle(0x0150_0002), authHandle: .owner).last == 6)
    }

    @Test func manyWritesCompactTheJournal() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("vtpm.state").path
        let key = TPMCrypto.random(32)
        let tpm = started(try VirtualTPM(stateFile: file, hostKey: key))
        try await tpm.nvDefineSpace(TPMSNVPublic(nvIndex: TPMHandle(0x0150_0003), attributes: [.ownerRead, .ownerWrite], dataSize: 64))
        var sizes: [Int] = []
        for i in 0..<200 {
            try await tpm.nvWrite(TPMHandle(0x0150_0003), data: [UInt8](repeating: UInt8(i), count: 64), authHandle: .owner)
            sizes.append((try FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0)
        }
        // The file stays bounded (preallocated; rewritten with one record every 64 appends).
        #expect(sizes.max()! <= 1 << 20)
        #expect(Set(sizes).count <= 2)
        let reopened = started(try VirtualTPM(stateFile: file, hostKey: key))
        #expect(try await reopened.nvRead(TPMHandle(0x0150_0003), authHandle: .owner) == [UInt8](repeating: 199, count: 64))
    }
}
