import Crypto
import Foundation

// swift-crypto's generic entry points walk bytes through protocols: `update(data:)` takes any
// DataProtocol (its regions, then a copy), and `Array(digest)` iterates a digest one byte at a
// time through its Sequence conformance. On a replay of a 40-event log that was half of the
// hashing time. These go straight to contiguous memory; the bytes hashed are the same.

extension HashFunction {
    /// Feeds `bytes` (an array or a slice of one) to the hash.
    @inlinable public mutating func update(bytes: [UInt8]) {
        bytes.withUnsafeBytes { update(bufferPointer: $0) }
    }

    @inlinable public mutating func update(bytes: ArraySlice<UInt8>) {
        bytes.withUnsafeBytes { update(bufferPointer: $0) }
    }
}

extension Digest {
    /// The digest's bytes as an array, copied in one go.
    @inlinable public var byteArray: [UInt8] { withUnsafeBytes { Array($0) } }
}
