import TPM2

// Signing and attestation (Part 3, 18 and 20).

extension EngineCore {
    /// Clock, reset/restart counts and firmware version as the signer may see them: keys
    /// outside the endorsement and platform hierarchies get obfuscated values (Part 3, 18.1).
    func attestHeader(signer: LoadedObject?) throws(TPMRC) -> (TPMSClockInfo, UInt64) {
        var info = clockInfo
        var fw = firmwareVersion
        if let signer, signer.hierarchy != .endorsement && signer.hierarchy != .platform {
            let proof = hierarchyRecord(signer.hierarchy).proof
            let ob = try rc { try TPMCrypto.kdfa(signer.publicArea.nameAlg == .null ? .sha256 : signer.publicArea.nameAlg, key: proof,
                                                 label: "OBFUSCATE", contextU: signer.name, contextV: [], bits: 128) }
            let v = ob.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            fw &+= v
            info.resetCount &+= ob[8..<12].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            info.restartCount &+= ob[12..<16].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        }
        return (info, fw)
    }

    /// Builds, encodes and signs a TPMS_ATTEST.
    func signAttest(_ attested: TPMUAttest, signHandle: TPMHandle, qualifyingData: TPM2BData,
                    scheme: TPMTSigScheme) throws(TPMRC) -> TPMAttestResponse {
        var r = TPMAttestResponse()
        let signer: LoadedObject? = signHandle == .null ? nil : try loadedObject(signHandle, index: UInt32(signHandleIndex - 1))
        if let signer {
            guard signer.attributes.contains(.signEncrypt), signer.sensitive != nil else { throw TPMRC.key.with(.handle(signHandleIndex)) }
        }
        let (clockInfo, fw) = try attestHeader(signer: signer)
        let attest = TPMSAttest(qualifiedSigner: TPM2BName(signer?.qualifiedName ?? []), extraData: qualifyingData,
                                clockInfo: clockInfo, firmwareVersion: fw, attested: attested)
        let bytes: [UInt8]
        do { bytes = try attest.tpmBytes() } catch { throw TPMRC.failure }
        r.attest = TPM2BAttest(bytes)
        if let signer {
            let hash = try signingHash(signer, requested: scheme)
            let digest = try rc { try TPMCrypto.hash(hash, bytes) }
            r.signature = try sign(signer, digest: digest, scheme: scheme)
        } else {
            r.signature = .null
        }
        return r
    }

    var signHandleIndex: Int { commandInProgress == .certify ? 2 : 1 }

    func quote(_ cmd: TPM2Quote) throws(TPMRC) -> TPMAttestResponse {
        let key = try loadedObject(cmd.signHandle)
        let hash = try signingHash(key, requested: cmd.inScheme)
        var values: [[UInt8]] = []
        var selections: [TPMSPCRSelection] = []
        for sel in cmd.pcrSelect.pcrSelections {
            guard Self.implementedHashes.contains(sel.hash) else { throw TPMRC.hash.with(.parameter(3)) }
            let bank = allocatedBanks.contains(sel.hash) ? pcrs[sel.hash] : nil
            let picked = sel.pcrs.filter { $0 < Limits.pcrCount && bank != nil }
            for p in picked { values.append(bank![p]) }
            selections.append(TPMSPCRSelection(hash: sel.hash, pcrs: picked, selectSize: max(3, sel.pcrSelect.count)))
        }
        let digest = try rc { try TPMCrypto.hash(hash, parts: values) }
        let info = TPMSQuoteInfo(pcrSelect: TPMLPCRSelection(selections), pcrDigest: TPM2BDigest(digest))
        return try signAttest(.quote(info), signHandle: cmd.signHandle, qualifyingData: cmd.qualifyingData, scheme: cmd.inScheme)
    }

    func certify(_ cmd: TPM2Certify) throws(TPMRC) -> TPMAttestResponse {
        let o = try loadedObject(cmd.objectHandle)
        var info = TPMSCertifyInfo()
        info.name = TPM2BName(o.name)
        info.qualifiedName = TPM2BName(o.qualifiedName)
        return try signAttest(.certify(info), signHandle: cmd.signHandle, qualifyingData: cmd.qualifyingData, scheme: cmd.inScheme)
    }

    func signCommand(_ cmd: TPM2Sign) throws(TPMRC) -> TPM2Sign.Response {
        let key = try loadedObject(cmd.keyHandle)
        guard key.attributes.contains(.signEncrypt) else { throw TPMRC.key.with(.handle(1)) }
        if key.attributes.contains(.restricted) {
            // A restricted key signs only digests the TPM computed itself (a hashcheck ticket).
            guard cmd.validation.tag == .hashcheck, cmd.validation.hierarchy != .null else { throw TPMRC.ticket.with(.parameter(3)) }
            let expected = try ticket(.hashcheck, hierarchy: cmd.validation.hierarchy, cmd.digest.bytes)
            guard constantTimeEqual(expected.digest.bytes, cmd.validation.digest.bytes) else { throw TPMRC.ticket.with(.parameter(3)) }
        }
        var r = TPM2Sign.Response()
        r.signature = try sign(key, digest: cmd.digest.bytes, scheme: cmd.inScheme)
        return r
    }

    func verifySignature(_ cmd: TPM2VerifySignature) throws(TPMRC) -> TPM2VerifySignature.Response {
        let key = try loadedObject(cmd.keyHandle)
        guard key.attributes.contains(.signEncrypt) else { throw TPMRC.attributes.with(.handle(1)) }
        switch cmd.signature {
        case .hmac(let mac):
            guard case .bits(let k)? = key.sensitive?.sensitive else { throw TPMRC.signature.with(.parameter(2)) }
            let expected = try rc { try TPMCrypto.hmac(mac.hashAlg, key: k.bytes, cmd.digest.bytes) }
            guard constantTimeEqual(expected, mac.digest) else { throw TPMRC.signature.with(.parameter(2)) }
        default:
            do { try TPMSignatureVerifier.verify(cmd.signature, digest: cmd.digest.bytes, key: key.publicArea) } catch {
                throw TPMRC.signature.with(.parameter(2))
            }
        }
        var r = TPM2VerifySignature.Response()
        r.validation = try ticket(.verified, hierarchy: key.hierarchy, cmd.digest.bytes, key.name)
        return r
    }
}
