// One-shot hashes for the replay's hot loop. swift-crypto's hash types allocate a context object
// per digest, which costs more than the hash of 2 × 32 bytes itself; BoringSSL's one-shot
// functions (which swift-crypto 4.5.2 links, with its `CCryptoBoringSSL_` symbol prefix) do not.
// The package pins swift-crypto exactly; a renamed symbol fails the link, and the replay tests
// compare every result with swift-crypto's own types (FastReplayTests, the fuzz invariants).
//
// Worth it, measured (2026-12-07, `TLaunchBench --only-eventlog`, one core): parse + replay of the
// synthesized 100,000-event log runs at 2.5–3.3 M events/s with these, 1.77–1.81 M events/s with
// swift-crypto's types fed through update(bufferPointer:) (the 61-event HP log: 6.1–6.4 M vs
// 4.0–4.1 M) — the per-digest context allocation is most of a 64-byte hash.

@_silgen_name("CCryptoBoringSSL_SHA1")
private func boringSHA1(_ data: UnsafePointer<UInt8>?, _ len: Int, _ out: UnsafeMutablePointer<UInt8>?) -> UnsafeMutablePointer<UInt8>?
@_silgen_name("CCryptoBoringSSL_SHA256")
private func boringSHA256(_ data: UnsafePointer<UInt8>?, _ len: Int, _ out: UnsafeMutablePointer<UInt8>?) -> UnsafeMutablePointer<UInt8>?
@_silgen_name("CCryptoBoringSSL_SHA384")
private func boringSHA384(_ data: UnsafePointer<UInt8>?, _ len: Int, _ out: UnsafeMutablePointer<UInt8>?) -> UnsafeMutablePointer<UInt8>?
@_silgen_name("CCryptoBoringSSL_SHA512")
private func boringSHA512(_ data: UnsafePointer<UInt8>?, _ len: Int, _ out: UnsafeMutablePointer<UInt8>?) -> UnsafeMutablePointer<UInt8>?

import TPM2

enum OneShotHash {
    /// Hashes `count` bytes at `input` into `output` (which may be `input`: the digest is
    /// written after the input has been read). False for algorithms it does not cover.
    @inline(__always)
    static func hash(_ alg: TPMAlgID, _ input: UnsafePointer<UInt8>, _ count: Int, into output: UnsafeMutablePointer<UInt8>) -> Bool {
        switch alg {
        case .sha1: _ = boringSHA1(input, count, output)
        case .sha256: _ = boringSHA256(input, count, output)
        case .sha384: _ = boringSHA384(input, count, output)
        case .sha512: _ = boringSHA512(input, count, output)
        default: return false
        }
        return true
    }
}
