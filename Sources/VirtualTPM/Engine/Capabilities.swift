import TPM2

/// TPM2_GetCapability (Part 3, 30.2): the answers a real TPM gives, paged by property and count.
extension EngineCore {
    /// "TLCH": the manufacturer id this vTPM reports (TPM_PT_MANUFACTURER).
    static let manufacturer: UInt32 = 0x544C_4348
    static let vendorStrings: [UInt32] = stringProperties("TrustedLaunch vTPM")
    static let specRevision: UInt32 = 164

    static func stringProperties(_ s: String) -> [UInt32] {
        var bytes = Array(s.utf8.prefix(16))
        while bytes.count < 16 { bytes.append(0) }
        return stride(from: 0, to: 16, by: 4).map { i in
            UInt32(bytes[i]) << 24 | UInt32(bytes[i + 1]) << 16 | UInt32(bytes[i + 2]) << 8 | UInt32(bytes[i + 3])
        }
    }

    static let algorithms: [TPMSAlgProperty] = [
        .init(alg: .rsa, algProperties: [.asymmetric, .object]),
        .init(alg: .sha1, algProperties: [.hash]),
        .init(alg: .hmac, algProperties: [.hash, .signing]),
        .init(alg: .aes, algProperties: [.symmetric]),
        .init(alg: .mgf1, algProperties: [.hash, .method]),
        .init(alg: .keyedHash, algProperties: [.hash, .object, .signing, .encrypting]),
        .init(alg: .xor, algProperties: [.symmetric, .hash]),
        .init(alg: .sha256, algProperties: [.hash]),
        .init(alg: .sha384, algProperties: [.hash]),
        .init(alg: .sha512, algProperties: [.hash]),
        .init(alg: .null, algProperties: []),
        .init(alg: .rsassa, algProperties: [.asymmetric, .signing]),
        .init(alg: .rsaes, algProperties: [.asymmetric, .encrypting]),
        .init(alg: .rsapss, algProperties: [.asymmetric, .signing]),
        .init(alg: .oaep, algProperties: [.asymmetric, .encrypting]),
        .init(alg: .ecdsa, algProperties: [.asymmetric, .signing, .method]),
        .init(alg: .ecdh, algProperties: [.asymmetric, .method]),
        .init(alg: .kdf1_sp800_56a, algProperties: [.hash, .method]),
        .init(alg: .kdf1_sp800_108, algProperties: [.hash, .method]),
        .init(alg: .ecc, algProperties: [.asymmetric, .object]),
        .init(alg: .symCipher, algProperties: [.object]),
        .init(alg: .cfb, algProperties: [.symmetric, .encrypting]),
    ]

    func tpmProperties() -> [TPMSTaggedProperty] {
        var p: [(TPMPT, UInt32)] = [
            (.familyIndicator, 0x322E_3000), (.level, 0), (.revision, Self.specRevision), (.dayOfYear, 1), (.year, 2026),
            (.manufacturer, Self.manufacturer),
            (.vendorString1, Self.vendorStrings[0]), (.vendorString2, Self.vendorStrings[1]),
            (.vendorString3, Self.vendorStrings[2]), (.vendorString4, Self.vendorStrings[3]),
            (.vendorTPMType, 1), (.firmwareVersion1, UInt32(firmwareVersion >> 32)),
            (.firmwareVersion2, UInt32(truncatingIfNeeded: firmwareVersion)),
            (.inputBuffer, UInt32(Limits.nvBufferMax)), (.hrTransientMin, UInt32(Limits.transientSlots)),
            (.hrPersistentMin, UInt32(Limits.persistentObjects)), (.hrLoadedMin, UInt32(Limits.loadedSessions)),
            (.activeSessionsMax, UInt32(Limits.activeSessions)), (.pcrCount, UInt32(Limits.pcrCount)), (.pcrSelectMin, 3),
            (.contextGapMax, 0xFFFF), (.nvCountersMax, 0), (.nvIndexMax, UInt32(Limits.maxNVIndexSize)), (.memory, 0x6),
            (.clockUpdate, 0x1000), (.contextHash, UInt32(TPMAlgID.sha256.rawValue)), (.contextSym, UInt32(TPMAlgID.aes.rawValue)),
            (.contextSymSize, 256), (.orderlyCount, 0xFF), (.maxCommandSize, UInt32(Limits.maxCommandSize)),
            (.maxResponseSize, UInt32(Limits.maxResponseSize)), (.maxDigest, 64), (.maxObjectContext, 3000),
            (.maxSessionContext, 400), (.psFamilyIndicator, 1), (.psLevel, 0), (.psRevision, 0x100), (.psDayOfYear, 0), (.psYear, 0),
            (.splitMax, 128), (.totalCommands, UInt32(CommandTable.entries.count)), (.libraryCommands, UInt32(CommandTable.entries.count)),
            (.vendorCommands, 0), (.nvBufferMax, UInt32(Limits.nvBufferMax)), (.modes, 0), (.maxCapBuffer, 1024),
        ]
        var permanent: TPMAPermanent = []
        if !state.owner.authValue.isEmpty { permanent.insert(.ownerAuthSet) }
        if !state.endorsement.authValue.isEmpty { permanent.insert(.endorsementAuthSet) }
        if !state.lockout.authValue.isEmpty { permanent.insert(.lockoutAuthSet) }
        if state.disableClear { permanent.insert(.disableClear) }
        if state.maxTries > 0 && state.failedTries >= state.maxTries { permanent.insert(.inLockout) }
        var startupClear: TPMAStartupClear = []
        if phEnable { startupClear.insert(.phEnable) }
        if shEnable { startupClear.insert(.shEnable) }
        if ehEnable { startupClear.insert(.ehEnable) }
        startupClear.insert(.phEnableNV)
        if state.orderly { startupClear.insert(.orderly) }
        let counters = state.nv.filter { $0.publicArea.attributes.indexType == .counter }.count
        let loadedSessions = sessions.values.filter(\.isLoaded).count
        p += [
            (.permanent, permanent.rawValue), (.startupClear, startupClear.rawValue),
            (.hrNVIndex, UInt32(state.nv.count)), (.hrLoaded, UInt32(loadedSessions)),
            (.hrLoadedAvail, UInt32(Limits.loadedSessions - loadedSessions)), (.hrActive, UInt32(sessions.count)),
            (.hrActiveAvail, UInt32(Limits.activeSessions - sessions.count)),
            (.hrTransientAvail, UInt32(Limits.transientSlots - objects.count)),
            (.hrPersistent, UInt32(state.persistentObjects.count)),
            (.hrPersistentAvail, UInt32(Limits.persistentObjects - state.persistentObjects.count)),
            (.nvCounters, UInt32(counters)), (.nvCountersAvail, UInt32(max(0, 64 - counters))), (.algorithmSet, 0), (.loadedCurves, 3),
            (.lockoutCounter, state.failedTries), (.maxAuthFail, state.maxTries), (.lockoutInterval, state.recoveryTime),
            (.lockoutRecovery, state.lockoutRecovery), (.nvWriteRecovery, 0), (.auditCounter0, 0), (.auditCounter1, 0),
        ]
        return p.map { TPMSTaggedProperty(property: $0.0, value: $0.1) }
    }

    func allHandles() -> [TPMHandle] {
        var hs: [TPMHandle] = Array(objects.keys)
        hs += state.persistentObjects.map(\.handle)
        hs += state.nv.map(\.publicArea.nvIndex)
        hs += sessions.keys
        hs += (0..<Limits.pcrCount).map { TPMHandle.pcr($0) }
        hs += [.owner, .null, .password, .lockout, .endorsement, .platform, .platformNV]
        return hs.sorted { $0.rawValue < $1.rawValue }
    }

    func getCapability(_ cmd: TPM2GetCapability) throws(TPMRC) -> TPM2GetCapability.Response {
        var r = TPM2GetCapability.Response()
        let start = cmd.property
        let count = Int(min(cmd.propertyCount, 254))
        func page<T>(_ items: [T], key: (T) -> UInt32, limit: Int) -> ([T], Bool) {
            let from = items.filter { key($0) >= start }
            let n = min(count, limit)
            return (Array(from.prefix(n)), from.count > n)
        }
        switch cmd.capability {
        case .algs:
            let (l, more) = page(Self.algorithms, key: { UInt32($0.alg.rawValue) }, limit: 127)
            r.capabilityData = TPMSCapabilityData(.algorithms(l)); r.moreData = more
        case .handles:
            let type = start >> 24
            let (l, more) = page(allHandles().filter { $0.rawValue >> 24 == type }, key: { $0.rawValue }, limit: 254)
            r.capabilityData = TPMSCapabilityData(.handles(l)); r.moreData = more
        case .commands:
            let all = CommandTable.entries.values.map(\.attributes).sorted { $0.commandIndex < $1.commandIndex }
            let (l, more) = page(all, key: { UInt32($0.commandIndex) }, limit: 254)
            r.capabilityData = TPMSCapabilityData(.command(l)); r.moreData = more
        case .ppCommands:
            r.capabilityData = TPMSCapabilityData(.ppCommands([]))
        case .auditCommands:
            r.capabilityData = TPMSCapabilityData(.auditCommands([]))
        case .pcrs:
            let sels = Self.implementedHashes.map { alg in
                TPMSPCRSelection(hash: alg, pcrs: allocatedBanks.contains(alg) ? Array(0..<Limits.pcrCount) : [])
            }
            r.capabilityData = TPMSCapabilityData(.assignedPCR(TPMLPCRSelection(sels)))
        case .tpmProperties:
            let (l, more) = page(tpmProperties(), key: { $0.property.rawValue }, limit: 127)
            r.capabilityData = TPMSCapabilityData(.tpmProperties(l)); r.moreData = more
        case .pcrProperties:
            func bitmap(_ pcrs: [Int]) -> [UInt8] { TPMSPCRSelection(hash: .null, pcrs: pcrs).pcrSelect }
            let props: [TPMSTaggedPCRSelect] = [
                .init(tag: .save, pcrSelect: bitmap(Array(0...15))),
                .init(tag: .extendL0, pcrSelect: bitmap(Array(0...16) + [23])),
                .init(tag: .resetL0, pcrSelect: bitmap([16, 23])),
                .init(tag: .extendL1, pcrSelect: bitmap(Array(0...16) + [20, 23])),
                .init(tag: .resetL1, pcrSelect: bitmap([16, 23])),
                .init(tag: .extendL2, pcrSelect: bitmap(Array(0...23))),
                .init(tag: .resetL2, pcrSelect: bitmap([16, 20, 21, 22, 23])),
                .init(tag: .extendL3, pcrSelect: bitmap(Array(0...20) + [23])),
                .init(tag: .resetL3, pcrSelect: bitmap([16, 23])),
                .init(tag: .extendL4, pcrSelect: bitmap(Array(0...19) + [23])),
                .init(tag: .resetL4, pcrSelect: bitmap([16, 17, 18, 19, 23])),
                .init(tag: .drtmReset, pcrSelect: bitmap([17, 18, 19, 20, 21, 22])),
            ]
            let (l, more) = page(props, key: { $0.tag.rawValue }, limit: 127)
            r.capabilityData = TPMSCapabilityData(.pcrProperties(l)); r.moreData = more
        case .eccCurves:
            let (l, more) = page([TPMECCCurve.nistP256, .nistP384, .nistP521], key: { UInt32($0.rawValue) }, limit: 508)
            r.capabilityData = TPMSCapabilityData(.eccCurves(l)); r.moreData = more
        case .authPolicies:
            var l: [TPMSTaggedPolicy] = []
            for (h, rec) in [(TPMHandle.owner, state.owner), (.endorsement, state.endorsement), (.lockout, state.lockout),
                             (.platform, state.platform)]
            where h.rawValue >= start && !rec.authPolicy.isEmpty {
                l.append(TPMSTaggedPolicy(handle: h, policyHash: TPMTHA(hashAlg: rec.policyAlg, digest: rec.authPolicy.bytes)))
            }
            r.capabilityData = TPMSCapabilityData(.authPolicies(l))
        case .act:
            r.capabilityData = TPMSCapabilityData(.actData([]))
        default:
            throw TPMRC.value.with(.parameter(1))
        }
        return r
    }
}
