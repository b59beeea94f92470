import Foundation
import TPM2
import Testing
import TLaunchTestSupport

/// Replays the saved libFuzzer corpora (and any saved crashers) through the fuzz entry points.
@Suite("fuzz corpora replay")
struct FuzzCorpusTests {
    @Test func tpm2ResponseCorpus() throws {
        let inputs = try FuzzCorpus.inputs("tpm2-response")
        #expect(inputs.count >= 20, "the seed corpus is committed")
        for (name, bytes) in inputs {
            let violations = TPMFuzzing.responseDecoding(bytes)
            #expect(violations.isEmpty, "\(name): \(violations)")
        }
    }

    /// With TLAUNCH_RECORD_CORPUS=1, records real swtpm responses as seeds (a developer tool).
    @Test(.enabled(if: ProcessInfo.processInfo.environment["TLAUNCH_RECORD_CORPUS"] == "1"))
    func recordSeedsFromSwtpm() async throws {
        guard let sw = try await Interop.swtpm(manufacture: true) else { return }
        defer { sw.stop(); sw.removeState() }
        let recorder = RecordingTransport(SwtpmTransport(data: .tcp(host: "127.0.0.1", port: sw.port), control: nil))
        let tpm = TPMClient(transport: recorder)
        let selectors: [TPMCC: UInt8] = [.getCapability: 9, .pcrRead: 10, .createPrimary: 11, .create: 12, .quote: 13,
                                         .startAuthSession: 14, .readPublic: 15, .nvReadPublic: 16, .pcrEvent: 17,
                                         .policySecret: 18, .contextSave: 19, .sign: 20, .readClock: 21, .nvRead: 22]
        _ = try await tpm.info()
        _ = try await tpm.pcrRead(TPMLPCRSelection([TPMSPCRSelection(hash: .sha256, pcrs: 0..<24),
                                                    TPMSPCRSelection(hash: .sha1, pcrs: [0])]))
        let ek = try await tpm.createEK(.rsa2048)
        let ak = try await tpm.createAK(ek: ek, template: TPMTemplates.akECCP256)
        _ = try await tpm.pcrEvent(16, data: [1, 2, 3])
        _ = try await tpm.quote(ak.object.handle, qualifyingData: [1, 2, 3, 4],
                                pcrs: TPMLPCRSelection([TPMSPCRSelection(hash: .sha256, pcrs: [0, 16])]))
        _ = try await tpm.readPublic(ek.handle)
        _ = try await tpm.contextSave(ak.object.handle)
        _ = try await tpm.readClock()
        let s = try await tpm.startAuthSession(type: .hmac, symmetric: .aes128CFB, attributes: [.continueSession, .encrypt])
        await #expect(throws: TPMError.self) { _ = try await tpm.execute(TPM2ReadClock(), extraSessions: [s]) }
        _ = try await tpm.execute(TPM2GetRandom.with(bytes: 16), extraSessions: [s])
        let signer = try await tpm.createPrimary(.owner, template: TPMTemplates.signingKey(ecc: true)).object
        _ = try await tpm.sign(signer.handle, digest: [UInt8](repeating: 7, count: 32))
        await tpm.close()
        let dir = FuzzCorpus.directory.appendingPathComponent("corpus/tpm2-response")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for (i, (code, response)) in await recorder.exchanges.enumerated() {
            guard let sel = selectors[code] else { continue }
            try Data([sel] + response).write(to: dir.appendingPathComponent(String(format: "swtpm-%02d-%@", i,
                                                                                   code.description as NSString)))
        }
    }
}

/// Passes commands through and keeps each response with its command code.
actor RecordingTransport: TPMTransport {
    let inner: any TPMTransport
    var exchanges: [(TPMCC, [UInt8])] = []
    init(_ inner: any TPMTransport) { self.inner = inner }
    func send(_ command: [UInt8]) async throws(TPMError) -> [UInt8] {
        let r = try await inner.send(command)
        let code = TPMCC(rawValue: UInt32(command[6]) << 24 | UInt32(command[7]) << 16 | UInt32(command[8]) << 8 | UInt32(command[9]))
        exchanges.append((code, r))
        return r
    }
    func close() async { await inner.close() }
}
