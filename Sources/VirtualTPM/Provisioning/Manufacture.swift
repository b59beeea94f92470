import Foundation
#if canImport(Glibc)
import Glibc
#endif
import TPM2
import SwiftASN1
import X509

/// NV attributes of an EK certificate index (TCG EK Credential Profile 2.x, 2.2.1.5):
/// written by the platform once, readable by the owner and with the index's empty auth.
let ekCertificateNVAttributes: TPMANV = [.ppWrite, .writeDefine, .ppRead, .ownerRead, .authRead, .noDA, .platformCreate]

extension VirtualTPM {
    /// Opens the vTPM whose state is `stateFile`; a new one is manufactured: its EKs (the TCG
    /// default RSA 2048 and ECC P-256 templates) get certificates from `authority`, stored in
    /// NV indices 0x01C00002 and 0x01C0000A. The TPM is left powered on but not started
    /// (TPM2_Startup comes from the firmware, or from `--flags startup-clear`).
    ///
    /// Manufacture is all or nothing: it happens in `STATE.manufacturing`, which becomes the state
    /// file by a rename only once the certificates are in NV. A crash before leaves no state file
    /// (only the unfinished one, which the next open discards and starts again), never a vTPM
    /// whose EK has no certificate and that would therefore never attest.
    public static func open(stateFile: String, hostKey: [UInt8], authority: VTPMCertificateAuthority?) async throws -> VirtualTPM {
        let fm = FileManager.default
        if !fm.fileExists(atPath: stateFile), let authority {
            let building = stateFile + ".manufacturing"
            try? fm.removeItem(atPath: building)   // a manufacture a crash interrupted: it was never used
            do {
                let fresh = try VirtualTPM(stateFile: building, hostKey: hostKey)
                try await fresh.provisionEndorsement(authority: authority)
            }
            guard fm.fileExists(atPath: building) else { throw VTPMError(.io, "manufacturing \(stateFile) wrote no state") }
            guard rename(building, stateFile) == 0 else { throw VTPMError(.io, "rename \(building): \(String(cString: strerror(errno)))") }
            let dir = (stateFile as NSString).deletingLastPathComponent
            let d = Glibc.open(dir.isEmpty ? "." : dir, O_RDONLY | O_CLOEXEC)
            if d >= 0 { fsync(d); close(d) }
        }
        return try VirtualTPM(stateFile: stateFile, hostKey: hostKey)
    }

    /// Creates the EK certificates and writes them to NV (platform authorization).
    public func provisionEndorsement(authority: VTPMCertificateAuthority, model: String = "TrustedLaunch vTPM") async throws {
        if !isStarted { _ = handle(try TPMCommandPacket(code: .startup, handles: [], sessions: [], parameters: [0, 0]).encode()) }
        let client = TPMClient(transport: InProcessTransport(self))
        for kind in TPMEKKind.allCases {
            let ek = try await client.createEK(kind)
            try await client.flushContext(ek.handle)
            let cert = try authority.issueEKCertificate(
                ekPublic: ek.publicArea, manufacturer: EngineCore.manufacturer, model: model,
                firmwareVersion: 0x0001_0000_0000_0000, specification: ("2.0", 0, Int(EngineCore.specRevision)))
            let der = try cert.serializeAsDER()
            let index = kind.certificateIndex
            try await client.nvDefineSpace(TPMSNVPublic(nvIndex: index, attributes: ekCertificateNVAttributes, dataSize: UInt16(der.count)),
                                           hierarchy: .platform)
            try await client.nvWrite(index, data: der, authHandle: .platform)
            var lock = TPM2NVWriteLock()
            lock.authHandle = .platform
            lock.nvIndex = index
            _ = try await client.execute(lock, auths: [.emptyPassword])
        }
        powerOn()
    }
}

extension Certificate {
    func serializeAsDER() throws -> [UInt8] {
        var s = DER.Serializer()
        try s.serialize(self)
        return s.serializedBytes
    }
}
