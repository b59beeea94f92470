import Foundation
import Synchronization
import TPM2

/// A TPM 2.0 implemented in Swift: one instance per VM. Commands are processed one at a
/// time; many instances run side by side in one process, each with its own state.
public final class VirtualTPM: TPMCommandExecutor, Sendable {
    let core: Mutex<EngineCore>

    /// A TPM with state in memory only (lost with the object), started up.
    public static func ephemeral() -> VirtualTPM {
        let tpm = VirtualTPM(core: EngineCore(state: .manufacture(), store: nil))
        _ = tpm.handle(Array(hex: "80010000000c000001440000")!)
        return tpm
    }

    /// A TPM whose state lives in `stateFile`, encrypted with `hostKey` (32 bytes). A missing
    /// file is a new TPM (manufactured now).
    public init(stateFile: String, hostKey: [UInt8]) throws(VTPMError) {
        let store = try StateStore(path: stateFile, key: hostKey)
        if let state = try store.load() {
            core = Mutex(EngineCore(state: state, store: store))
        } else {
            let state = PersistentState.manufacture()
            try store.save(state)
            core = Mutex(EngineCore(state: state, store: store))
        }
    }

    private init(core: EngineCore) {
        self.core = Mutex(core)
    }

    /// Executes one command (the bytes of a TPM command) at `locality` and returns the response.
    public func handle(_ command: [UInt8], locality: UInt8 = 0) -> [UInt8] {
        core.withLock { $0.execute(command, locality: locality) }
    }

    nonisolated(nonsending) public func execute(_ command: [UInt8], locality: UInt8) async -> [UInt8] {
        handle(command, locality: locality)
    }

    /// _TPM_Init: a power cycle (volatile state lost; TPM2_Startup needed again).
    public func powerOn() {
        core.withLock { $0.powerOn() }
    }

    /// Whether TPM2_Startup has run since the last power-on.
    public var isStarted: Bool { core.withLock { $0.started } }
}

extension VirtualTPM {
    /// The persistent state, encoded (unencrypted) — for swtpm's CMD_GET_STATEBLOB (migration).
    public func exportPermanentState() -> [UInt8] {
        core.withLock { (try? $0.state.tpmBytes()) ?? [] }
    }

    /// Replaces the persistent state (CMD_SET_STATEBLOB); the TPM must then be initialized.
    public func importPermanentState(_ bytes: [UInt8]) throws(VTPMError) {
        let state: PersistentState
        do { state = try PersistentState(tpmBytes: bytes) } catch {
            throw VTPMError(.corruptState, "the state blob does not parse: \(error)")
        }
        try core.withLock { (c: inout EngineCore) throws(VTPMError) in
            c.state = state
            try c.store?.save(state)
            c.powerOn()
        }
    }

    /// An H-CRTM measurement (_TPM_Hash_Start/Data/End, PC Client PTP): PCR 0 of every bank is
    /// reset to 4 (locality 4 origin) and extended with the digest of `data`.
    public func hcrtm(_ data: [UInt8]) {
        core.withLock { c in
            for alg in EngineCore.implementedHashes {
                guard let size = alg.digestSize, let d = try? TPMCrypto.hash(alg, data) else { continue }
                var initial = [UInt8](repeating: 0, count: size)
                initial[size - 1] = 4
                c.pcrs[alg]?[0] = (try? TPMCrypto.hash(alg, initial, d)) ?? initial
            }
        }
    }
}
