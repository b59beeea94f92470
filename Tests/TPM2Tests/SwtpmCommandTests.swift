import Crypto
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import TPM2
import Testing
import TLaunchTestSupport

@Suite("swtpm: every remaining client command")
struct SwtpmCommandTests {
    /// A swtpm this process starts takes none of its descriptors but stdio: a socket opened
    /// without close-on-exec (as a test's raw listener was) would otherwise stay open — and
    /// listening — in the child after this process closed it.
    @Test func swtpmInheritsNoDescriptorOfThisProcess() async throws {
        let inheritable = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(inheritable >= 0)
        defer { close(inheritable) }
        try #require(fcntl(inheritable, F_GETFD) & FD_CLOEXEC == 0, "the socket is inheritable")
        let ours = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(inheritable)")
        guard let sw = try await Interop.swtpm() else { return }
        defer { sw.stop(); sw.removeState() }
        let pid = try #require(sw.pid)
        let fds = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")
        let targets = fds.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)") }
        #expect(!targets.isEmpty, "the child's descriptors were read")
        #expect(!targets.contains(ours), "swtpm holds this process's \(ours): \(targets)")
    }

    @Test(arguments: TPMKind.allCases)
    func nvLifecycle(kind: TPMKind) async throws {
        try await withTPM(kind) { tpm in
            let ordinary = TPMHandle(0x0150_0001), counter = TPMHandle(0x0150_0002), extend = TPMHandle(0x0150_0003)
            try await tpm.nvDefineSpace(TPMSNVPublic(nvIndex: ordinary, attributes: [.ownerWrite, .ownerRead, .authWrite, .authRead],
                                                     dataSize: 2000))
            var (pub, name) = try await tpm.nvReadPublic(ordinary)
            #expect(!pub.attributes.contains(.written))
            #expect(name == (try pub.name()))
            // Reading before the first write: NV_UNINITIALIZED.
            let e = await #expect(throws: TPMError.self) { _ = try await tpm.nvRead(ordinary, size: 4) }
            #expect(e?.responseCode?.base == .nvUninitialized)
            // Larger than one NV buffer: written and read in chunks.
            let data = (0..<2000).map { UInt8($0 % 251) }
            try await tpm.nvWrite(ordinary, data: data, chunk: 512)
            #expect(try await tpm.nvRead(ordinary, chunk: 512) == data)
            #expect(try await tpm.nvRead(ordinary, size: 10, offset: 100, authHandle: .owner) == Array(data[100..<110]))
            (pub, name) = try await tpm.nvReadPublic(ordinary)
            #expect(pub.attributes.contains(.written))
            #expect(name == (try pub.name()))
            // Out of range.
            let r = await #expect(throws: TPMError.self) { _ = try await tpm.nvRead(ordinary, size: 10, offset: 1995) }
            #expect(r?.responseCode?.base == .nvRange)

            try await tpm.nvDefineSpace(TPMSNVPublic(nvIndex: counter, attributes: TPMANV([.authWrite, .authRead], type: .counter),
                                                     dataSize: 8))
            try await tpm.nvIncrement(counter)
            let first = try await tpm.nvRead(counter, size: 8)
            try await tpm.nvIncrement(counter)
            try await tpm.nvIncrement(counter)
            let third = try await tpm.nvRead(counter, size: 8)
            func u64(_ b: [UInt8]) -> UInt64 { b.reduce(0) { $0 << 8 | UInt64($1) } }
            #expect(u64(third) == u64(first) + 2)

            try await tpm.nvDefineSpace(TPMSNVPublic(nvIndex: extend, nameAlg: .sha256,
                                                     attributes: TPMANV([.authWrite, .authRead], type: .extend), dataSize: 32))
            try await tpm.nvExtend(extend, data: Array("event one".utf8))
            try await tpm.nvExtend(extend, data: Array("event two".utf8))
            let v1 = try TPMCrypto.hash(.sha256, [UInt8](repeating: 0, count: 32), Array("event one".utf8))
            let v2 = try TPMCrypto.hash(.sha256, v1, Array("event two".utf8))
            #expect(try await tpm.nvRead(extend) == v2)

            let listed = try await tpm.handles(from: TPMHandle(0x0100_0000))
            #expect(Set([ordinary, counter, extend]).isSubset(of: Set(listed)))
            for h in [ordinary, counter, extend] { try await tpm.nvUndefineSpace(h) }
            let gone = await #expect(throws: TPMError.self) { _ = try await tpm.nvReadPublic(ordinary) }
            #expect(gone?.responseCode?.base == .handle)
        }
    }

    @Test(arguments: TPMKind.allCases)
    func pcrExtendEventReset(kind: TPMKind) async throws {
        try await withTPM(kind) { tpm in
            let sel = TPMLPCRSelection([TPMSPCRSelection(hash: .sha1, pcrs: [16, 23]), TPMSPCRSelection(hash: .sha256, pcrs: [16, 23])])
            let d1 = [UInt8](repeating: 0x11, count: 20), d256 = [UInt8](repeating: 0x22, count: 32)
            try await tpm.pcrExtend(23, digests: [TPMTHA(hashAlg: .sha1, digest: d1), TPMTHA(hashAlg: .sha256, digest: d256)])
            let event = Array("event data".utf8)
            let returned = try await tpm.pcrEvent(16, data: event)
            #expect(returned.first { $0.hashAlg == .sha256 }?.digest == Array(SHA256.hash(data: event)))
            let banks = try await tpm.pcrRead(sel)
            let sha1 = banks.first { $0.hashAlg == .sha1 }!, sha256 = banks.first { $0.hashAlg == .sha256 }!
            #expect(sha1.values[23] == (try TPMCrypto.hash(.sha1, [UInt8](repeating: 0, count: 20), d1)))
            #expect(sha256.values[23] == (try TPMCrypto.hash(.sha256, [UInt8](repeating: 0, count: 32), d256)))
            #expect(sha256.values[16] == (try TPMCrypto.hash(.sha256, [UInt8](repeating: 0, count: 32), Array(SHA256.hash(data: event)))))
            try await tpm.pcrReset(16)
            try await tpm.pcrReset(23)
            let after = try await tpm.pcrRead(sel)
            #expect(after.allSatisfy { $0.values.values.allSatisfy { $0.allSatisfy { $0 == 0 } } })
            // PCR 0 is not resettable from locality 0.
            let e = await #expect(throws: TPMError.self) { try await tpm.pcrReset(0) }
            #expect(e?.responseCode?.base == .locality)
        }
    }

    @Test(arguments: TPMKind.allCases)
    func capabilitiesOfEveryKind(kind: TPMKind) async throws {
        try await withTPM(kind) { tpm in
            for cap in [TPMCap.algs, .handles, .commands, .ppCommands, .auditCommands, .pcrs, .tpmProperties, .pcrProperties, .eccCurves,
                        .authPolicies, .act] {
                let property: UInt32 = switch cap {
                case .handles: 0x8000_0000
                case .authPolicies: 0x4000_0000
                case .act: 0x4000_0110
                default: 0
                }
                let (_, data) = try await tpm.getCapability(cap, property: property, count: 64)
                #expect(data.selector == cap)
            }
            guard case .command(let cmds) = try await tpm.getCapability(.commands, property: TPMCC.nvUndefineSpaceSpecial.rawValue,
                                                                        count: 254).data else {
                Issue.record("no command list"); return
            }
            #expect(cmds.contains { $0.commandCode == .quote })
            guard case .algorithms(let algs) = try await tpm.getCapability(.algs).data else { Issue.record("no algorithm list"); return }
            #expect(algs.contains { $0.alg == .sha256 && $0.algProperties.contains(.hash) })
            guard case .pcrProperties(let props) = try await tpm.getCapability(.pcrProperties).data else {
                Issue.record("no PCR properties"); return
            }
            let resettable = props.first { $0.tag == .resetL0 }.map { TPMSPCRSelection(hash: .null, pcrSelect: $0.pcrSelect).pcrs } ?? []
            #expect(resettable.contains(16) && resettable.contains(23))
            let info = try await tpm.info()
            #expect(info.manufacturer == (kind == .swtpm ? "IBM" : "TLCH"))
            #expect(info.pcrBanks["sha256"]?.count == 24)
            #expect(info.algorithms.contains("ecc"))
        }
    }

    @Test(arguments: TPMKind.allCases)
    func hierarchyAuthAndClear(kind: TPMKind) async throws {
        try await withTPM(kind) { tpm in
            let ownerAuth = Array("owner-secret".utf8)
            try await tpm.hierarchyChangeAuth(.owner, newAuth: ownerAuth)
            let index = TPMHandle(0x0150_0100)
            let e = await #expect(throws: TPMError.self) {
                try await tpm.nvDefineSpace(TPMSNVPublic(nvIndex: index, attributes: [.ownerWrite, .ownerRead], dataSize: 4))
            }
            #expect(e?.responseCode?.base == .badAuth || e?.responseCode?.base == .authFail)
            try await tpm.nvDefineSpace(TPMSNVPublic(nvIndex: index, attributes: [.ownerWrite, .ownerRead], dataSize: 4),
                                        auth: .password(ownerAuth))
            // An HMAC session authorizes the owner as well (permanent handle: its handle is its Name).
            let s = try await tpm.startAuthSession(type: .hmac)
            try await tpm.nvWrite(index, data: [1, 2, 3, 4], authHandle: .owner, auth: .session(s, authValue: ownerAuth))
            #expect(try await tpm.nvRead(index, authHandle: .owner, auth: .password(ownerAuth)) == [1, 2, 3, 4])
            let persisted = TPMHandle(0x8100_0010)
            let srk = try await tpm.createPrimary(.owner, template: TPMTemplates.storageECCP256, auth: .password(ownerAuth)).object
            try await tpm.evictControl(srk.handle, persistentHandle: persisted, auth: .password(ownerAuth))

            // Changing the owner auth through an HMAC session: the response is keyed with the new value.
            let s2 = try await tpm.startAuthSession(type: .hmac, symmetric: .aes128CFB, attributes: [.continueSession, .decrypt])
            let newer = Array("newer-owner-secret".utf8)
            try await tpm.hierarchyChangeAuth(.owner, newAuth: newer, auth: .session(s2, authValue: ownerAuth))
            #expect(try await tpm.nvRead(index, authHandle: .owner, auth: .password(newer)) == [1, 2, 3, 4])
            try await tpm.flush(s2)
            // Clear (lockout authorization) removes owner NV indices and persistent objects and resets the owner auth.
            try await tpm.clear(.lockout)
            let nv = try await tpm.handles(from: TPMHandle(0x0100_0000))
            #expect(!nv.contains(index))
            #expect(!(try await tpm.handles(from: TPMHandle(0x8100_0000))).contains(persisted))
            try await tpm.nvDefineSpace(TPMSNVPublic(nvIndex: index, attributes: [.ownerWrite, .ownerRead], dataSize: 4))
            // A new owner seed: the same template gives a different key.
            let again = try await tpm.createPrimary(.owner, template: TPMTemplates.storageECCP256).object
            #expect(again.name != srk.name)
        }
    }

    @Test func shutdownPowerCycleStartupAndClock() async throws {
        guard let sw = try await Interop.swtpm() else { return }
        defer { sw.stop(); sw.removeState() }
        let transport = SwtpmTransport(data: .tcp(host: "127.0.0.1", port: sw.port), control: .tcp(host: "127.0.0.1", port: sw.port + 1))
        let tpm = TPMClient(transport: transport)
        try await tpm.selfTest(full: true)
        try await tpm.stirRandom(Array("more entropy".utf8))
        let before = try await tpm.readClock()
        // Already started: a second Startup is refused with TPM_RC_INITIALIZE.
        let e = await #expect(throws: TPMError.self) { try await tpm.startup(.clear) }
        #expect(e?.responseCode?.base == .initialize)
        // Orderly shutdown, power cycle through swtpm's control channel, start again: a reboot.
        try await tpm.shutdown(.clear)
        try await transport.powerOn()
        try await tpm.startup(.clear)
        let after = try await tpm.readClock()
        #expect(after.clockInfo.resetCount == before.clockInfo.resetCount + 1)
        #expect(after.clockInfo.clock >= before.clockInfo.clock)
        #expect(after.time < before.time + 10_000)
        // Locality through the control channel: PCR 16 resets from locality 0; 20–22 need locality 2+ on PC clients.
        try await transport.setLocality(0)
        try await tpm.pcrReset(16)
        await tpm.close()
    }
}

@Suite("swtpm: EK certificates")
struct SwtpmEKCertificateTests {
    @Test func ekCertificateMatchesTheDefaultEK() async throws {
        try await withSwtpm(manufacture: true) { tpm, _ in
            guard let der = try await tpm.readEKCertificate(.rsa2048) else {
                Issue.record("swtpm_setup provisioned no RSA EK certificate")
                return
            }
            let ek = try await tpm.createEK(.rsa2048)
            let modulus = ek.publicArea.rsaComponents!.modulus
            // The certificate's SubjectPublicKeyInfo carries the EK's modulus.
            #expect(der.count > 500)
            #expect(Data(der).range(of: Data(modulus)) != nil)
            // No ECC P-256 EK certificate at the low-range index: nil, not an error.
            #expect(try await tpm.readEKCertificate(.eccP256) == nil)
            let info = try await tpm.info()
            #expect(info.ekCertificates.contains { $0.nvIndex == "0x01C00002" && $0.issuer.contains("swtpm-localca") })
        }
    }
}
