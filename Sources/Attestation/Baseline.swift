import AttestationAPI
import Crypto
import Foundation
import MeasuredBoot
import TPM2

public enum Baseline {
    /// The PCRs a baseline covers: firmware and its configuration (0–3), boot manager code and
    /// data (4, 5), Secure Boot policy (7), grub's commands and files (8, 9), shim's MOK state (14).
    public static let pcrs: Set<UInt32> = [0, 1, 2, 3, 4, 5, 7, 8, 9, 14]

    /// The components of a boot whose log replayed to its quote (only the verified events).
    public static func components(of verified: VerifiedEventLog, facts: BootFacts) -> [BaselineComponent] {
        // Values come from the verified reference bank only (digests in other banks are claims).
        let alg = verified.referenceBank ?? .sha256
        var out: [BaselineComponent] = []
        var ordinal: [String: Int] = [:]
        func next(_ base: String) -> Int { ordinal[base, default: 0] += 1; return ordinal[base]! }
        let signerByApp: [Int: String] = Dictionary(facts.bootChain.map { app in
            (app.eventIndex, app.authorityEvents.compactMap { idx in facts.authorities.first { $0.eventIndex == idx } }
                .map { "\($0.variable): \($0.certificate?.subject ?? $0.other ?? "?")" }.joined(separator: "; "))
        }, uniquingKeysWith: { a, _ in a })
        for ve in verified.events where pcrs.contains(ve.event.pcrIndex) {
            let e = ve.event
            let digest = ve.digest(alg).map { hexString($0) } ?? ""
            let pcr = e.pcrIndex
            switch e.decoded {
            case .separator:
                continue
            case .variable(let v) where ve.dataMatchesDigest:
                let kind: ComponentKind = pcr == 7 ? .secureBootConfiguration : (pcr == 14 ? .mok : .bootConfiguration)
                out.append(BaselineComponent(key: "PCR \(pcr) variable \(v.name) \(next("v\(pcr)\(v.name)"))", pcr: pcr, kind: kind,
                                             name: v.name, value: hexString(Array(SHA256.hash(data: v.data)))))
            case .authority(let v):
                // Which authority vouched is carried on the boot applications; the event itself
                // is kept too, so a changed signer shows even when the image digest is equal.
                let n = next("a\(pcr)")
                out.append(BaselineComponent(key: "PCR \(pcr) authority \(n)", pcr: pcr, kind: .secureBootAuthority,
                                             name: "\(v.name) entry \(n)", value: digest))
            case .imageLoad(let img):
                let n = next("i\(pcr)")
                let path = facts.bootChain.first { $0.eventIndex == e.index }?.filePath ?? img.devicePath?.description ?? "image \(n)"
                let kind: ComponentKind = pcr == 4 ? (n == 1 ? .bootLoader : .bootApplication) : .driver
                out.append(BaselineComponent(key: "PCR \(pcr) image \(n)", pcr: pcr, kind: kind, name: path, value: digest,
                                             signer: signerByApp[e.index].flatMap { $0.isEmpty ? nil : $0 }))
            case .ipl(let ipl) where ve.dataMatchesDigest || ipl.kind == .file:
                switch ipl.kind {
                case .kernelCommandLine:
                    out.append(BaselineComponent(key: "PCR \(pcr) kernel command line \(next("k"))", pcr: pcr, kind: .kernelCommandLine,
                                                 name: "kernel command line", value: ipl.text))
                case .grubCommand:
                    out.append(BaselineComponent(key: "PCR \(pcr) grub command \(next("g"))", pcr: pcr, kind: .bootLoaderCommand,
                                                 name: "grub command", value: ipl.text))
                case .file:
                    let isKernel = ipl.text.contains("vmlinuz") || ipl.text.contains("bzImage")
                    let kind: ComponentKind = isKernel ? .kernel : (ipl.text.contains("initrd") ? .initrd : .bootLoaderFile)
                    out.append(BaselineComponent(key: "PCR \(pcr) file \(ipl.text) \(next("f\(ipl.text)"))", pcr: pcr, kind: kind,
                                                 name: ipl.text, value: digest))
                default:
                    out.append(BaselineComponent(key: "PCR \(pcr) text \(next("t\(pcr)"))", pcr: pcr, kind: pcr == 14 ? .mok : .other,
                                                 name: ipl.text, value: digest))
                }
            default:
                let kind: ComponentKind = pcr <= 3 ? .firmware : .other
                let n = next("o\(pcr)\(e.type)")
                out.append(BaselineComponent(key: "PCR \(pcr) \(e.type) \(n)", pcr: pcr, kind: kind, name: "\(e.type) #\(n)",
                                             value: digest))
            }
        }
        return out
    }

    /// Components from expected PCR values (e.g. `tlaunch predict`): one per PCR.
    public static func components(expectedPCRs: [String: String]) -> [BaselineComponent] {
        expectedPCRs.compactMap { k, v -> BaselineComponent? in
            guard let p = UInt32(k) else { return nil }
            return BaselineComponent(key: "PCR \(p) value", pcr: p, kind: .pcr, name: "sha256 PCR \(p)", value: v.lowercased())
        }.sorted { $0.pcr < $1.pcr }
    }

    /// The PCR-value components of a quote (compared when the baseline was set from values).
    public static func components(quoted: PCRValues, pcrs: [UInt32]) -> [BaselineComponent] {
        pcrs.compactMap { p in
            quoted[.sha256, p].map {
                BaselineComponent(key: "PCR \(p) value", pcr: p, kind: .pcr, name: "sha256 PCR \(p)", value: hexString($0))
            }
        }
    }

    /// The components of a predicted boot — the event log a firmware model computed from a disk
    /// and keys, not a guest's — in `pcrs`. They explain a predicted baseline's PCR values; they
    /// never decide (the values do).
    public static func components(predicted log: EventLog, pcrs: Set<UInt32>) -> [BaselineComponent] {
        let verified = log.replay(against: log.replay()).verified
        return components(of: verified, facts: verified.explain()).filter { pcrs.contains($0.pcr) }
    }

    /// A boot against a VM's baseline: component by component, or by PCR value when the
    /// baseline was set from predicted values. A predicted baseline decides by its PCR values
    /// alone; when they differ, the events of the prediction (kept with it) name what changed in
    /// those PCRs, as a learned baseline's would, and a PCR whose events do not explain its change
    /// is named by its value.
    public static func diff(_ b: BaselineRecord, current: [BaselineComponent], quoted: PCRValues) -> [BaselineChange] {
        guard b.source == .predicted else { return diff(baseline: b.components, current: current) }
        let values = b.components.filter { $0.kind == .pcr }
        let byValue = diff(baseline: values, current: components(quoted: quoted, pcrs: values.map(\.pcr)))
        let moved = Set(byValue.map(\.pcr))
        guard !moved.isEmpty else { return [] }
        let events = b.components.filter { $0.kind != .pcr && moved.contains($0.pcr) }
        let explained = events.isEmpty ? [] : diff(baseline: events, current: current.filter { moved.contains($0.pcr) })
        let covered = Set(explained.map(\.pcr))
        return explained + byValue.filter { !covered.contains($0.pcr) }
    }

    /// The baseline check, naming the first changes and what to do about them.
    static func check(_ b: BaselineRecord, changes: [BaselineChange]) -> Check {
        Check(.baseline, passed: changes.isEmpty, changes.isEmpty
                ? "matches the \(b.source.rawValue) baseline ("
                    + (b.source == .predicted
                        ? "\(b.components.filter { $0.kind == .pcr }.count) PCR values" : "\(b.components.count) components") + ")"
                : "\(changes.count) change(s) against the \(b.source.rawValue) baseline: "
                    + changes.prefix(4).map(\.summary).joined(separator: "; ")
              + ". If this was an intended update, approve this boot as the new baseline")
    }

    /// Event-level differences, in boot order.
    public static func diff(baseline: [BaselineComponent], current: [BaselineComponent]) -> [BaselineChange] {
        // The usual case, a boot equal to its baseline component for component, needs no tables:
        // with distinct keys the comparison below would find nothing. (With a key repeated, a
        // later component is compared with the first of its key, and may differ from it.)
        if baseline == current {
            var keys = Set<String>(minimumCapacity: current.count)
            if current.allSatisfy({ keys.insert($0.key).inserted }) { return [] }
        }
        let old = Dictionary(baseline.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })
        let new = Dictionary(current.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })
        var out: [BaselineChange] = []
        for c in current {
            if let b = old[c.key] {
                if b.value != c.value || b.signer != c.signer || b.name != c.name {
                    out.append(BaselineChange(change: .changed, key: c.key, pcr: c.pcr, kind: c.kind,
                                              name: c.name == b.name ? c.name : "\(b.name) → \(c.name)",
                                              from: b.value, to: c.value, fromSigner: b.signer, toSigner: c.signer))
                }
            } else {
                out.append(BaselineChange(change: .added, key: c.key, pcr: c.pcr, kind: c.kind, name: c.name, from: nil, to: c.value,
                                          fromSigner: nil, toSigner: c.signer))
            }
        }
        for b in baseline where new[b.key] == nil {
            out.append(BaselineChange(change: .removed, key: b.key, pcr: b.pcr, kind: b.kind, name: b.name, from: b.value, to: nil,
                                      fromSigner: b.signer, toSigner: nil))
        }
        return out
    }
}
