import TPM2

// NV storage (Part 3, 31; Part 1, 37).

extension EngineCore {
    func nvIndex(_ h: TPMHandle) throws(TPMRC) -> Int {
        guard let i = state.nv.firstIndex(where: { $0.publicArea.nvIndex == h }) else { throw TPMRC.handle }
        return i
    }

    /// Which of owner, platform or the index itself may authorize this access (Part 3, 31.x
    /// "authHandle" rules), as TPM_RC_NV_AUTHORIZATION.
    func checkNVAccess(authHandle: TPMHandle, index: NVIndexRecord, write: Bool) throws(TPMRC) {
        let a = index.publicArea.attributes
        switch authHandle {
        case .owner:
            guard a.contains(write ? .ownerWrite : .ownerRead) else { throw TPMRC.nvAuthorization }
        case .platform:
            guard a.contains(write ? .ppWrite : .ppRead) else { throw TPMRC.nvAuthorization }
        default:
            guard authHandle == index.publicArea.nvIndex else { throw TPMRC.nvAuthorization }
        }
    }

    mutating func nvDefineSpace(_ cmd: TPM2NVDefineSpace) throws(TPMRC) -> TPMEmptyResponse {
        let pub = cmd.publicInfo.content
        let a = pub.attributes
        let p2 = TPMRC.Subject.parameter(2)
        guard (0x0100_0000...0x01FF_FFFF).contains(pub.nvIndex.rawValue) else { throw TPMRC.value.with(p2) }
        guard Self.implementedHashes.contains(pub.nameAlg), let digestSize = pub.nameAlg.digestSize else { throw TPMRC.hash.with(p2) }
        guard cmd.auth.count <= digestSize else { throw TPMRC.size.with(.parameter(1)) }
        guard pub.authPolicy.isEmpty || pub.authPolicy.count == digestSize else { throw TPMRC.size.with(p2) }
        guard !a.isDisjoint(with: [.ppWrite, .ownerWrite, .authWrite, .policyWrite]),
              !a.isDisjoint(with: [.ppRead, .ownerRead, .authRead, .policyRead]) else { throw TPMRC.attributes.with(p2) }
        guard a.isDisjoint(with: [.written, .writeLocked, .readLocked]) else { throw TPMRC.attributes.with(p2) }
        guard a.contains(.platformCreate) == (cmd.authHandle == .platform) else { throw TPMRC.attributes.with(p2) }
        if a.contains(.policyDelete) && !a.contains(.platformCreate) { throw TPMRC.attributes.with(p2) }
        if a.contains(.policyDelete) && pub.authPolicy.isEmpty { throw TPMRC.attributes.with(p2) }
        switch a.indexType {
        case .ordinary:
            guard pub.dataSize <= UInt16(Limits.maxNVIndexSize) else { throw TPMRC.nvSize }
        case .counter, .bits:
            guard pub.dataSize == 8 else { throw TPMRC.size.with(p2) }
            if a.indexType == .counter && a.contains(.clearSTClear) { throw TPMRC.attributes.with(p2) }
        case .extend:
            guard Int(pub.dataSize) == digestSize else { throw TPMRC.size.with(p2) }
        default:
            throw TPMRC.attributes.with(p2)
        }
        guard !state.nv.contains(where: { $0.publicArea.nvIndex == pub.nvIndex }) else { throw TPMRC.nvDefined }
        guard state.nv.count < 256 else { throw TPMRC.nvSpace }
        state.nv.append(NVIndexRecord(publicArea: pub, authValue: cmd.auth.bytes, data: [UInt8](repeating: 0, count: Int(pub.dataSize))))
        dirty = true
        return TPMEmptyResponse()
    }

    mutating func nvUndefineSpace(_ cmd: TPM2NVUndefineSpace) throws(TPMRC) -> TPMEmptyResponse {
        let i = try nvIndex(cmd.nvIndex)
        let a = state.nv[i].publicArea.attributes
        guard a.contains(.platformCreate) == (cmd.authHandle == .platform) else { throw TPMRC.nvAuthorization }
        guard !a.contains(.policyDelete) else { throw TPMRC.attributes.with(.handle(2)) }
        state.nv.remove(at: i)
        dirty = true
        return TPMEmptyResponse()
    }

    func nvReadPublic(_ cmd: TPM2NVReadPublic) throws(TPMRC) -> TPM2NVReadPublic.Response {
        let rec = state.nv[try nvIndex(cmd.nvIndex)]
        var r = TPM2NVReadPublic.Response()
        r.nvPublic = TPM2BNVPublic(rec.publicArea)
        r.nvName = TPM2BName(try rc { try rec.publicArea.name() })
        return r
    }

    mutating func nvWrite(_ cmd: TPM2NVWrite) throws(TPMRC) -> TPMEmptyResponse {
        let i = try nvIndex(cmd.nvIndex)
        var rec = state.nv[i]
        try checkNVAccess(authHandle: cmd.authHandle, index: rec, write: true)
        let a = rec.publicArea.attributes
        guard a.indexType == .ordinary else { throw TPMRC.attributes.with(.handle(2)) }
        guard !a.contains(.writeLocked) else { throw TPMRC.nvLocked }
        let offset = Int(cmd.offset), size = cmd.data.count
        guard size <= Limits.nvBufferMax else { throw TPMRC.value.with(.parameter(1)) }
        guard offset + size <= rec.data.count else { throw TPMRC.nvRange }
        if a.contains(.writeAll) && (offset != 0 || size != rec.data.count) { throw TPMRC.nvRange }
        rec.data.replaceSubrange(offset..<(offset + size), with: cmd.data.bytes)
        rec.publicArea.attributes.insert(.written)
        state.nv[i] = rec
        markNVChanged(rec.publicArea.nvIndex)
        return TPMEmptyResponse()
    }

    func nvRead(_ cmd: TPM2NVRead) throws(TPMRC) -> TPM2NVRead.Response {
        let rec = state.nv[try nvIndex(cmd.nvIndex)]
        try checkNVAccess(authHandle: cmd.authHandle, index: rec, write: false)
        let a = rec.publicArea.attributes
        guard !a.contains(.readLocked) else { throw TPMRC.nvLocked }
        guard a.contains(.written) else { throw TPMRC.nvUninitialized }
        let offset = Int(cmd.offset), size = Int(cmd.size)
        guard size <= Limits.nvBufferMax else { throw TPMRC.value.with(.parameter(1)) }
        guard offset + size <= rec.data.count else { throw TPMRC.nvRange }
        var r = TPM2NVRead.Response()
        r.data = TPM2BMaxNVBuffer(rec.data[offset..<(offset + size)])
        return r
    }

    mutating func nvIncrement(_ cmd: TPM2NVIncrement) throws(TPMRC) -> TPMEmptyResponse {
        let i = try nvIndex(cmd.nvIndex)
        var rec = state.nv[i]
        try checkNVAccess(authHandle: cmd.authHandle, index: rec, write: true)
        guard rec.publicArea.attributes.indexType == .counter else { throw TPMRC.attributes.with(.handle(2)) }
        guard !rec.publicArea.attributes.contains(.writeLocked) else { throw TPMRC.nvLocked }
        var value = rec.publicArea.attributes.contains(.written) ? rec.data.reduce(UInt64(0)) { $0 << 8 | UInt64($1) } : state.maxCounter
        value &+= 1
        state.maxCounter = max(state.maxCounter, value)
        rec.data = withUnsafeBytes(of: value.bigEndian, Array.init)
        rec.publicArea.attributes.insert(.written)
        state.nv[i] = rec
        markNVChanged(rec.publicArea.nvIndex)
        return TPMEmptyResponse()
    }

    mutating func nvExtend(_ cmd: TPM2NVExtend) throws(TPMRC) -> TPMEmptyResponse {
        let i = try nvIndex(cmd.nvIndex)
        var rec = state.nv[i]
        try checkNVAccess(authHandle: cmd.authHandle, index: rec, write: true)
        guard rec.publicArea.attributes.indexType == .extend else { throw TPMRC.attributes.with(.handle(2)) }
        guard !rec.publicArea.attributes.contains(.writeLocked) else { throw TPMRC.nvLocked }
        let old = rec.publicArea.attributes.contains(.written) ? rec.data : [UInt8](repeating: 0, count: rec.data.count)
        rec.data = try rc { try TPMCrypto.hash(rec.publicArea.nameAlg, old, cmd.data.bytes) }
        rec.publicArea.attributes.insert(.written)
        state.nv[i] = rec
        markNVChanged(rec.publicArea.nvIndex)
        return TPMEmptyResponse()
    }

    mutating func nvSetBits(_ cmd: TPM2NVSetBits) throws(TPMRC) -> TPMEmptyResponse {
        let i = try nvIndex(cmd.nvIndex)
        var rec = state.nv[i]
        try checkNVAccess(authHandle: cmd.authHandle, index: rec, write: true)
        guard rec.publicArea.attributes.indexType == .bits else { throw TPMRC.attributes.with(.handle(2)) }
        guard !rec.publicArea.attributes.contains(.writeLocked) else { throw TPMRC.nvLocked }
        let old = rec.publicArea.attributes.contains(.written) ? rec.data.reduce(UInt64(0)) { $0 << 8 | UInt64($1) } : 0
        rec.data = withUnsafeBytes(of: (old | cmd.bits).bigEndian, Array.init)
        rec.publicArea.attributes.insert(.written)
        state.nv[i] = rec
        markNVChanged(rec.publicArea.nvIndex)
        return TPMEmptyResponse()
    }

    mutating func nvWriteLock(_ cmd: TPM2NVWriteLock) throws(TPMRC) -> TPMEmptyResponse {
        let i = try nvIndex(cmd.nvIndex)
        try checkNVAccess(authHandle: cmd.authHandle, index: state.nv[i], write: true)
        let a = state.nv[i].publicArea.attributes
        guard !a.isDisjoint(with: [.writeDefine, .writeSTClear]) else { throw TPMRC.attributes.with(.handle(2)) }
        state.nv[i].publicArea.attributes.insert(.writeLocked)
        dirty = true
        return TPMEmptyResponse()
    }

    mutating func nvReadLock(_ cmd: TPM2NVReadLock) throws(TPMRC) -> TPMEmptyResponse {
        let i = try nvIndex(cmd.nvIndex)
        try checkNVAccess(authHandle: cmd.authHandle, index: state.nv[i], write: false)
        guard state.nv[i].publicArea.attributes.contains(.readSTClear) else { throw TPMRC.attributes.with(.handle(2)) }
        state.nv[i].publicArea.attributes.insert(.readLocked)
        dirty = true
        return TPMEmptyResponse()
    }

    /// Records that only this index changed: the state store appends just its new contents.
    mutating func markNVChanged(_ index: TPMHandle) {
        if !dirty { changedNV.insert(index) }
    }

    /// Locks that last until the next TPM Reset come off at Startup(CLEAR) (Part 1, 37.4).
    mutating func clearSTClearLocks() {
        for i in state.nv.indices {
            let a = state.nv[i].publicArea.attributes
            if a.contains(.writeSTClear) && a.contains(.writeLocked) && !a.contains(.writeDefine) {
                state.nv[i].publicArea.attributes.remove(.writeLocked)
            }
            if a.contains(.readSTClear) { state.nv[i].publicArea.attributes.remove(.readLocked) }
        }
    }
}
