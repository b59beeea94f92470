import Foundation
import Synchronization
import TPM2

/// A TPM 2.0 implemented in Swift: one instance per VM. Commands are processed one at a
/// time; many instances run side by side in one process, each with its own state.
public final class VirtualTPM: TPMCommandExecutor, Sendable {
    private let core: Mutex<EngineCore>

    /// A TPM with state in memory only (lost with the object), started up.
    public static func ephemeral() -> VirtualTPM {
        let tpm = VirtualTPM(core: EngineCore(state: .manufacture(), store: nil))
        _ = tpm.execute(Array(hex: "80010000000c000001440000")!, locality: 0)
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
    public func execute(_ command: [UInt8], locality: UInt8 = 0) -> [UInt8] {
        core.withLock { $0.execute(command, locality: locality) }
    }

    public func execute(_ command: [UInt8], locality: UInt8) async -> [UInt8] {
        executeNow(command, locality: locality)
    }

    private func executeNow(_ command: [UInt8], locality: UInt8) -> [UInt8] {
        core.withLock { $0.execute(command, locality: locality) }
    }

    /// _TPM_Init: a power cycle (volatile state lost; TPM2_Startup needed again).
    public func powerOn() {
        core.withLock { $0.powerOn() }
    }

    /// Whether TPM2_Startup has run since the last power-on.
    public var isStarted: Bool { core.withLock { $0.started } }
}
