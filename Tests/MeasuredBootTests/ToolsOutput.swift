import Foundation
import MeasuredBoot
import TPM2

/// What tpm2_eventlog says about a log: per event the PCR, type and digests, and the replayed
/// PCRs. Read from its YAML (the fields the comparison needs, by indentation, no YAML library),
/// or from keylime's JSON conversion of tpm2_eventlog 5.5 output.
struct ToolEvents {
    struct Item {
        var number: Int?
        var pcr: UInt32?
        var type: String?
        var digests: [(String, String)] = []
    }
    var events: [Item] = []
    var pcrs: [String: [UInt32: String]] = [:]

    init(yaml: String) {
        var current: Item?
        var pendingAlg: String?
        var inPCRs = false
        var bank: String?
        func flush() { if let c = current { events.append(c) }; current = nil }
        for raw in yaml.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = String(raw)
            let indent = line.prefix { $0 == " " }.count
            var body = line.dropFirst(indent)
            var dashed = false
            if body.hasPrefix("- ") { body = body.dropFirst(2); dashed = true }
            guard let colon = body.firstIndex(of: ":") else { continue }
            let key = body[..<colon].trimmingCharacters(in: .whitespaces)
            let value = body[body.index(after: colon)...].trimmingCharacters(in: .whitespaces).trimmingCharacters(
                in: CharacterSet(charactersIn: "\""))
            if indent == 0 && key == "pcrs" { flush(); inPCRs = true; continue }
            if inPCRs {
                if indent == 2 { bank = key; continue }
                if indent >= 4, let b = bank, let n = UInt32(key) {
                    pcrs[b, default: [:]][n] = value.hasPrefix("0x") ? String(value.dropFirst(2)) : value
                }
                continue
            }
            switch (indent + (dashed ? 2 : 0), key) {
            case (2, "EventNum"):
                flush()
                current = Item(number: Int(value))
            case (2, "PCRIndex"):
                if current?.pcr != nil || current == nil { flush(); current = Item() }
                current?.pcr = UInt32(value)
            case (2, "EventType"): current?.type = value
            case (2, "Digest"): current?.digests.append(("sha1", value.lowercased()))
            case (4, "AlgorithmId"): pendingAlg = value
            case (4, "Digest"):
                if let a = pendingAlg { current?.digests.append((a, value.lowercased())) }
                pendingAlg = nil
            default: break
            }
        }
        flush()
    }

    init(pueJSON: Any) {
        let events = (pueJSON as? [String: Any])?["events"] as? [[String: Any]] ?? []
        for e in events {
            var item = Item(number: e["EventNum"] as? Int, pcr: (e["PCRIndex"] as? NSNumber).map { UInt32(truncating: $0) },
                            type: e["EventType"] as? String)
            if let ds = e["Digests"] as? [[String: Any]] {
                for d in ds { item.digests.append(((d["AlgorithmId"] as? String) ?? "?", ((d["Digest"] as? String) ?? "").lowercased())) }
            } else if let d = e["Digest"] as? String {
                item.digests.append(("sha1", d.lowercased()))
            }
            self.events.append(item)
        }
    }

    /// Differences between this and our parse, as sentences (empty when they agree).
    func differences(from log: EventLog, skipping skipped: Set<Int> = []) -> [String] {
        var out: [String] = []
        let ours = log.events.filter { !skipped.contains($0.index) }
        if ours.count != events.count { out.append("event count: tool \(events.count), ours \(ours.count)") }
        for (t, e) in zip(events, ours) {
            let n = e.index
            if let p = t.pcr, p != e.pcrIndex { out.append("event \(n): PCR tool \(p), ours \(e.pcrIndex)") }
            // tpm2-tools prints "Unknown event type" for types it does not name (5.4 does not name EV_EFI_HCRTM_EVENT or the SPDM types).
            let toolUnnamed: Set<EventType> = [.efiHCRTMEvent, .efiSPDMFirmwareBlob, .efiSPDMFirmwareConfig, .efiSPDMDevicePolicy,
                                               .efiSPDMDeviceAuthority]
            if let ty = t.type, ty != e.type.description, !(ty.hasPrefix("0x") && EventType(name: ty) == e.type),
               !(ty == "Unknown event type" && (!e.type.isKnown || toolUnnamed.contains(e.type))) {
                out.append("event \(n): type tool \(ty), ours \(e.type)")
            }
            let ourDigests = e.digests.map { (PCRValues.bankName($0.algorithm), hexString($0.digest)) }
            if t.digests.count != ourDigests.count || zip(t.digests, ourDigests).contains(where: { $0.0 != $1.0 || $0.1 != $1.1 }) {
                out.append("event \(n): digests tool \(t.digests), ours \(ourDigests)")
            }
        }
        return out
    }
}
