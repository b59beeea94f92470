import Crypto
import Dispatch
import TPM2

/// Replay straight from the log's bytes: the same framing checks and the same replay rules as
/// `EventLog(parsing:)` + `replay()`, without building an `Event` per event. The verifier's hot
/// path (a PCR comparison) and `tlaunch eventlog replay` use it; anything that needs events
/// (mismatch explanations, verified events) parses fully.
extension EventLog {
    /// The replayed PCRs of every computable bank, and the number of events.
    public static func replay(parsing bytes: [UInt8]) throws(EventLogError) -> (pcrs: PCRValues, events: Int) {
        guard !bytes.isEmpty else { throw EventLogError(.truncated, "the log is empty", offset: 0, eventIndex: 0) }
        var r = LEReader(bytes)
        let first = try legacyEvent(&r, index: 0)
        var banks = [AlgorithmSize(.sha1, 20)]
        var agile = false
        if first.type == .noAction, first.data.count >= 16, Array(first.data.prefix(16)) == SpecIDEvent.signature03 {
            var hr = LEReader(bytes, range: first.data.startIndex..<first.data.endIndex)
            do { banks = try SpecIDEvent(reading: &hr).algorithms } catch {
                var e = error
                e.eventIndex = 0
                throw e
            }
            agile = true
        }
        var state = ReplayState(banks: banks)
        if !agile { state.extend(pcr: first.pcrIndex, type: first.type, digestAt: first.digests[0].digest.startIndex, slotOffsets: nil,
                                 bytes: bytes, data: first.data) }
        var count = 1
        var offsets = [Int](repeating: -1, count: banks.count)
        while !r.isAtEnd {
            if isPadding(bytes, from: r.offset) { break }
            let index = count
            do throws(EventLogError) {
                let pcr = try r.u32("pcrIndex")
                let type = EventType(rawValue: try r.u32("eventType"))
                var sha1At = 0
                if agile {
                    let n = try r.u32("digests.count")
                    guard n <= UInt32(banks.count) else {
                        throw r.error(.sizeExceedsLimit, "\(n) digests, but the log has \(banks.count) banks",
                                      field: "TCG_PCR_EVENT2.digests.count")
                    }
                    for i in 0..<banks.count { offsets[i] = -1 }
                    for i in 0..<Int(n) {
                        let alg = TPMAlgID(rawValue: try r.u16("hashAlg"))
                        guard let slot = banks.firstIndex(where: { $0.algorithm == alg }) else {
                            throw EventLogError(.invalidValue, "digest algorithm \(alg) is not one of the log's banks "
                                                             + "(\(banks.map { "\($0.algorithm)" }.joined(separator: ", "))), so its size "
                                                             + "is unknown",
                                                offset: r.position - 2, field: "TCG_PCR_EVENT2.digests[\(i)].hashAlg")
                        }
                        offsets[slot] = r.offset
                        try r.skip(banks[slot].digestSize, "\(alg) digest")
                    }
                    r.field = "TCG_PCR_EVENT2.eventSize"
                } else {
                    sha1At = r.offset
                    try r.skip(20, "SHA-1 digest")
                    r.field = "TCG_PCR_EVENT.eventSize"
                }
                let size = try r.length(UInt64(try r.u32("eventSize")), cap: maxEventDataSize, "eventSize")
                let data = bytes[r.offset..<r.offset + size]
                try r.skip(size, "event data")
                r.field = ""
                state.extend(pcr: pcr, type: type, digestAt: sha1At, slotOffsets: agile ? offsets : nil, bytes: bytes, data: data)
            } catch {
                var e = error
                e.eventIndex = index
                if e.field == nil { e.field = agile ? "TCG_PCR_EVENT2" : "TCG_PCR_EVENT" }
                throw e
            }
            count += 1
        }
        return (state.finish(bytes: bytes), count)
    }
}

/// Pass 1 collects, per bank and PCR, where the digests to extend are (offsets into the log);
/// pass 2 hashes each (bank, PCR) chain — independent chains, so they run in parallel on the
/// machine's cores. PCR 0's initial value (startup locality) is known once pass 1 is done.
private struct ReplayState {
    let banks: [AlgorithmSize]
    let supported: [Bool]
    /// chains[slot * 24 + pcr] = offsets of the digests extended into that PCR, in order.
    var chains: [[Int32]]
    var locality: UInt8?
    var sawHCRTM = false

    init(banks: [AlgorithmSize]) {
        self.banks = banks
        supported = banks.map { EventLogHash.isSupported($0.algorithm) }
        chains = [[Int32]](repeating: [], count: banks.count * 24)
    }

    mutating func extend(pcr: UInt32, type: EventType, digestAt: Int, slotOffsets: [Int]?, bytes: [UInt8], data: ArraySlice<UInt8>) {
        if type == .noAction {
            if pcr == 0, locality == nil, data.count == 17, data.prefix(16).elementsEqual(Self.startupLocalitySignature) {
                locality = data[data.startIndex + 16]
            }
            return
        }
        guard pcr < 24 else { return }
        if pcr == 0 && type == .efiHCRTMEvent { sawHCRTM = true }
        if let slotOffsets {
            for slot in 0..<banks.count where supported[slot] && slotOffsets[slot] >= 0 {
                chains[slot * 24 + Int(pcr)].append(Int32(truncatingIfNeeded: slotOffsets[slot]))
            }
        } else if supported[0] {
            chains[Int(pcr)].append(Int32(truncatingIfNeeded: digestAt))
        }
    }

    static let startupLocalitySignature: [UInt8] = Array("StartupLocality".utf8) + [0]

    func finish(bytes: [UInt8]) -> PCRValues {
        let startup = locality ?? (sawHCRTM ? 4 : 0)
        let work = chains.indices.filter { !chains[$0].isEmpty }
        let results = UnsafeMutableBufferPointer<[UInt8]>.allocate(capacity: max(work.count, 1))
        results.initialize(repeating: [])
        defer { results.deinitialize(); results.deallocate() }
        bytes.withUnsafeBytes { logBytes in
            let shared = SharedBuffers(log: logBytes, results: results)
            DispatchQueue.concurrentPerform(iterations: work.count) { i in
                let log = shared.log, results = shared.results
                let chain = work[i]
                let slot = chain / 24, pcr = chain % 24
                let n = banks[slot].digestSize
                var v = [UInt8](repeating: pcr >= 17 && pcr <= 22 ? 0xFF : 0, count: n)
                if pcr == 0 { v[n - 1] = startup }
                Self.run(banks[slot].algorithm, &v, chains[chain], log, n)
                results[i] = v
            }
        }
        var out = PCRValues()
        for (i, chain) in work.enumerated() {
            out.banks[banks[chain / 24].algorithm, default: [:]][UInt32(chain % 24)] = results[i]
        }
        return out
    }

    /// Extends `v` with each digest of the chain: scratch = PCR ‖ digest, hashed in place.
    static func run(_ alg: TPMAlgID, _ v: inout [UInt8], _ offsets: [Int32], _ log: UnsafeRawBufferPointer, _ n: Int) {
        var scratch = v + [UInt8](repeating: 0, count: n)
        let done: Bool = scratch.withUnsafeMutableBufferPointer { s in
            let base = s.baseAddress!
            guard OneShotHash.hash(alg, base, 0, into: base + 2 * n - n) else { return false }
            let src = log.baseAddress!
            let dst = UnsafeMutableRawPointer(base + n)
            let words = n / 8, tail = n % 8
            for off in offsets {
                // Digest sizes are 20–64 bytes: word copies beat a libc call per event.
                let from = src + Int(off)
                for w in 0..<words {
                    dst.storeBytes(of: from.loadUnaligned(fromByteOffset: 8 * w, as: UInt64.self), toByteOffset: 8 * w, as: UInt64.self)
                }
                for t in 0..<tail {
                    dst.storeBytes(of: from.load(fromByteOffset: 8 * words + t, as: UInt8.self), toByteOffset: 8 * words + t,
                                   as: UInt8.self)
                }
                _ = OneShotHash.hash(alg, base, 2 * n, into: base)
            }
            return true
        }
        if done {
            v = Array(scratch[0..<n])
            return
        }
        for off in offsets {
            let d = Array(UnsafeRawBufferPointer(rebasing: log[Int(off)..<Int(off) + n]))
            v = EventLogHash.extend(alg, v, d[...]) ?? v
        }
    }
}

/// The log (read-only while the chains run) and the result slots (each iteration writes only its
/// own index) shared by the parallel chains.
private struct SharedBuffers: @unchecked Sendable {
    let log: UnsafeRawBufferPointer
    let results: UnsafeMutableBufferPointer<[UInt8]>
}
