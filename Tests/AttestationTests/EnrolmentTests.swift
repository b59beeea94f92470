import Foundation
import TLaunchTestSupport
import TPM2
import Testing
import VirtualTPM
import X509
@testable import Attestation

@Suite("Attestation: enrolment (EK certificate chain, AK checks, credential activation)")
struct EnrolmentTests {
    /// A vTPM manufactured under a platform CA (EK certificates in NV), and its EK and AK.
    struct Enrolled {
        let dir: URL
        let authority: VTPMCertificateAuthority
        let client: TPMClient
        let ek: TPMObject
        let ak: TPMAttestationKey
        let ekCertificate: [UInt8]
    }

    static func manufacture(ca: URL? = nil) async throws -> Enrolled {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tl-enrol-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let authority = try VTPMCertificateAuthority.loadOrCreate(directory: ca ?? dir.appendingPathComponent("ca"))
        let tpm = try await VirtualTPM.open(stateFile: dir.appendingPathComponent("vm.state").path,
                                            hostKey: [UInt8](repeating: 9, count: 32), authority: authority)
        _ = tpm.handle([0x80, 0x01, 0, 0, 0, 0x0C, 0, 0, 0x01, 0x44, 0, 0])   // TPM2_Startup(CLEAR), as firmware does
        let client = TPMClient(transport: InProcessTransport(tpm))
        let cert = try #require(try await client.readEKCertificate(.eccP256))
        let ek = try await client.createEK(.eccP256)
        let ak = try await client.createAK(ek: ek, template: TPMTemplates.akECCP256)
        return Enrolled(dir: dir, authority: authority, client: client, ek: ek, ak: ak, ekCertificate: cert)
    }

    @Test func aVTPMOfThePlatformEnrols() async throws {
        let vm = try await Self.manufacture()
        defer { try? FileManager.default.removeItem(at: vm.dir) }
        let anchors = TrustAnchors(roots: [vm.authority.root], intermediates: [vm.authority.intermediate])
        _ = try await Enrolment.validateEK(certificate: vm.ekCertificate, ekPublic: vm.ek.publicArea, anchors: anchors)
        let (secret, blob, enc) = try Enrolment.challenge(ekPublic: vm.ek.publicArea, akPublic: vm.ak.publicArea)
        let answer = try await vm.client.activateCredential(ak: vm.ak.object, ek: vm.ek, blob: blob, secret: enc)
        try Enrolment.verifyActivation(answer, secret: secret)
        #expect(throws: EnrolmentError.self) { try Enrolment.verifyActivation(answer.reversed(), secret: secret) }
    }

    @Test func anEKCertificateFromAnUnknownCAIsRefused() async throws {
        let vm = try await Self.manufacture()
        defer { try? FileManager.default.removeItem(at: vm.dir) }
        let otherDir = vm.dir.appendingPathComponent("other-ca")
        let other = try VTPMCertificateAuthority.loadOrCreate(directory: otherDir)
        let e = await #expect(throws: EnrolmentError.self) {
            _ = try await Enrolment.validateEK(certificate: vm.ekCertificate, ekPublic: vm.ek.publicArea,
                                               anchors: TrustAnchors(roots: [other.root], intermediates: [other.intermediate]))
        }
        #expect(e?.code == .ekCertificate && e?.reason.contains("does not chain") == true)
        // The right chain but another TPM's EK: the certificate does not certify it.
        let second = try await Self.manufacture(ca: vm.dir.appendingPathComponent("ca"))
        defer { try? FileManager.default.removeItem(at: second.dir) }
        let e2 = await #expect(throws: EnrolmentError.self) {
            _ = try await Enrolment.validateEK(certificate: vm.ekCertificate, ekPublic: second.ek.publicArea,
                                               anchors: TrustAnchors(roots: [vm.authority.root],
                                                                     intermediates: [vm.authority.intermediate]))
        }
        #expect(e2?.reason.contains("another key") == true)
    }

    @Test func anAKFromAnotherTPMCannotActivate() async throws {
        let a = try await Self.manufacture()
        defer { try? FileManager.default.removeItem(at: a.dir) }
        let b = try await Self.manufacture(ca: a.dir.appendingPathComponent("ca"))
        defer { try? FileManager.default.removeItem(at: b.dir) }
        // The agent claims A's EK with B's AK: the credential is made for A's EK; B cannot open it.
        let (_, blob, enc) = try Enrolment.challenge(ekPublic: a.ek.publicArea, akPublic: b.ak.publicArea)
        await #expect(throws: TPMError.self) { _ = try await b.client.activateCredential(ak: b.ak.object, ek: b.ek, blob: blob,
                                                                                         secret: enc) }
        // And an EK (restricted decryption key) is not an attestation key.
        #expect(throws: EnrolmentError.self) { _ = try Enrolment.challenge(ekPublic: a.ek.publicArea, akPublic: a.ek.publicArea) }
    }
}
