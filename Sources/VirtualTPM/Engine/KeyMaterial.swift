import TPM2

// Creating, deriving, protecting and using object key material (Part 1, 23–28).

extension EngineCore {
    func hierarchyRecord(_ h: TPMHandle) -> HierarchyRecord {
        switch h {
        case .owner: state.owner
        case .endorsement: state.endorsement
        case .platform: state.platform
        default: nullHierarchy
        }
    }

    /// Checks a template's consistency (Part 3, 12.1 and 24.1 error conditions), with the
    /// parameter number of inPublic for the errors.
    func validateTemplate(_ t: TPMTPublic, sensitive: TPMSSensitiveCreate, parent: LoadedObject?, param: Int) throws(TPMRC) {
        let p = TPMRC.Subject.parameter(param)
        let a = t.objectAttributes
        guard Self.implementedHashes.contains(t.nameAlg) else { throw TPMRC.hash.with(p) }
        guard t.authPolicy.isEmpty || t.authPolicy.count == t.nameAlg.digestSize else { throw TPMRC.size.with(p) }
        if a.rawValue & 0xFFF0_F309 != 0 { throw TPMRC.reservedBits.with(p) }
        if a.contains(.fixedTPM) != a.contains(.fixedParent) && a.contains(.fixedTPM) { throw TPMRC.attributes.with(p) }
        if let parent {
            if a.contains(.fixedTPM) && !parent.attributes.contains(.fixedTPM) { throw TPMRC.attributes.with(p) }
        }
        if a.contains(.restricted) && a.contains(.decrypt) && a.contains(.signEncrypt) { throw TPMRC.attributes.with(p) }
        if a.contains(.sensitiveDataOrigin) && !sensitive.data.isEmpty && t.type != .keyedHash { throw TPMRC.attributes.with(p) }
        switch t.parameters {
        case .rsa(let r):
            guard [1024, 2048, 3072, 4096].contains(Int(r.keyBits)) else { throw TPMRC.keySize.with(p) }
            guard r.exponent == 0 || r.exponent == 65537 else { throw TPMRC.value.with(p) }
            try validateAsymmetric(a, symmetric: r.symmetric, scheme: r.scheme, p: p)
        case .ecc(let e):
            guard [TPMECCCurve.nistP256, .nistP384, .nistP521].contains(e.curveID) else { throw TPMRC.curve.with(p) }
            guard e.kdf.scheme == .null else { throw TPMRC.kdf.with(p) }
            try validateAsymmetric(a, symmetric: e.symmetric, scheme: e.scheme, p: p)
        case .keyedHash(let k):
            switch k.scheme.scheme {
            case .null:
                if a.contains(.signEncrypt) || a.contains(.decrypt) {
                    // A keyed-hash key needs a scheme unless it is a storage parent of derivations.
                    if a.contains(.restricted) { throw TPMRC.scheme.with(p) }
                }
            case .hmac:
                guard a.contains(.signEncrypt), !a.contains(.decrypt), Self.implementedHashes.contains(k.scheme.hashAlg) else {
                    throw TPMRC.scheme.with(p)
                }
            default:
                throw TPMRC.scheme.with(p)
            }
            if !a.contains(.signEncrypt) && !a.contains(.decrypt) {
                // Sealed data: the caller supplies it.
                if a.contains(.sensitiveDataOrigin) { throw TPMRC.attributes.with(p) }
            }
        case .symCipher(let s):
            guard s.sym.algorithm == .aes, [128, 256].contains(s.sym.keyBits), s.sym.mode == .cfb || s.sym.mode == .null else {
                throw TPMRC.symmetric.with(p)
            }
            guard a.contains(.decrypt) || a.contains(.signEncrypt) else { throw TPMRC.attributes.with(p) }
        }
    }

    private func validateAsymmetric(_ a: TPMAObject, symmetric: TPMTSymDef, scheme: TPMTScheme, p: TPMRC.Subject) throws(TPMRC) {
        if a.contains(.restricted) && a.contains(.decrypt) {
            guard symmetric.algorithm == .aes, symmetric.mode == .cfb, [128, 256].contains(symmetric.keyBits) else {
                throw TPMRC.symmetric.with(p)
            }
            guard scheme.scheme == .null else { throw TPMRC.scheme.with(p) }
        } else {
            guard symmetric.algorithm == .null else { throw TPMRC.symmetric.with(p) }
        }
        if a.contains(.restricted) && a.contains(.signEncrypt) {
            guard [TPMAlgID.rsassa, .rsapss, .ecdsa].contains(scheme.scheme) else { throw TPMRC.scheme.with(p) }
        }
        if scheme.scheme != .null {
            let signing = [TPMAlgID.rsassa, .rsapss, .ecdsa].contains(scheme.scheme)
            let decrypting = [TPMAlgID.oaep, .rsaes, .ecdh].contains(scheme.scheme)
            guard signing || decrypting else { throw TPMRC.scheme.with(p) }
            if signing && !a.contains(.signEncrypt) { throw TPMRC.scheme.with(p) }
            if decrypting && !a.contains(.decrypt) { throw TPMRC.scheme.with(p) }
            if scheme.scheme != .rsaes, !Self.implementedHashes.contains(scheme.hashAlg) { throw TPMRC.hash.with(p) }
        }
    }

    /// Makes the key material of a new object. For a primary (`primarySeed` set) everything
    /// is derived from the hierarchy seed and the template, so the same template gives the
    /// same key until the seed changes.
    mutating func makeObject(template: TPMTPublic, sensitive inSensitive: TPMSSensitiveCreate,
                             primarySeed: [UInt8]?) throws(TPMRC) -> (TPMTPublic, TPMTSensitive, RSAKeyPair?, ECCPrivateKey?) {
        var pub = template
        let digestSize = pub.nameAlg.digestSize!
        let a = pub.objectAttributes
        let templateBytes = try rc { try template.tpmBytes() }
        let context = try rc { try TPMCrypto.hash(.sha256, templateBytes, inSensitive.data.bytes) }
        var stream: KDFStream? = primarySeed.map { KDFStream(seed: $0, label: "TrustedLaunch primary", context: context) }
        func randomOrDerived(_ n: Int) throws(TPMRC) -> [UInt8] {
            if stream != nil { return try stream!.next(n) }
            return TPMCrypto.random(n)
        }
        let isStorage = a.contains(.restricted) && a.contains(.decrypt)
        var seedValue: [UInt8] = []
        var composite: TPMUSensitiveComposite
        var rsa: RSAKeyPair?
        var ecc: ECCPrivateKey?
        switch pub.parameters {
        case .rsa(let r):
            let e: UInt32 = r.exponent == 0 ? 65537 : r.exponent
            if let seed = primarySeed {
                let cacheKey = try rc { try TPMCrypto.hash(.sha256, seed, context) }
                if let hit = state.primaryCache.first(where: { $0.key == cacheKey }) {
                    rsa = try RSAKeyPair(modulus: hit.modulus, exponent: e, prime: hit.prime)
                } else {
                    var s = KDFStream(seed: seed, label: "TrustedLaunch RSA primes", context: context)
                    let k = try RSAKeyPair.derive(bits: Int(r.keyBits), exponent: e, stream: &s)
                    state.primaryCache.append(PrimaryCacheRecord(key: cacheKey, modulus: k.modulus, prime: k.prime))
                    if state.primaryCache.count > 32 { state.primaryCache.removeFirst() }
                    dirty = true
                    rsa = k
                }
            } else {
                rsa = try RSAKeyPair.generate(bits: Int(r.keyBits), exponent: e)
            }
            pub.unique = .rsa(TPM2BPublicKeyRSA(rsa!.modulus))
            composite = .rsa(TPM2BPrivateKeyRSA(rsa!.prime))
        case .ecc(let p):
            if stream != nil {
                ecc = try ECCPrivateKey.derive(curve: p.curveID, stream: &stream!)
            } else {
                ecc = try ECCPrivateKey.generate(curve: p.curveID)
            }
            pub.unique = .ecc(ecc!.publicPoint)
            composite = .ecc(TPM2BECCParameter(ecc!.scalar))
        case .keyedHash:
            seedValue = try randomOrDerived(digestSize)
            let data: [UInt8]
            if a.contains(.sensitiveDataOrigin) {
                data = try randomOrDerived(digestSize)
            } else {
                data = inSensitive.data.bytes
            }
            composite = .bits(TPM2BSensitiveData(data))
            pub.unique = .keyedHash(TPM2BDigest(try rc { try TPMCrypto.hash(pub.nameAlg, seedValue, data) }))
        case .symCipher(let s):
            seedValue = try randomOrDerived(digestSize)
            let key =
                a.contains(.sensitiveDataOrigin) || inSensitive.data.isEmpty
                ? try randomOrDerived(Int(s.sym.keyBits) / 8) : inSensitive.data.bytes
            guard key.count == Int(s.sym.keyBits) / 8 else { throw TPMRC.keySize.with(.parameter(1)) }
            composite = .sym(TPM2BSymKey(key))
            pub.unique = .sym(TPM2BDigest(try rc { try TPMCrypto.hash(pub.nameAlg, seedValue, key) }))
        }
        if isStorage && seedValue.isEmpty {
            seedValue = try randomOrDerived(digestSize)
        }
        let sens = TPMTSensitive(authValue: inSensitive.userAuth, seedValue: TPM2BDigest(seedValue), sensitive: composite)
        return (pub, sens, rsa, ecc)
    }

    /// Rebuilds the key objects from a sensitive area and checks that it belongs to the
    /// public area (TPM_RC_BINDING otherwise, Part 3, 12.2).
    func keyMaterial(public pub: TPMTPublic, sensitive: TPMTSensitive) throws(TPMRC) -> (RSAKeyPair?, ECCPrivateKey?) {
        guard sensitive.sensitiveType == pub.type else { throw TPMRC.type }
        switch (pub.parameters, sensitive.sensitive, pub.unique) {
        case (.rsa(let r), .rsa(let prime), .rsa(let n)):
            let k = try RSAKeyPair(modulus: n.bytes, exponent: r.exponent == 0 ? 65537 : r.exponent, prime: prime.bytes)
            return (k, nil)
        case (.ecc(let p), .ecc(let d), .ecc(let point)):
            let k = try ECCPrivateKey(curve: p.curveID, scalar: d.bytes)
            let q = k.publicPoint
            guard trimLeading(q.x.bytes) == trimLeading(point.x.bytes), trimLeading(q.y.bytes) == trimLeading(point.y.bytes) else {
                throw TPMRC.binding
            }
            return (nil, k)
        case (.keyedHash, .bits(let data), .keyedHash(let u)):
            guard try rc({ try TPMCrypto.hash(pub.nameAlg, sensitive.seedValue.bytes, data.bytes) }) == u.bytes else { throw TPMRC.binding }
            return (nil, nil)
        case (.symCipher, .sym(let key), .sym(let u)):
            guard try rc({ try TPMCrypto.hash(pub.nameAlg, sensitive.seedValue.bytes, key.bytes) }) == u.bytes else { throw TPMRC.binding }
            return (nil, nil)
        default:
            throw TPMRC.binding
        }
    }

    /// Protects a child's sensitive area under a storage parent (Part 1, 23.3):
    /// TPM2B_DIGEST(outerHMAC) ‖ AES-CFB(KDFa(seed, "STORAGE", name), TPM2B_SENSITIVE).
    func wrap(_ sensitive: TPMTSensitive, name: [UInt8], parent: LoadedObject) throws(TPMRC) -> TPM2BPrivate {
        let (keyBits, nameAlg) = try storageParameters(parent)
        let plain = try rc { try TPM2BSensitive(sensitive).tpmBytes() }
        let symKey = try rc { try TPMCrypto.kdfa(nameAlg, key: parent.seedValue, label: "STORAGE", contextU: name, contextV: [],
                                                 bits: keyBits) }
        let enc = try rc { try TPMCrypto.aesCFB(encrypt: true, key: symKey, iv: [UInt8](repeating: 0, count: 16), plain) }
        let hmacKey = try rc { try TPMCrypto.kdfa(nameAlg, key: parent.seedValue, label: "INTEGRITY", contextU: [], contextV: [],
                                                  bits: nameAlg.digestSize! * 8) }
        let hmac = try rc { try TPMCrypto.hmac(nameAlg, key: hmacKey, enc, name) }
        return TPM2BPrivate([UInt8(hmac.count >> 8), UInt8(hmac.count & 0xFF)] + hmac + enc)
    }

    /// The inverse of ``wrap(_:name:parent:)``: TPM_RC_INTEGRITY when the blob was not made
    /// for this parent and name.
    func unwrap(_ blob: TPM2BPrivate, name: [UInt8], parent: LoadedObject, param: Int) throws(TPMRC) -> TPMTSensitive {
        let (keyBits, nameAlg) = try storageParameters(parent)
        let b = blob.bytes
        guard b.count >= 2 else { throw TPMRC.size.with(.parameter(param)) }
        let hLen = Int(b[0]) << 8 | Int(b[1])
        guard hLen == nameAlg.digestSize, b.count >= 2 + hLen else { throw TPMRC.size.with(.parameter(param)) }
        let hmac = Array(b[2..<(2 + hLen)])
        let enc = Array(b[(2 + hLen)...])
        let hmacKey = try rc { try TPMCrypto.kdfa(nameAlg, key: parent.seedValue, label: "INTEGRITY", contextU: [], contextV: [],
                                                  bits: hLen * 8) }
        guard constantTimeEqual(try rc({ try TPMCrypto.hmac(nameAlg, key: hmacKey, enc, name) }), hmac) else {
            throw TPMRC.integrity.with(.parameter(param))
        }
        let symKey = try rc { try TPMCrypto.kdfa(nameAlg, key: parent.seedValue, label: "STORAGE", contextU: name, contextV: [],
                                                 bits: keyBits) }
        let plain = try rc { try TPMCrypto.aesCFB(encrypt: false, key: symKey, iv: [UInt8](repeating: 0, count: 16), enc) }
        do {
            return try TPM2BSensitive(tpmBytes: plain).content
        } catch {
            throw TPMRC.sensitive
        }
    }

    func storageParameters(_ parent: LoadedObject) throws(TPMRC) -> (keyBits: Int, nameAlg: TPMAlgID) {
        guard parent.isStorageParent else { throw TPMRC.type.with(.handle(1)) }
        let sym: TPMTSymDef
        switch parent.publicArea.parameters {
        case .rsa(let r): sym = r.symmetric
        case .ecc(let e): sym = e.symmetric
        case .symCipher(let s): sym = s.sym
        case .keyedHash: throw TPMRC.type.with(.handle(1))
        }
        guard sym.algorithm == .aes else { throw TPMRC.symmetric }
        return (Int(sym.keyBits), parent.publicArea.nameAlg)
    }

    /// Signs a digest with an object and the effective scheme.
    func sign(_ o: LoadedObject, digest: [UInt8], scheme requested: TPMTScheme) throws(TPMRC) -> TPMTSignature {
        guard o.attributes.contains(.signEncrypt), o.sensitive != nil else { throw TPMRC.key.with(.handle(1)) }
        let keyScheme: TPMTScheme
        switch o.publicArea.parameters {
        case .rsa(let r): keyScheme = r.scheme
        case .ecc(let e): keyScheme = e.scheme
        case .keyedHash(let k): keyScheme = TPMTScheme(scheme: k.scheme.scheme, hashAlg: k.scheme.hashAlg)
        case .symCipher: throw TPMRC.key.with(.handle(1))
        }
        let scheme: TPMTScheme
        if keyScheme.scheme == .null {
            guard requested.scheme != .null else { throw TPMRC.scheme }
            scheme = requested
        } else {
            guard requested.scheme == .null || requested == keyScheme else { throw TPMRC.scheme }
            scheme = keyScheme
        }
        guard digest.count == scheme.hashAlg.digestSize else { throw TPMRC.size }
        switch (scheme.scheme, o.rsa, o.ecc, o.sensitive?.sensitive) {
        case (.rsassa, let k?, _, _):
            return .rsassa(TPMSSignatureRSA(hash: scheme.hashAlg, sig: try k.signPKCS1(digest: digest, hash: scheme.hashAlg)))
        case (.rsapss, let k?, _, _):
            return .rsapss(TPMSSignatureRSA(hash: scheme.hashAlg, sig: try k.signPSS(digest: digest, hash: scheme.hashAlg)))
        case (.ecdsa, _, let k?, _):
            let (r, s) = try k.signECDSA(digest: digest)
            return .ecdsa(TPMSSignatureECC(hash: scheme.hashAlg, r: r, s: s))
        case (.hmac, _, _, .bits(let key)?):
            let mac = try rc { try TPMCrypto.hmac(scheme.hashAlg, key: key.bytes, digest) }
            return .hmac(TPMTHA(hashAlg: scheme.hashAlg, digest: mac))
        default:
            throw TPMRC.scheme
        }
    }

    /// The signature scheme's hash for an object and requested scheme (for computing digests to sign).
    func signingHash(_ o: LoadedObject, requested: TPMTScheme) throws(TPMRC) -> TPMAlgID {
        let keyScheme: TPMTScheme
        switch o.publicArea.parameters {
        case .rsa(let r): keyScheme = r.scheme
        case .ecc(let e): keyScheme = e.scheme
        case .keyedHash(let k): keyScheme = TPMTScheme(scheme: k.scheme.scheme, hashAlg: k.scheme.hashAlg)
        case .symCipher: throw TPMRC.key
        }
        let scheme = keyScheme.scheme == .null ? requested : keyScheme
        guard scheme.scheme != .null, Self.implementedHashes.contains(scheme.hashAlg) else { throw TPMRC.scheme }
        if keyScheme.scheme != .null && requested.scheme != .null && requested != keyScheme { throw TPMRC.scheme }
        return scheme.hashAlg
    }

    /// Recovers a seed encrypted to an object (Part 1, B.10.3 RSA-OAEP; C.6.1 ECDH + KDFe).
    func decryptSecret(_ o: LoadedObject, secret: [UInt8], label: String, param: Int) throws(TPMRC) -> [UInt8] {
        guard o.attributes.contains(.decrypt), o.sensitive != nil else { throw TPMRC.attributes.with(.handle(1)) }
        let nameAlg = o.publicArea.nameAlg
        if let k = o.rsa {
            do {
                return try k.decryptOAEP(secret, hash: nameAlg, label: Array(label.utf8) + [0])
            } catch {
                throw TPMRC.value.with(.parameter(param))
            }
        }
        if let k = o.ecc, case .ecc(let pub) = o.publicArea.unique {
            let point: TPMSECCPoint
            do { point = try TPMSECCPoint(tpmBytes: secret) } catch { throw TPMRC.size.with(.parameter(param)) }
            let z = try k.sharedX(with: point)
            return try rc { try TPMCrypto.kdfe(nameAlg, z: z, label: label, partyUInfo: point.x.bytes, partyVInfo: pub.x.bytes,
                                               bits: nameAlg.digestSize! * 8) }
        }
        throw TPMRC.key.with(.handle(1))
    }

    /// A ticket digest: HMAC(proof of the hierarchy, tag ‖ parts) (Part 2, 10.7).
    func ticket(_ tag: TPMST, hierarchy: TPMHandle, _ parts: [UInt8]...) throws(TPMRC) -> TPMTTicket {
        guard hierarchy != .null else { return TPMTTicket(tag: tag, hierarchy: .null) }
        let proof = hierarchyRecord(hierarchy).proof
        let d = try rc { try TPMCrypto.hmac(.sha256, key: proof, parts: [[UInt8(tag.rawValue >> 8), UInt8(tag.rawValue & 0xFF)]] + parts) }
        return TPMTTicket(tag: tag, hierarchy: hierarchy, digest: TPM2BDigest(d))
    }
}

func trimLeading(_ b: [UInt8]) -> [UInt8] { Array(b.drop { $0 == 0 }) }
