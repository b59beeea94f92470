/// The wire types an attestation writes every time — its outcome (in the answer and the stored
/// result), the boot's components and the changes against the baseline — write their own JSON:
/// the bytes their `Encodable` conformances give (`LeanJSONEncoderTests` compares both ways, in
/// both key orders), without a generic container per value. Each writer lists the fields in its
/// type's `CodingKeys` order; an optional is left out when nil, as `encodeIfPresent` does.

extension AttestationOutcome: JSONSelfWriting {
    static let jsonKeys = JSONKeys(["id", "vm", "time", "passed", "status", "checks", "baseline", "baselineSource", "changes",
                                    "rebooted", "token", "tokenID", "policy", "facts"])

    public func writeJSON(to out: inout [UInt8], sortedKeys: Bool) {
        JSONText.appendObject(Self.jsonKeys, sortedKeys: sortedKeys, to: &out) { field, out in
            switch field {
            case 0: JSONText.appendString(id, to: &out)
            case 1: JSONText.appendString(vm, to: &out)
            case 2: JSONText.appendString(time, to: &out)
            case 3: JSONText.appendBool(passed, to: &out)
            case 4: JSONText.appendString(status, to: &out)
            case 5: JSONText.appendArray(checks, sortedKeys: sortedKeys, to: &out)
            case 6:
                guard let baseline else { return false }
                JSONText.appendString(baseline.rawValue, to: &out)
            case 7:
                guard let baselineSource else { return false }
                baselineSource.writeJSON(to: &out, sortedKeys: sortedKeys)
            case 8: JSONText.appendArray(changes, sortedKeys: sortedKeys, to: &out)
            case 9:
                guard let rebooted else { return false }
                JSONText.appendBool(rebooted, to: &out)
            case 10:
                guard let token else { return false }
                JSONText.appendString(token, to: &out)
            case 11:
                guard let tokenID else { return false }
                JSONText.appendString(tokenID, to: &out)
            case 12: policy.writeJSON(to: &out, sortedKeys: sortedKeys)
            default:
                guard let facts else { return false }
                facts.writeJSON(to: &out, sortedKeys: sortedKeys)
            }
            return true
        }
    }
}

extension AttestationOutcome.PolicyRef: JSONSelfWriting {
    static let jsonKeys = JSONKeys(["id", "version"])

    public func writeJSON(to out: inout [UInt8], sortedKeys: Bool) {
        JSONText.appendObject(Self.jsonKeys, sortedKeys: sortedKeys, to: &out) { field, out in
            field == 0 ? JSONText.appendString(id, to: &out) : JSONText.appendInt(version, to: &out)
            return true
        }
    }
}

extension AttestationOutcome.BaselineInfo: JSONSelfWriting {
    static let jsonKeys = JSONKeys(["source", "since", "attestationId"])

    public func writeJSON(to out: inout [UInt8], sortedKeys: Bool) {
        JSONText.appendObject(Self.jsonKeys, sortedKeys: sortedKeys, to: &out) { field, out in
            switch field {
            case 0: JSONText.appendString(source.rawValue, to: &out)
            case 1: JSONText.appendString(since, to: &out)
            default:
                guard let attestationId else { return false }
                JSONText.appendString(attestationId, to: &out)
            }
            return true
        }
    }
}

extension AttestationOutcome.FactsSummary: JSONSelfWriting {
    static let jsonKeys = JSONKeys(["secureBoot", "bootChain", "kernelCommandLine", "pcrDigest"])

    public func writeJSON(to out: inout [UInt8], sortedKeys: Bool) {
        JSONText.appendObject(Self.jsonKeys, sortedKeys: sortedKeys, to: &out) { field, out in
            switch field {
            case 0:
                guard let secureBoot else { return false }
                JSONText.appendBool(secureBoot, to: &out)
            case 1:
                out.append(UInt8(ascii: "["))
                for (i, path) in bootChain.enumerated() {
                    if i > 0 { out.append(UInt8(ascii: ",")) }
                    JSONText.appendString(path, to: &out)
                }
                out.append(UInt8(ascii: "]"))
            case 2:
                guard let kernelCommandLine else { return false }
                JSONText.appendString(kernelCommandLine, to: &out)
            default:
                guard let pcrDigest else { return false }
                JSONText.appendString(pcrDigest, to: &out)
            }
            return true
        }
    }
}

extension BaselineComponent: JSONSelfWriting {
    static let jsonKeys = JSONKeys(["key", "pcr", "kind", "name", "value", "signer"])

    public func writeJSON(to out: inout [UInt8], sortedKeys: Bool) {
        JSONText.appendObject(Self.jsonKeys, sortedKeys: sortedKeys, to: &out) { field, out in
            switch field {
            case 0: JSONText.appendString(key, to: &out)
            case 1: JSONText.appendInt(pcr, to: &out)
            case 2: JSONText.appendString(kind.rawValue, to: &out)
            case 3: JSONText.appendString(name, to: &out)
            case 4: JSONText.appendString(value, to: &out)
            default:
                guard let signer else { return false }
                JSONText.appendString(signer, to: &out)
            }
            return true
        }
    }
}

extension BaselineChange: JSONSelfWriting {
    static let jsonKeys = JSONKeys(["change", "key", "pcr", "kind", "name", "from", "to", "fromSigner", "toSigner"])

    public func writeJSON(to out: inout [UInt8], sortedKeys: Bool) {
        JSONText.appendObject(Self.jsonKeys, sortedKeys: sortedKeys, to: &out) { field, out in
            let optional: String?
            switch field {
            case 0: JSONText.appendString(change.rawValue, to: &out); return true
            case 1: JSONText.appendString(key, to: &out); return true
            case 2: JSONText.appendInt(pcr, to: &out); return true
            case 3: JSONText.appendString(kind.rawValue, to: &out); return true
            case 4: JSONText.appendString(name, to: &out); return true
            case 5: optional = from
            case 6: optional = to
            case 7: optional = fromSigner
            default: optional = toSigner
            }
            guard let optional else { return false }
            JSONText.appendString(optional, to: &out)
            return true
        }
    }
}

extension Evidence: JSONSelfWriting {
    static let jsonKeys = JSONKeys(["quote", "signature", "pcrs", "eventLog", "nonce", "imaLog"])

    /// The PCR maps' keys in their dictionaries' own order when unsorted, as `Dictionary`'s
    /// `Encodable` conformance gives them.
    public func writeJSON(to out: inout [UInt8], sortedKeys: Bool) {
        func map<Value>(_ d: [String: Value], _ value: (Value, inout [UInt8]) -> Void, _ out: inout [UInt8]) {
            out.append(UInt8(ascii: "{"))
            var first = true
            func entry(_ key: String, _ v: Value) {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                JSONText.appendString(key, to: &out)
                out.append(UInt8(ascii: ":"))
                value(v, &out)
            }
            if sortedKeys { for key in d.keys.sorted() { entry(key, d[key]!) } } else { for (key, v) in d { entry(key, v) } }
            out.append(UInt8(ascii: "}"))
        }
        JSONText.appendObject(Self.jsonKeys, sortedKeys: sortedKeys, to: &out) { field, out in
            switch field {
            case 0: JSONText.appendString(quote, to: &out)
            case 1: JSONText.appendString(signature, to: &out)
            case 2: map(pcrs, { bank, out in map(bank, { JSONText.appendString($0, to: &$1) }, &out) }, &out)
            case 3: JSONText.appendString(eventLog, to: &out)
            case 4: JSONText.appendString(nonce, to: &out)
            default:
                guard let imaLog else { return false }
                JSONText.appendString(imaLog, to: &out)
            }
            return true
        }
    }
}
