import Foundation
import TPM2

// The JSON shapes of `tlaunch eventlog …` and `tlaunch ima replay` (documented in README.md).
// Built as plain JSON objects so that the output is stable and ordered (sorted keys).

extension EventLog {
    /// `{"format", "banks": [{"algorithm", "digestSize"}], "events": [event…], "padding"}`.
    public func jsonObject(pcr: UInt32? = nil) -> [String: Any] {
        var out: [String: Any] = [
            "format": format.rawValue,
            "banks": banks.map { ["algorithm": PCRValues.bankName($0.algorithm), "digestSize": $0.digestSize] as [String: Any] },
            "events": events.filter { pcr == nil || $0.pcrIndex == pcr }.map(\.jsonObject),
        ]
        if !padding.isEmpty { out["paddingBytes"] = padding.count }
        return out
    }
}

extension Event {
    /// `{"index", "offset", "pcr", "type", "typeValue", "digests": {"sha256": hex}, "size", "data": {"kind", …}}`.
    public var jsonObject: [String: Any] {
        var digestsJSON: [String: String] = [:]
        for d in digests { digestsJSON[PCRValues.bankName(d.algorithm)] = hexString(d.digest) }
        return [
            "index": index, "offset": offset, "pcr": Int(pcrIndex), "type": type.description, "typeValue": Int(type.rawValue),
            "digests": digestsJSON, "size": data.count, "data": decoded.jsonObject,
        ]
    }
}

extension EventData {
    /// `{"kind": "...", …}`; the kinds are the case names of `EventData`.
    public var jsonObject: [String: Any] {
        switch self {
        case .specID(let s):
            return ["kind": "spec-id", "signature": "Spec ID Event03", "platformClass": s.platformClass,
                    "specVersion": "\(s.specVersionMajor).\(s.specVersionMinor)", "specErrata": s.specErrata, "uintnSize": s.uintnSize,
                    "algorithms": s.algorithms.map { ["algorithm": PCRValues.bankName($0.algorithm),
                                                      "digestSize": $0.digestSize] as [String: Any] },
                    "vendorInfo": hexString(s.vendorInfo)]
        case .startupLocality(let l): return ["kind": "startup-locality", "locality": Int(l)]
        case .sp800155(let r):
            var o: [String: Any] = ["kind": "sp800-155", "signature": r.signature, "payload": hexString(r.payload)]
            if let m = r.platformManufacturerID { o["platformManufacturerID"] = m }
            if let g = r.referenceManifestGUID { o["referenceManifestGUID"] = g.description }
            return o
        case .windowsTrailer(let entries):
            return ["kind": "windows-sipa-trailer",
                    "entries": entries.map { ["type": String(format: "0x%08X", $0.type), "data": hexString($0.data)] }]
        case .noAction(let sig, let payload): return ["kind": "no-action", "signature": sig, "payload": hexString(payload)]
        case .variable(let v):
            return ["kind": "uefi-variable", "guid": v.vendorGUID.description, "name": v.name, "value": v.value.jsonObject,
                    "dataSize": v.data.count]
        case .authority(let v):
            return ["kind": "uefi-variable-authority", "guid": v.vendorGUID.description, "name": v.name,
                    "value": v.authorityValue.jsonObject, "dataSize": v.data.count]
        case .imageLoad(let i):
            var o: [String: Any] = ["kind": "uefi-image-load", "imageLocationInMemory": i.locationInMemory,
                                    "imageLengthInMemory": i.lengthInMemory,
                                    "imageLinkTimeAddress": i.linkTimeAddress]
            if let p = i.devicePath { o["devicePath"] = p.description }
            if let e = i.devicePathError { o["devicePathError"] = e.description }
            if i.trailingBytes > 0 { o["trailingBytes"] = i.trailingBytes }
            return o
        case .gpt(let g):
            return ["kind": "uefi-gpt", "diskGUID": g.diskGUID.description, "partitions": g.partitions.map {
                ["type": $0.typeGUID.description, "guid": $0.uniqueGUID.description, "startingLBA": $0.startingLBA,
                 "endingLBA": $0.endingLBA,
                 "attributes": $0.attributes, "name": $0.name] as [String: Any]
            }]
        case .firmwareBlob(let b, let l): return ["kind": "firmware-blob", "base": b, "length": l]
        case .firmwareBlob2(let d, let b, let l): return ["kind": "firmware-blob2", "description": d, "base": b, "length": l]
        case .handoffTables(let t): return ["kind": "handoff-tables",
                                            "tables": t.map { ["guid": $0.guid.description, "pointer": $0.pointer] as [String: Any] }]
        case .handoffTables2(let d, let t):
            return ["kind": "handoff-tables2", "description": d,
                    "tables": t.map { ["guid": $0.guid.description, "pointer": $0.pointer] as [String: Any] }]
        case .separator(let v, let isError): return ["kind": "separator", "value": v, "isError": isError]
        case .text(let t): return ["kind": "text", "text": t]
        case .ipl(let i): return ["kind": "ipl", "ipl": i.kind.rawValue, "text": i.text]
        case .eventTag(let id, let d): return ["kind": "event-tag", "id": id, "data": hexString(d)]
        case .spdm(let t, let d): return ["kind": "spdm", "type": t.description, "data": hexString(d)]
        case .bytes(let b): return ["kind": "bytes", "hex": hexString(b)]
        case .malformed(let e): return ["kind": "malformed", "error": e.description, "code": e.code.rawValue]
        }
    }
}

extension VariableValue {
    public var jsonObject: Any {
        switch self {
        case .boolean(let b): return ["boolean": b]
        case .signatureLists(let lists):
            return ["signatureLists": lists.map { l in
                ["type": l.typeName, "entries": l.entries.map { e -> [String: Any] in
                    var o: [String: Any] = ["owner": e.owner.description]
                    if let c = e.certificate {
                        o["subject"] = c.subject ?? ""
                        o["sha256Fingerprint"] = c.sha256Fingerprint
                    } else {
                        o["data"] = hexString(e.data)
                    }
                    return o
                }] as [String: Any]
            }]
        case .signatureData(let e):
            var o: [String: Any] = ["owner": e.owner.description]
            if let c = e.certificate {
                o["subject"] = c.subject ?? ""; o["sha256Fingerprint"] = c.sha256Fingerprint
            } else {
                o["data"] = hexString(e.data)
            }
            return ["signatureData": o]
        case .certificate(let c): return ["certificate": ["subject": c.subject ?? "", "sha256Fingerprint": c.sha256Fingerprint]]
        case .loadOption(let o):
            return ["loadOption": ["attributes": o.attributes, "description": o.description,
                                   "devicePaths": o.filePathList.map(\.description),
                                   "optionalData": hexString(o.optionalData)] as [String: Any]]
        case .bootOrder(let order): return ["bootOrder": order.map { String(format: "%04X", $0) }]
        case .text(let t): return ["text": t]
        case .empty: return ["empty": true]
        case .bytes(let b): return ["hex": hexString(b)]
        case .malformed(let e): return ["malformed": e.description]
        }
    }
}

extension ReplayReport {
    /// `{"allMatch", "pcrs": [{"bank", "pcr", "status", "replayed", "expected", "lastEvent"?, "matchedAfterEvent"?}], "replayed": {bank:
    /// {pcr: hex}}}`.
    public var jsonObject: [String: Any] {
        [
            "allMatch": allMatch,
            "replayed": replayed.jsonObject,
            "pcrs": comparisons.map { c -> [String: Any] in
                var o: [String: Any] = ["bank": PCRValues.bankName(c.bank), "pcr": Int(c.pcr), "expected": hexString(c.expected)]
                if let r = c.replayed { o["replayed"] = hexString(r) }
                switch c.status {
                case .match: o["status"] = "match"
                case .bankNotReplayable: o["status"] = "bank-not-replayable"
                case .mismatch(let last, let prefix):
                    o["status"] = "mismatch"
                    if let last { o["lastEvent"] = last }
                    if let prefix { o["matchedAfterEvent"] = prefix }
                }
                return o
            },
        ]
    }
}

/// Serializes a JSON object with sorted keys, pretty-printed.
public func jsonText(_ object: Any) -> String {
    guard let data = try? JSONSerialization.data(withJSONObject: object,
                                                 options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]) else { return "{}" }
    return String(decoding: data, as: UTF8.self)
}
