/// Reads TPM wire bytes (big-endian). Every read checks the bytes that remain in the
/// current region first; a failed read leaves the cursor where it was.
public struct TPMDecoder: TPMCoder {
    @usableFromInline let bytes: [UInt8]
    @usableFromInline var position: Int
    /// End of the current region (a TPM2B being decoded narrows it).
    @usableFromInline var end: Int

    @inlinable
    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
        self.position = 0
        self.end = bytes.count
    }

    /// Decodes `bytes[range]` without copying it; offsets in errors count from the start of `bytes`.
    @inlinable
    public init(_ bytes: [UInt8], range: Range<Int>) {
        self.bytes = bytes
        self.position = max(0, min(range.lowerBound, bytes.count))
        self.end = max(self.position, min(range.upperBound, bytes.count))
    }

    @inlinable public var isDecoding: Bool { true }
    @inlinable public var offset: Int { position }
    @inlinable public var remaining: Int { end - position }

    @inlinable
    mutating func need(_ n: Int, _ field: StaticString) throws(TPMWireError) {
        if n > end - position {
            throw TPMWireError(.truncated, offset: position, field: "\(field)",
                               reason: "needs \(n) byte\(n == 1 ? "" : "s"), \(end - position) remain")
        }
    }

    @inlinable
    public mutating func u8(_ v: inout UInt8, _ field: StaticString) throws(TPMWireError) {
        try need(1, field)
        v = bytes[position]
        position += 1
    }

    @inlinable
    public mutating func u16(_ v: inout UInt16, _ field: StaticString) throws(TPMWireError) {
        try need(2, field)
        v = UInt16(bytes[position]) << 8 | UInt16(bytes[position + 1])
        position += 2
    }

    @inlinable
    public mutating func u32(_ v: inout UInt32, _ field: StaticString) throws(TPMWireError) {
        try need(4, field)
        var x: UInt32 = 0
        for i in 0..<4 { x = x << 8 | UInt32(bytes[position + i]) }
        v = x
        position += 4
    }

    @inlinable
    public mutating func u64(_ v: inout UInt64, _ field: StaticString) throws(TPMWireError) {
        try need(8, field)
        var x: UInt64 = 0
        for i in 0..<8 { x = x << 8 | UInt64(bytes[position + i]) }
        v = x
        position += 8
    }

    @inlinable
    public mutating func fixedBytes(_ v: inout [UInt8], count: Int, _ field: StaticString) throws(TPMWireError) {
        try need(count, field)
        v = Array(bytes[position..<position + count])
        position += count
    }

    @inlinable
    public mutating func sizedBytes(_ v: inout [UInt8], max: Int, _ field: StaticString) throws(TPMWireError) {
        let start = position
        var size: UInt16 = 0
        try u16(&size, field)
        guard Int(size) <= max else {
            position = start
            throw TPMWireError(.sizeExceedsLimit, offset: start, field: "\(field)",
                               reason: "size \(size) exceeds the limit of \(max)")
        }
        do { try need(Int(size), field) } catch { position = start; throw error }
        v = Array(bytes[position..<position + Int(size)])
        position += Int(size)
    }

    @inlinable
    public mutating func remainingBytes(_ v: inout [UInt8], _ field: StaticString) throws(TPMWireError) {
        v = Array(bytes[position..<end])
        position = end
    }

    @inlinable
    public mutating func enterSized(max: Int, field: StaticString) throws(TPMWireError) -> TPMSizedRegion {
        let start = position
        var size: UInt16 = 0
        try u16(&size, field)
        guard Int(size) <= max else {
            position = start
            throw TPMWireError(.sizeExceedsLimit, offset: start, field: "\(field)",
                               reason: "size \(size) exceeds the limit of \(max)")
        }
        do { try need(Int(size), field) } catch { position = start; throw error }
        let region = TPMSizedRegion(start: position, size: Int(size), savedEnd: end, max: max)
        end = position + Int(size)
        return region
    }

    @inlinable
    public mutating func exitSized(_ region: TPMSizedRegion, field: StaticString) throws(TPMWireError) {
        if position != region.start + region.size {
            throw TPMWireError(.sizeMismatch, offset: position, field: "\(field)",
                               reason: "declared size \(region.size) but the structure used \(position - region.start) bytes")
        }
        end = region.savedEnd
    }

    /// Fails if bytes remain after a complete top-level structure.
    @inlinable
    public func finish() throws(TPMWireError) {
        if position != end {
            throw TPMWireError(.trailingBytes, offset: position,
                               reason: "\(end - position) byte\(end - position == 1 ? "" : "s") after the end of the structure")
        }
    }
}

/// Writes TPM wire bytes (big-endian).
public struct TPMEncoder: TPMCoder {
    public var bytes: [UInt8]

    @inlinable
    public init(capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    @inlinable public var isDecoding: Bool { false }
    @inlinable public var offset: Int { bytes.count }
    @inlinable public var remaining: Int { Int.max }

    @inlinable
    public mutating func u8(_ v: inout UInt8, _ field: StaticString) throws(TPMWireError) {
        bytes.append(v)
    }

    @inlinable
    public mutating func u16(_ v: inout UInt16, _ field: StaticString) throws(TPMWireError) {
        bytes.append(UInt8(truncatingIfNeeded: v >> 8))
        bytes.append(UInt8(truncatingIfNeeded: v))
    }

    @inlinable
    public mutating func u32(_ v: inout UInt32, _ field: StaticString) throws(TPMWireError) {
        for s in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt32(s))) }
    }

    @inlinable
    public mutating func u64(_ v: inout UInt64, _ field: StaticString) throws(TPMWireError) {
        for s in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt64(s))) }
    }

    @inlinable
    public mutating func fixedBytes(_ v: inout [UInt8], count: Int, _ field: StaticString) throws(TPMWireError) {
        guard v.count == count else {
            throw TPMWireError(.invalidValue, offset: bytes.count, field: "\(field)",
                               reason: "must be exactly \(count) bytes, has \(v.count)")
        }
        bytes.append(contentsOf: v)
    }

    @inlinable
    public mutating func sizedBytes(_ v: inout [UInt8], max: Int, _ field: StaticString) throws(TPMWireError) {
        guard v.count <= max else {
            throw TPMWireError(.sizeExceedsLimit, offset: bytes.count, field: "\(field)",
                               reason: "\(v.count) bytes exceed the limit of \(max)")
        }
        var size = UInt16(v.count)
        try u16(&size, field)
        bytes.append(contentsOf: v)
    }

    @inlinable
    public mutating func remainingBytes(_ v: inout [UInt8], _ field: StaticString) throws(TPMWireError) {
        bytes.append(contentsOf: v)
    }

    @inlinable
    public mutating func enterSized(max: Int, field: StaticString) throws(TPMWireError) -> TPMSizedRegion {
        bytes.append(0)
        bytes.append(0)
        return TPMSizedRegion(start: bytes.count, size: 0, savedEnd: 0, max: max)
    }

    @inlinable
    public mutating func exitSized(_ region: TPMSizedRegion, field: StaticString) throws(TPMWireError) {
        let size = bytes.count - region.start
        guard size <= region.max else {
            throw TPMWireError(.sizeExceedsLimit, offset: region.start - 2, field: "\(field)",
                               reason: "\(size) bytes exceed the limit of \(region.max)")
        }
        bytes[region.start - 2] = UInt8(truncatingIfNeeded: size >> 8)
        bytes[region.start - 1] = UInt8(truncatingIfNeeded: size)
    }
}

@usableFromInline
func hex32(_ v: UInt32) -> String {
    let s = String(v, radix: 16, uppercase: true)
    return "0x" + String(repeating: "0", count: max(0, 8 - s.count)) + s
}
