import TPM2
import Testing
import TLaunchTestSupport

/// Encodes, decodes and re-encodes; then drip-feeds every prefix (each must fail with a typed
/// error, never succeed or trap) and appends a byte (must fail as trailing bytes).
func roundTrip<T: TPMStructure>(_ value: T, prefixesMayParse: Bool = false, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let bytes = try value.tpmBytes()
    let back = try T(tpmBytes: bytes)
    #expect(back == value, "\(T.tpmName) decodes to what was encoded", sourceLocation: sourceLocation)
    #expect(try back.tpmBytes() == bytes, "\(T.tpmName) re-encodes identically", sourceLocation: sourceLocation)
    if !prefixesMayParse {
        for n in 0..<bytes.count {
            do {
                _ = try T(tpmBytes: bytes.prefix(n))
                Issue.record("\(T.tpmName): a \(n)-byte prefix of \(bytes.count) decoded", sourceLocation: sourceLocation)
            } catch {
                #expect(error.offset <= n, sourceLocation: sourceLocation)
                #expect(error.structure == T.tpmName, sourceLocation: sourceLocation)
            }
        }
        do {
            _ = try T(tpmBytes: bytes + [0])
            Issue.record("\(T.tpmName): a trailing byte was accepted", sourceLocation: sourceLocation)
        } catch {
            #expect(error.code == .trailingBytes || error.code == .sizeMismatch, sourceLocation: sourceLocation)
        }
    }
}

enum Samples {
    static let digest = TPM2BDigest((0..<32).map { UInt8($0) })
    static let name = TPM2BName([0x00, 0x0B] + (0..<32).map { UInt8(255 - $0) })
    static let clock = TPMSClockInfo(clock: 0x0102_0304_0506, resetCount: 7, restartCount: 3, safe: true)
    static let pcrSel = TPMLPCRSelection([TPMSPCRSelection(hash: .sha1, pcrs: [0, 7]), TPMSPCRSelection(hash: .sha256, pcrs: 0..<24)])
    static let rsaPublic = TPMTemplates.ekRSA2048
    static let eccPublic = TPMTemplates.ekECCP256
    static let keyedHash = TPMTPublic(nameAlg: .sha256, objectAttributes: [.fixedTPM, .userWithAuth, .signEncrypt],
        parameters: .keyedHash(TPMSKeyedHashParms(scheme: TPMTKeyedHashScheme(scheme: .hmac, hashAlg: .sha256))),
                                      unique: .keyedHash(digest))
    static let xorKeyedHash = TPMTPublic(nameAlg: .sha1, objectAttributes: [.decrypt],
        parameters: .keyedHash(TPMSKeyedHashParms(scheme: TPMTKeyedHashScheme(scheme: .xor, hashAlg: .sha256, kdf: .kdf1_sp800_108))),
                                         unique: .keyedHash(TPM2BDigest()))
    static let symCipher = TPMTPublic(nameAlg: .sha256, objectAttributes: [.decrypt, .signEncrypt],
                                      parameters: .symCipher(TPMSSymCipherParms(sym: .aes256CFB)), unique: .sym(digest))
    static func attest(_ a: TPMUAttest) -> TPMSAttest {
        TPMSAttest(qualifiedSigner: name, extraData: TPM2BData([1, 2, 3]), clockInfo: clock, firmwareVersion: 0xAABB_CCDD_0011_2233,
                   attested: a)
    }
}

@Suite("wire: round trips and drip-feeding for every structure")
struct WireRoundTripTests {
    @Test func basics() throws {
        try roundTrip(Samples.digest)
        try roundTrip(TPM2BData([9, 9]))
        try roundTrip(TPMTHA(hashAlg: .sha384, digest: [UInt8](repeating: 3, count: 48)))
        try roundTrip(TPMTHA())
        try roundTrip(TPMSPCRSelection(hash: .sha256, pcrs: [0, 1, 23]))
        try roundTrip(Samples.pcrSel)
        try roundTrip(TPMLDigest([Samples.digest, TPM2BDigest([1])]))
        try roundTrip(TPMLDigestValues([TPMTHA(hashAlg: .sha1, digest: [UInt8](repeating: 1, count: 20)),
                                        TPMTHA(hashAlg: .sha256, digest: [UInt8](repeating: 2, count: 32))]))
        try roundTrip(Samples.clock)
        try roundTrip(TPMSTimeInfo(time: 99, clockInfo: Samples.clock))
        try roundTrip(TPMTTicket(tag: .creation, hierarchy: .owner, digest: Samples.digest))
        try roundTrip(TPMSAuthCommand(sessionHandle: TPMHandle(0x0200_0000), nonce: Samples.digest,
                                      sessionAttributes: [.continueSession, .decrypt], hmac: Samples.digest))
        try roundTrip(TPMSAuthResponse(nonce: Samples.digest, sessionAttributes: [.encrypt], hmac: TPM2BAuth()))
        try roundTrip(TPMSContext(sequence: 5, savedHandle: TPMHandle(0x8000_0001), hierarchy: .endorsement,
                                  contextBlob: TPM2BContextData([1, 2, 3])))
        try roundTrip(TPMSIDObject(integrityHMAC: Samples.digest, encIdentity: [5, 6, 7]), prefixesMayParse: true)
    }

    @Test func symmetricAndSchemes() throws {
        for s in [TPMTSymDef.null, .aes128CFB, .aes256CFB, .xor(.sha256),
                  TPMTSymDef(algorithm: .sm4, keyBits: 128, mode: .cfb)] { try roundTrip(s) }
        for s in [TPMTScheme.null, .rsassa(.sha256), .rsapss(.sha384), .ecdsa(.sha512), .hmac(.sha1),
            TPMTScheme(scheme: .oaep, hashAlg: .sha256), TPMTScheme(scheme: .rsaes), TPMTScheme(scheme: .ecdaa, hashAlg: .sha256, count: 4),
                  TPMTScheme(scheme: .kdf1_sp800_108, hashAlg: .sha256), TPMTScheme(scheme: .mgf1, hashAlg: .sha1)] { try roundTrip(s) }
        try roundTrip(TPMTKeyedHashScheme(scheme: .xor, hashAlg: .sha256, kdf: .kdf1_sp800_108))
    }

    @Test func publicSensitiveCreationNV() throws {
        for p in [Samples.rsaPublic, Samples.eccPublic, Samples.keyedHash, Samples.xorKeyedHash, Samples.symCipher, TPMTemplates.akRSA2048,
                  TPMTemplates.sealedObject(authPolicy: Array(Samples.digest.bytes))] {
            try roundTrip(p)
            try roundTrip(TPM2BPublic(p))
        }
        try roundTrip(TPMSECCPoint(x: [1, 2], y: [3]))
        try roundTrip(TPM2BECCPoint(TPMSECCPoint(x: [1], y: [2])))
        for s in [TPMUSensitiveComposite.rsa(TPM2BPrivateKeyRSA([1, 2, 3])), .ecc(TPM2BECCParameter([4])), .bits(TPM2BSensitiveData([5])),
                  .sym(TPM2BSymKey([6]))] {
            try roundTrip(TPMTSensitive(authValue: TPM2BAuth([1]), seedValue: Samples.digest, sensitive: s))
        }
        try roundTrip(TPM2BSensitive(TPMTSensitive(sensitive: .bits(TPM2BSensitiveData([1, 2])))))
        try roundTrip(TPMSSensitiveCreate(userAuth: [1, 2], data: [3, 4, 5]))
        try roundTrip(TPM2BSensitiveCreate(TPMSSensitiveCreate(userAuth: [1], data: [])))
        var cd = TPMSCreationData()
        cd.pcrSelect = Samples.pcrSel; cd.pcrDigest = Samples.digest; cd.locality = [.zero, .three]; cd.parentNameAlg = .sha256
        cd.parentName = Samples.name; cd.parentQualifiedName = Samples.name; cd.outsideInfo = TPM2BData([7])
        try roundTrip(cd)
        try roundTrip(TPM2BCreationData(cd))
        let nv = TPMSNVPublic(nvIndex: TPMHandle(0x0150_0000), attributes: TPMANV([.authRead, .authWrite, .written], type: .counter),
                              authPolicy: Samples.digest, dataSize: 8)
        #expect(nv.attributes.indexType == .counter)
        try roundTrip(nv)
        try roundTrip(TPM2BNVPublic(nv))
    }

    @Test func everyAttestationKind() throws {
        var certify = TPMSCertifyInfo(); certify.name = Samples.name; certify.qualifiedName = Samples.name
        var creation = TPMSCreationInfo(); creation.objectName = Samples.name; creation.creationHash = Samples.digest
        var cmd = TPMSCommandAuditInfo(); cmd.auditCounter = 3; cmd.digestAlg = .sha256; cmd.auditDigest = Samples.digest;
        cmd.commandDigest = Samples.digest
        var sess = TPMSSessionAuditInfo(); sess.exclusiveSession = true; sess.sessionDigest = Samples.digest
        var time = TPMSTimeAttestInfo(); time.time = TPMSTimeInfo(time: 5, clockInfo: Samples.clock); time.firmwareVersion = 1
        var nv = TPMSNVCertifyInfo(); nv.indexName = Samples.name; nv.offset = 4; nv.nvContents = TPM2BMaxNVBuffer([1, 2, 3])
        var nvd = TPMSNVDigestCertifyInfo(); nvd.indexName = Samples.name; nvd.nvDigest = Samples.digest
        let kinds: [TPMUAttest] = [.certify(certify), .creation(creation),
                                   .quote(TPMSQuoteInfo(pcrSelect: Samples.pcrSel, pcrDigest: Samples.digest)),
                                   .commandAudit(cmd), .sessionAudit(sess), .time(time), .nv(nv), .nvDigest(nvd)]
        #expect(Set(kinds.map(\.selector.rawValue)).count == 8)
        for k in kinds { try roundTrip(Samples.attest(k)) }
    }

    @Test func everySignatureKind() throws {
        let rsa = TPMSSignatureRSA(hash: .sha256, sig: [UInt8](repeating: 0xAB, count: 256))
        let ecc = TPMSSignatureECC(hash: .sha256, r: [1, 2], s: [3, 4])
        for s in [TPMTSignature.rsassa(rsa), .rsapss(rsa), .ecdsa(ecc), .ecdaa(ecc), .sm2(ecc), .ecschnorr(ecc),
                  .hmac(TPMTHA(hashAlg: .sha256, digest: Array(Samples.digest.bytes))), .null] {
            try roundTrip(s)
        }
    }

    @Test func everyCapability() throws {
        let caps: [TPMUCapabilities] = [
            .algorithms([TPMSAlgProperty(alg: .rsa, algProperties: [.asymmetric, .object]),
                         TPMSAlgProperty(alg: .sha256, algProperties: [.hash])]),
            .handles([TPMHandle(0x8100_0001), TPMHandle(0x8101_0001)]),
            .command([TPMACC(rawValue: 0x0200_0131)]),
            .ppCommands([.clear]), .auditCommands([.quote, .sign]),
            .assignedPCR(Samples.pcrSel),
            .tpmProperties([TPMSTaggedProperty(property: .pcrCount, value: 24)]),
            .pcrProperties([TPMSTaggedPCRSelect(tag: .resetL0, pcrSelect: [0, 0, 0x81])]),
            .eccCurves([.nistP256, .nistP384]),
            .authPolicies([TPMSTaggedPolicy(handle: .owner, policyHash: TPMTHA(hashAlg: .sha256, digest: Array(Samples.digest.bytes)))]),
            .actData([TPMSACTData(handle: TPMHandle(0x4000_0110), timeout: 10, attributes: [.signaled])]),
            .pubKeys([TPM2BPublic(Samples.eccPublic)]),
            .spdmSessionInfo([TPMSSPDMSessionInfo()]),
            .vendor([TPMHandle(1), TPMHandle(2)]),
        ]
        #expect(Set(caps.map(\.selector.rawValue)).count == caps.count)
        for c in caps { try roundTrip(TPMSCapabilityData(c)) }
    }

    @Test func everyCommandAndResponseRoundTrips() throws {
        // Parameters of every command survive encode → decode (the TPM side) → encode.
        func check<C: TPMCommand>(_ c: C) throws where C: Equatable {
            let params = try c.parameterBytes()
            let back = try C(handles: c.handleValues, parameters: params)
            #expect(back == c, "\(C.code)")
            #expect(back.handleValues.count == C.handleCount, "\(C.code) handle count")
        }
        var q = TPM2Quote(); q.signHandle = TPMHandle(0x8000_0001); q.qualifyingData = TPM2BData([1]); q.inScheme = .ecdsa(.sha256);
        q.pcrSelect = Samples.pcrSel
        try check(q)
        var cp = TPM2CreatePrimary(); cp.inPublic = TPM2BPublic(Samples.eccPublic);
        cp.inSensitive = TPM2BSensitiveCreate(TPMSSensitiveCreate(userAuth: [1], data: []))
        try check(cp)
        var sa = TPM2StartAuthSession(); sa.nonceCaller = Samples.digest; sa.symmetric = .aes128CFB; sa.sessionType = .policy
        try check(sa)
        var ps = TPM2PolicySecret(); ps.policySession = TPMHandle(0x0300_0000); ps.expiration = -30
        try check(ps)
        var nw = TPM2NVWrite(); nw.authHandle = .owner; nw.nvIndex = TPMHandle(0x0150_0000); nw.data = TPM2BMaxNVBuffer([1, 2]);
        nw.offset = 3
        try check(nw)
        var le = TPM2LoadExternal(); le.inPublic = TPM2BPublic(Samples.rsaPublic);
        le.inPrivate = TPMTSensitive(sensitive: .rsa(TPM2BPrivateKeyRSA([1])))
        try check(le)
        var le2 = TPM2LoadExternal(); le2.inPublic = TPM2BPublic(Samples.rsaPublic)
        try check(le2)
        var fc = TPM2FlushContext(); fc.flushHandle = TPMHandle(0x8000_0000)
        try check(fc)
        #expect(fc.handleValues.isEmpty)

        var r = TPM2CreatePrimary.Response()
        r.objectHandle = TPMHandle(0x8000_0000); r.outPublic = TPM2BPublic(Samples.eccPublic);
        r.creationData = TPM2BCreationData(TPMSCreationData())
        r.creationTicket = TPMTTicket(tag: .creation, hierarchy: .owner); r.name = Samples.name
        let back = try TPM2CreatePrimary.Response(handles: r.handleValues, parameters: try r.parameterBytes())
        #expect(back.objectHandle == r.objectHandle && back.outPublic == r.outPublic && back.name == r.name)
    }
}

extension TPM2Quote: Equatable {
    public static func == (a: Self,
                           b: Self) -> Bool { (try? a.parameterBytes()) == (try? b.parameterBytes()) && a.handleValues == b.handleValues }
}
extension TPM2CreatePrimary: Equatable {
    public static func == (a: Self,
                           b: Self) -> Bool { (try? a.parameterBytes()) == (try? b.parameterBytes()) && a.handleValues == b.handleValues }
}
extension TPM2StartAuthSession: Equatable {
    public static func == (a: Self,
                           b: Self) -> Bool { (try? a.parameterBytes()) == (try? b.parameterBytes()) && a.handleValues == b.handleValues }
}
extension TPM2PolicySecret: Equatable {
    public static func == (a: Self, b: Self) -> Bool {
        a.expiration == b.expiration && (try? a.parameterBytes()) == (try? b.parameterBytes()) && a.handleValues == b.handleValues
    }
}
extension TPM2NVWrite: Equatable {
    public static func == (a: Self, b: Self) -> Bool { a.offset == b.offset && a.data == b.data && a.handleValues == b.handleValues }
}
extension TPM2LoadExternal: Equatable {
    public static func == (a: Self,
                           b: Self) -> Bool { a.inPrivate == b.inPrivate && a.inPublic == b.inPublic && a.hierarchy == b.hierarchy }
}
extension TPM2FlushContext: Equatable {
    public static func == (a: Self, b: Self) -> Bool { a.flushHandle == b.flushHandle }
}
