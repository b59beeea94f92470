import AttestationAPI
import Fleet
import Foundation
import Attestation
import Storage
import TLaunchTestSupport
import Testing
import VirtualTPM

/// Token-signing keys at rest: what the database holds is sealed under a key kept outside it;
/// a copy of the database signs nothing, and an instance with the wrong key says so at once.
@Suite struct SealedKeysTests {
    func service(_ store: SQLStore, _ folder: DataFolder, sealer: KeySealer?) throws -> AttestationService {
        let authority = try VTPMCertificateAuthority.loadOrCreate(directory: folder.vtpmCA)
        return AttestationService(store: store, anchors: TrustAnchors(roots: [authority.root], intermediates: [authority.intermediate]),
            akCA: try AKCertificateAuthority.loadOrCreate(directory: folder.attestationCA), issuer: "https://attest.tlaunch.test",
                                  cacheLifetime: 0, keySealer: sealer)
    }

    @Test(arguments: Backend.allCases)
    func theDatabaseHoldsNoUsableSigningKey(_ backend: Backend) async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tl-seal-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: dir) }
        let folder = DataFolder(root: dir)
        try folder.create()
        guard let store = try await backend.makeStore(dir: dir) else { return }
        try await withTeardown({ await store.backend.close() }) {
            // An older version stored its key in clear: the first load with a sealer seals it, same kid.
            let legacy = try service(store, folder, sealer: nil)
            let before = try await legacy.keys().signing.signingKey.keyID
            #expect(try await store.signingKeys().allSatisfy { $0.privateKey.contains("PRIVATE KEY") })
            let sealer = try KeySealer(key: [UInt8](repeating: 0x42, count: 32))
            let sealed = try service(store, folder, sealer: sealer)
            #expect(try await sealed.keys().signing.signingKey.keyID == before)
            let kid = try await sealed.rotateKey()
            let rows = try await store.signingKeys()
            #expect(rows.count == 2 && rows.allSatisfy { KeySealer.isSealed($0.privateKey) && !$0.privateKey.contains("PRIVATE KEY") },
                    "\(rows.map(\.privateKey))")
            #expect(try await sealed.keys().signing.signingKey.keyID == kid)

            // Without the key, or with another, the service refuses with what to give it.
            await #expect { _ = try await service(store, folder, sealer: nil).keys() } throws: { e in
                "\(e)".contains("sealed") && "\(e)".contains("TLAUNCH_KEY")
            }
            await #expect { _ = try await service(store, folder,
                                                  sealer: try KeySealer(key: [UInt8](repeating: 7, count: 32))).keys() } throws: { e in
                "\(e)".contains("does not open")
            }
            // A sealed key copied onto another key's row does not open: the seal names its kid.
            let other = try #require(rows.first { $0.kid != kid })
            let mine = try #require(rows.first { $0.kid == kid })
            try await store.updateSigningKey(kid: kid, privateKey: other.privateKey, was: mine.privateKey)
            await #expect(throws: AttestationServiceError.self) { _ = try await service(store, folder, sealer: sealer).keys() }
        }
    }

    @Test func theKeyComesFromTLAUNCH_KEYInHexOrBase64() throws {
        let hex = String(repeating: "ab", count: 32)
        let fromHex = try KeySealer.fromEnvironment(["TLAUNCH_KEY": hex])
        let fromBase64 = try KeySealer.fromEnvironment(["TLAUNCH_KEY": Data(repeating: 1, count: 32).base64EncodedString()])
        let unset = try KeySealer.fromEnvironment([:])
        #expect(fromHex != nil && fromBase64 != nil && unset == nil)
        #expect(throws: AttestationServiceError.self) { _ = try KeySealer.fromEnvironment(["TLAUNCH_KEY": "short"]) }
        // Sealed under one key, opened under it; the stored text shows nothing of the PEM.
        let s = try KeySealer(key: [UInt8](repeating: 3, count: 32))
        let text = try s.seal("-----BEGIN PRIVATE KEY-----\nxyz\n-----END PRIVATE KEY-----\n", kid: "k1")
        let opened = try s.open(text, kid: "k1")
        #expect(!text.contains("PRIVATE") && opened.contains("xyz"))
        #expect(throws: AttestationServiceError.self) { _ = try s.open(text, kid: "k2") }
    }
}
