/// A TPM 2.0 command (Part 3): its code, handle area and parameter area, declared once and
/// used both to build commands (the client) and to parse them (a TPM implementation).
public protocol TPMCommand: Sendable {
    associatedtype Response: TPMResponse
    static var code: TPMCC { get }
    /// Handles in the handle area.
    static var handleCount: Int { get }
    /// How many of the handles (always the first ones) need an authorization session.
    static var authHandleCount: Int { get }
    /// Whether the first parameter is a TPM2B that a `decrypt` session may encrypt.
    static var decryptable: Bool { get }
    init()
    mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError)
    mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError)
}

/// The response of a ``TPMCommand``: handle area (0 or 1 handle) and parameters.
public protocol TPMResponse: Sendable {
    static var handleCount: Int { get }
    /// Whether the first parameter is a TPM2B that an `encrypt` session may encrypt.
    static var encryptable: Bool { get }
    init()
    mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError)
    mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError)
}

extension TPMCommand {
    public static var handleCount: Int { 0 }
    public static var authHandleCount: Int { 0 }
    public static var decryptable: Bool { false }
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {}
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {}

    /// The handle values, in order.
    @inlinable public var handleValues: [TPMHandle] {
        var e = TPMEncoder(capacity: 16)
        var copy = self
        try? copy.handles(&e)
        return handlesFromBytes(e.bytes)
    }

    /// Encodes the parameter area.
    @inlinable public func parameterBytes() throws(TPMWireError) -> [UInt8] {
        var e = TPMEncoder()
        var copy = self
        try copy.parameters(&e)
        return e.bytes
    }
}

extension TPMResponse {
    public static var handleCount: Int { 0 }
    public static var encryptable: Bool { false }
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {}
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {}

    @inlinable public func parameterBytes() throws(TPMWireError) -> [UInt8] {
        var e = TPMEncoder()
        var copy = self
        try copy.parameters(&e)
        return e.bytes
    }
}

/// A response with no handles and no parameters.
public struct TPMEmptyResponse: TPMResponse, Equatable {
    @inlinable public init() {}
}

/// The framing of a command (Part 1, 18; Part 3, 4): header, handle area, optional
/// authorization area, parameter area. Parameters stay as bytes so that a session can
/// encrypt the first one and hash them as sent.
public struct TPMCommandPacket: Sendable, Equatable {
    public var code: TPMCC
    public var handles: [TPMHandle]
    /// Empty means the TPM_ST_NO_SESSIONS tag.
    public var sessions: [TPMSAuthCommand]
    public var parameters: [UInt8]
    /// A tag other than the one the sessions imply (a decoded packet keeps the one it had).
    public var tag: TPMST

    public init(code: TPMCC, handles: [TPMHandle], sessions: [TPMSAuthCommand], parameters: [UInt8]) {
        self.code = code; self.handles = handles; self.sessions = sessions; self.parameters = parameters
        self.tag = sessions.isEmpty ? .noSessions : .sessions
    }

    /// The command's bytes.
    public func encode() throws(TPMWireError) -> [UInt8] {
        var e = TPMEncoder(capacity: 64 + parameters.count)
        var tag = self.tag
        try e.value(&tag, "tag")
        var size: UInt32 = 0
        try e.u32(&size, "commandSize")
        var code = self.code
        try e.value(&code, "commandCode")
        for h in handles {
            var h = h
            try e.value(&h, "handle")
        }
        if tag == .sessions {
            let region = e.bytes.count
            var authSize: UInt32 = 0
            try e.u32(&authSize, "authorizationSize")
            for s in sessions {
                var s = s
                try e.nested(&s, "authorization")
            }
            let n = UInt32(e.bytes.count - region - 4)
            e.bytes.replaceSubrange(region..<region + 4, with: withUnsafeBytes(of: n.bigEndian, Array.init))
        }
        e.bytes.append(contentsOf: parameters)
        let total = UInt32(e.bytes.count)
        e.bytes.replaceSubrange(2..<6, with: withUnsafeBytes(of: total.bigEndian, Array.init))
        return e.bytes
    }

    /// Parses a command; `handleCount` comes from the command code (the TPM knows it per command).
    public static func decode(_ bytes: [UInt8], handleCount: (TPMCC) -> Int?) throws(TPMWireError) -> TPMCommandPacket {
        var d = TPMDecoder(bytes)
        var tag = TPMST.null
        try d.value(&tag, "tag")
        var size: UInt32 = 0
        try d.u32(&size, "commandSize")
        guard Int(size) == bytes.count else {
            throw TPMWireError(.sizeMismatch, offset: 2, field: "commandSize",
                               reason: "commandSize \(size) but \(bytes.count) bytes were sent")
        }
        var code = TPMCC(rawValue: 0)
        try d.value(&code, "commandCode")
        guard let nHandles = handleCount(code) else {
            throw TPMWireError(.unknownSelector, offset: 6, field: "commandCode", reason: "\(code) is not a command this TPM implements")
        }
        var handles: [TPMHandle] = []
        for _ in 0..<nHandles {
            var h = TPMHandle(0)
            try d.value(&h, "handle")
            handles.append(h)
        }
        var sessions: [TPMSAuthCommand] = []
        if tag == .sessions {
            let start = d.offset
            var authSize: UInt32 = 0
            try d.u32(&authSize, "authorizationSize")
            guard Int(authSize) <= d.remaining else {
                throw TPMWireError(.truncated, offset: start, field: "authorizationSize",
                                   reason: "authorizationSize \(authSize) but \(d.remaining) bytes remain")
            }
            let end = d.offset + Int(authSize)
            let savedEnd = d.end
            d.end = end
            while d.offset < end {
                guard sessions.count < 3 else {
                    throw TPMWireError(.countExceedsLimit, offset: d.offset, field: "authorization",
                                       reason: "more than three sessions in the authorization area")
                }
                var s = TPMSAuthCommand()
                try d.nested(&s, "authorization")
                sessions.append(s)
            }
            d.end = savedEnd
        } else if tag != .noSessions {
            throw TPMWireError(.invalidValue, offset: 0, field: "tag", reason: "\(tag) is not a command tag")
        }
        var params: [UInt8] = []
        try d.remainingBytes(&params, "parameters")
        var packet = TPMCommandPacket(code: code, handles: handles, sessions: sessions, parameters: params)
        packet.tag = tag
        return packet
    }
}

/// The framing of a response: header, then on success the handle area, the parameter area
/// (preceded by parameterSize when sessions are present) and one TPMS_AUTH_RESPONSE per session.
public struct TPMResponsePacket: Sendable, Equatable {
    public var tag: TPMST
    public var responseCode: TPMRC
    public var handles: [TPMHandle]
    public var parameters: [UInt8]
    public var sessions: [TPMSAuthResponse]

    public init(responseCode: TPMRC, handles: [TPMHandle] = [], parameters: [UInt8] = [], sessions: [TPMSAuthResponse] = []) {
        self.responseCode = responseCode; self.handles = handles; self.parameters = parameters; self.sessions = sessions
        self.tag = sessions.isEmpty ? .noSessions : .sessions
    }

    public func encode() throws(TPMWireError) -> [UInt8] {
        var e = TPMEncoder(capacity: 32 + parameters.count)
        var tag = responseCode.isSuccess ? self.tag : .noSessions
        try e.value(&tag, "tag")
        var size: UInt32 = 0
        try e.u32(&size, "responseSize")
        var rc = responseCode
        try e.value(&rc, "responseCode")
        if responseCode.isSuccess {
            for h in handles {
                var h = h
                try e.value(&h, "handle")
            }
            if tag == .sessions {
                var n = UInt32(parameters.count)
                try e.u32(&n, "parameterSize")
            }
            e.bytes.append(contentsOf: parameters)
            if tag == .sessions {
                for s in sessions {
                    var s = s
                    try e.nested(&s, "authorization")
                }
            }
        }
        let total = UInt32(e.bytes.count)
        e.bytes.replaceSubrange(2..<6, with: withUnsafeBytes(of: total.bigEndian, Array.init))
        return e.bytes
    }

    /// Parses a response. `handleCount` is the number of handles the command returns and
    /// `sessionCount` the number of sessions the command carried.
    public static func decode(_ bytes: [UInt8], handleCount: Int, sessionCount: Int) throws(TPMWireError) -> TPMResponsePacket {
        var d = TPMDecoder(bytes)
        var tag = TPMST.null
        try d.value(&tag, "tag")
        var size: UInt32 = 0
        try d.u32(&size, "responseSize")
        guard Int(size) == bytes.count else {
            throw TPMWireError(.sizeMismatch, offset: 2, field: "responseSize",
                               reason: "responseSize \(size) but \(bytes.count) bytes were received")
        }
        var rc = TPMRC.success
        try d.value(&rc, "responseCode")
        var packet = TPMResponsePacket(responseCode: rc)
        packet.tag = tag
        guard rc.isSuccess else {
            // An error response is the 10-byte header alone (Part 1, 18.4).
            try d.finish()
            return packet
        }
        switch tag {
        case .noSessions, .rspCommand:
            break
        case .sessions:
            break
        default:
            throw TPMWireError(.invalidValue, offset: 0, field: "tag", reason: "\(tag) is not a response tag")
        }
        for _ in 0..<handleCount {
            var h = TPMHandle(0)
            try d.value(&h, "handle")
            packet.handles.append(h)
        }
        if tag == .sessions {
            let start = d.offset
            var paramSize: UInt32 = 0
            try d.u32(&paramSize, "parameterSize")
            guard Int(paramSize) <= d.remaining else {
                throw TPMWireError(.truncated, offset: start, field: "parameterSize",
                                   reason: "parameterSize \(paramSize) but \(d.remaining) bytes remain")
            }
            try d.fixedBytes(&packet.parameters, count: Int(paramSize), "parameters")
            for _ in 0..<sessionCount {
                var s = TPMSAuthResponse()
                try d.nested(&s, "authorization")
                packet.sessions.append(s)
            }
            try d.finish()
        } else {
            try d.remainingBytes(&packet.parameters, "parameters")
        }
        return packet
    }
}

extension TPMResponse {
    /// Decodes handle values and the parameter area into the typed response.
    @inlinable public init(handles: [TPMHandle], parameters: [UInt8]) throws(TPMWireError) {
        self.init()
        var e = TPMEncoder(capacity: 16)
        for h in handles {
            var h = h
            try e.value(&h, "handle")
        }
        var hd = TPMDecoder(e.bytes)
        try self.handles(&hd)
        var d = TPMDecoder(parameters)
        try self.parameters(&d)
        try d.finish()
    }

    /// The handle values this response carries.
    @inlinable public var handleValues: [TPMHandle] {
        var e = TPMEncoder(capacity: 16)
        var copy = self
        try? copy.handles(&e)
        return handlesFromBytes(e.bytes)
    }
}

extension TPMCommand {
    /// Decodes handle values and the parameter area into the typed command.
    @inlinable public init(handles: [TPMHandle], parameters: [UInt8]) throws(TPMWireError) {
        self.init()
        var e = TPMEncoder(capacity: 16)
        for h in handles {
            var h = h
            try e.value(&h, "handle")
        }
        var hd = TPMDecoder(e.bytes)
        try self.handles(&hd)
        var d = TPMDecoder(parameters)
        try self.parameters(&d)
        try d.finish()
    }
}

/// Splits an encoded handle area into its handles (big-endian UINT32s).
@usableFromInline
func handlesFromBytes(_ bytes: [UInt8]) -> [TPMHandle] {
    var out: [TPMHandle] = []
    out.reserveCapacity(bytes.count / 4)
    var i = 0
    while i + 4 <= bytes.count {
        out.append(TPMHandle(UInt32(bytes[i]) << 24 | UInt32(bytes[i + 1]) << 16 | UInt32(bytes[i + 2]) << 8 | UInt32(bytes[i + 3])))
        i += 4
    }
    return out
}
