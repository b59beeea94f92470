import Foundation
import MeasuredBoot
import TPM2
import TLaunchTestSupport
import Testing

@Suite("Measured Boot: boot facts from verified events")
struct ExplainTests {
    func verified(_ name: String) throws -> (EventLog, ReplayReport, [String: Any]) {
        let object =
            try Corpus.json("eventlogs/\(name.replacingOccurrences(of: ".bin", with: ".expected_pcrs.json"))") as? [String: Any] ?? [:]
        let log = try EventLog(parsing: Corpus.bytes("eventlogs/\(name)"))
        let pcrs = try PCRValues(json: JSONSerialization.data(withJSONObject: object["pcrs"] ?? [:]))
        return (log, log.replay(against: pcrs), object)
    }

    /// The boot chain's Authenticode digests equal the ones go-tpm-tools' tests give, on every
    /// log that has them.
    @Test(.corpus) func bootChainDigestsEqualTheSources() throws {
        guard Corpus.require() else { return }
        let files = try FileManager.default.contentsOfDirectory(atPath: Corpus.url("eventlogs").path).filter {
            $0.hasSuffix(".expected_pcrs.json")
        }
        var checked = 0
        for f in files.sorted() {
            let object = try Corpus.json("eventlogs/\(f)") as? [String: Any] ?? [:]
            guard let apps = object["expected_efi_app_digests"] as? [String: [String]], let log = object["log"] as? String else { continue }
            let (_, report, _) = try verified(log)
            #expect(report.allMatch, "\(log)")
            let facts = report.verified.explain()
            #expect(facts.comparedWithTPM)
            for (bank, digests) in apps {
                let ours = facts.bootChain.compactMap { $0.digests[bank] }
                if log == "dell_poweredge_gdc_host_go-tpm-tools.bin" {
                    // go-tpm-tools' GdcHost table lists application digests that occur nowhere in
                    // this log (in no event, of any type); check that, rather than the chain.
                    let all = Set(report.verified.log.events.flatMap { $0.digests.map { hexString($0.digest) } })
                    #expect(digests.allSatisfy { !all.contains($0) }, "\(log)")
                    continue
                }
                // Only banks the replay compared with PCRs vouch for digests; the others' are claims
                // and stay out of the facts.
                if let alg = PCRValues.bankNames[bank], report.verified.verifiedBanks.contains(alg) {
                    #expect(ours == digests, "\(log) \(bank): boot chain \(ours), expected \(digests)")
                    checked += 1
                } else {
                    #expect(ours.isEmpty, "\(log) \(bank) was not verified, yet the facts carry its digests")
                }
            }
        }
        #expect(checked >= 10)
    }

    @Test(.corpus) func rhel8OnGCE() throws {
        guard Corpus.require() else { return }
        let (_, report, _) = try verified("gce_rhel8_secureboot_go-tpm-tools.bin")
        let f = report.verified.explain()
        #expect(f.secureBoot.enabled == true)
        let db = f.keyDatabases.first { $0.name == "db" }
        #expect(db?.certificates.contains { $0.subject?.contains("Microsoft Corporation UEFI CA 2011") == true } == true)
        #expect(f.keyDatabases.first { $0.name == "PK" }?.certificates.first?.subject == "CN=newpk")
        #expect(f.keyDatabases.first { $0.name == "dbx" }?.hashCounts["EFI_CERT_SHA256_GUID"] == 183)
        #expect(f.bootChain.first?.filePath == "\\EFI\\redhat\\shimx64.efi")
        #expect(
            f.bootChain.first?.devicePath
                == "PciRoot(0x0)/Pci(0x3,0x0)/Scsi(0x1,0x0)/"
                    + "HD(1,GPT,EF72374C-2630-46A1-88D6-082693781140,0x800,0x64000)/\\EFI\\redhat\\shimx64.efi"
        )
        // The db entry that verified shim, and shim's vendor certificate.
        #expect(
            f.authorities.contains {
                $0.variable == "db" && $0.certificate?.subject?.contains("Microsoft Corporation UEFI CA 2011") == true
            })
        #expect(f.shim?.vendorCertificate?.subject?.contains("Red Hat Secure Boot CA 5") == true)
        #expect(f.bootOrder == [2, 0, 1])
        #expect(f.anomalies.isEmpty, "\(f.anomalies)")
        #expect(f.separators.filter { $0.pcr <= 7 }.count == 8)
    }

    /// Nothing is explained from a PCR whose replay did not match: with PCR 7 wrong, the Secure
    /// Boot facts disappear; the unverified log is only explainable through `unchecked`.
    @Test(.corpus) func factsComeOnlyFromMatchingPCRs() throws {
        guard Corpus.require() else { return }
        let (log, _, object) = try verified("gce_rhel8_secureboot_go-tpm-tools.bin")
        var pcrs = try PCRValues(json: JSONSerialization.data(withJSONObject: object["pcrs"] ?? [:]))
        pcrs[.sha256, 7] = [UInt8](repeating: 0x42, count: 32)
        let report = log.replay(against: pcrs)
        #expect(!report.allMatch)
        let bad = report.comparisons.first { $0.bank == .sha256 && $0.pcr == 7 }
        if case .mismatch(let last, let prefix) = bad?.status {
            #expect(last == log.events.last { $0.pcrIndex == 7 }?.index)
            #expect(prefix == nil)
        } else {
            Issue.record("PCR 7 should mismatch")
        }
        let f = report.verified.explain()
        #expect(!report.verified.verifiedPCRs.contains(7))
        #expect(f.secureBoot.enabled == nil && f.keyDatabases.isEmpty && f.authorities.isEmpty)
        #expect(!f.bootChain.isEmpty)  // PCR 4 still matches
        let unchecked = VerifiedEventLog.unchecked(log).explain()
        #expect(!unchecked.comparedWithTPM && unchecked.secureBoot.enabled == true)
    }

    /// A TPM that saw fewer events than the log lists: the report names where they diverge.
    @Test func extraEventsInTheLogAreLocated() throws {
        var b = try EventLogBuilder(banks: [.sha256])
        b.measure(pcr: 4, type: .efiAction, data: Array("Calling EFI Application from Boot Option".utf8))
        b.separators()
        let tpm = b.log.replay()
        b.measure(pcr: 4, type: .efiBootServicesApplication, data: [], measured: Array("grub".utf8))
        let log = try EventLog(parsing: b.encoded())
        let report = log.replay(against: PCRValues([.sha256: [4: tpm[.sha256, 4]!]]))
        let separator4 = log.events.first { $0.pcrIndex == 4 && $0.type == .separator }!.index
        #expect(report.comparisons.first?.status == .mismatch(lastEvent: log.events.count - 1, matchedAfterEvent: separator4))
    }

    @Test func anomaliesAreFound() throws {
        var b = try EventLogBuilder(banks: [.sha1, .sha256])
        b.measureVariable(pcr: 7, type: .efiVariableDriverConfig, guid: .globalVariable, name: "SecureBoot", data: [1])
        b.measure(pcr: 0, type: .sCRTMVersion, data: Array("v1".utf16.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }) + [0, 0])
        b.separators(0...6)
        b.separators(7...7, error: true)
        // Data that says one thing while the digest is of another.
        b.measure(pcr: 4, type: .efiAction, data: Array("Exit Boot Services Invocation".utf8), measured: Array("something else".utf8))
        // A measurement into PCR 0 after its separator, and an unknown type.
        b.measure(pcr: 0, type: .postCode, data: Array("late".utf8))
        b.measure(pcr: 2, type: EventType(rawValue: 0x0000_8401), data: [1, 2, 3])
        let log = try EventLog(parsing: b.encoded())
        let f = VerifiedEventLog.unchecked(log).explain()
        let kinds = Set(f.anomalies.map(\.kind))
        // PK, KEK, db and dbx are missing from PCR 7: the configuration is incomplete.
        #expect(kinds == [.errorSeparator, .digestNotOfData, .eventAfterSeparator, .unknownEventType, .incompleteConfiguration],
                "\(f.anomalies)")
        #expect(f.anomalies.first { $0.kind == .digestNotOfData }?.eventIndex == log.events.count - 3)
        #expect(f.secureBoot.enabled == true)
        // The facts serialize to the JSON the README documents.
        let json = try JSONEncoder().encode(f)
        let object = try JSONSerialization.jsonObject(with: json) as? [String: Any]
        #expect((object?["anomalies"] as? [Any])?.count == f.anomalies.count)
        #expect((object?["secureBoot"] as? [String: Any])?["enabled"] as? Bool == true)
    }

    @Test(.corpus) func ukiAndGrubMeasurements() throws {
        guard Corpus.require() else { return }
        let sd = try EventLog(parsing: Corpus.bytes("eventlogs/qemu_ovmf_sdboot_fedora37_tpm2-tools.bin"))
        let f = VerifiedEventLog.unchecked(sd).explain()
        // systemd-stub: the command line in PCR 12, the initrd tag in PCR 9.
        #expect(f.kernelCommandLine?.contains("console=ttyS0") == true)
        #expect(f.uki.contains { $0.pcr == 12 } && f.uki.contains { $0.pcr == 9 })
        #expect(f.bootOptions.first { $0.number == "0001" }?.devicePath.hasSuffix("\\EFI\\systemd\\systemd-bootx64.efi") == true)
        #expect(f.secureBoot.enabled == false)
        let inspur = try EventLog(parsing: Corpus.bytes("eventlogs/inspur_server_ubuntu_pue.bin"))
        let g = VerifiedEventLog.unchecked(inspur).explain()
        #expect(g.grub?.commands.contains { $0.hasPrefix("linux") } == true)
        #expect(g.kernelCommandLine?.isEmpty == false)
    }
}

@Suite("Measured Boot: device paths as UEFI text")
struct DevicePathTextTests {
    @Test(.corpus) func realPaths() throws {
        guard Corpus.require() else { return }
        let hirs = try EventLog(parsing: Corpus.bytes("eventlogs/dell_bootguard_sha1log_hirs.bin"))
        guard case .imageLoad(let shim) = hirs.events[24].decoded else { Issue.record("event 24 is not an image load"); return }
        #expect(
            shim.devicePath?.description
                == "PciRoot(0x0)/Pci(0x17,0x0)/Sata(0x1,0x8000,0x0)/"
                    + "HD(1,GPT,381A04DC-02F8-4099-B4E2-FF987DEF0AEF,0x800,0x100000)/\\EFI\\ubuntu\\shimx64.efi"
        )
        #expect(shim.devicePath?.filePath == "\\EFI\\ubuntu\\shimx64.efi")
        // Re-encoding the decoded path gives the logged bytes.
        let raw = hirs.events[24].data.dropFirst(32)
        #expect(shim.devicePath?.encoded == Array(raw))
    }

    @Test func nodesOfEveryKindWeName() throws {
        func node(_ t: UInt8, _ s: UInt8, _ d: [UInt8]) -> DevicePath.Node { DevicePath.Node(type: t, subType: s, data: d) }
        let nvme = node(3, 23, [1, 0, 0, 0, 0xAC, 0xE4, 0x2E, 0, 0x90, 0x1E, 0x31, 0xDC])
        let usb = node(3, 5, [6, 0])
        let mac = node(3, 11, [0x52, 0x54, 0, 0x12, 0x34, 0x56] + [UInt8](repeating: 0, count: 26) + [1])
        let vendor = node(1, 4, EFIGUID.globalVariable.bytes + [0xAA])
        let unknown = node(0x42, 7, [1, 2])
        let path = DevicePath(nodes: [nvme, usb, mac, vendor, unknown])
        #expect(
            path.description
                == "NVMe(0x1,DC-31-1E-90-00-2E-E4-AC)/USB(0x6,0x0)/MAC(525400123456,0x1)/"
                    + "VenHw(8BE4DF61-93CA-11D2-AA0D-00E098032B8C,AA)/Path(66,7,0102)"
        )
        #expect(try DevicePath(bytes: path.encoded[...]).description == path.description)
    }
}

@Suite("Measured Boot: what the verifier vouches for, on real logs")
struct VouchingOnRealLogsTests {
    /// Every real log explained as its own TPM would have verified it (replayed against itself):
    /// genuine firmware and boot loaders never trip the soundness rules — no configuration after
    /// PCR 7's separator, none repeated or out of order, grub's strings hash by grub's convention,
    /// and every grub kernel command line is bound to its linux command.
    @Test(.corpus) func genuineLogsTripNoSoundnessRule() throws {
        guard Corpus.require() else { return }
        let newKinds: Set<BootFacts.Anomaly.Kind> = [.configurationAfterSeparator, .repeatedConfiguration, .configurationOutOfOrder,
            .foreignConfigurationVariable, .unboundKernelCommandLine, .unexpectedEventType, .unverifiedMeasurement
        ]
        // systemd-boot before v251 measured its UTF-16 command line into PCR 8 with a digest we
        // cannot relate to the event data: unverified, so reported.
        let unverifiable: [String: Set<BootFacts.Anomaly.Kind>] = ["workstation_archlinux_sdboot_tpm2-tools.bin": [.unverifiedMeasurement]]
        var cmdlines = 0, grubStrings = 0
        // A TDX CCEL log counts measurement registers (MRTD, RTMR 0–3 as "PCR" 1–4), not PCRs:
        // the PCR rules do not apply to it.
        for name in Corpus.eventLogs where !SharedData.malformed.contains(name) && !name.contains("_ccel_") {
            guard let log = try? EventLog(parsing: Corpus.bytes("eventlogs/\(name)")) else { continue }
            let report = log.replay(against: log.replay())
            let facts = report.verified.explain()
            let tripped = facts.anomalies.filter { newKinds.contains($0.kind) && !(unverifiable[name]?.contains($0.kind) ?? false) }
            #expect(tripped.isEmpty, "\(name): \(tripped.map(\.message))")
            let contradictedGrub = report.verified.events.filter {
                $0.event.pcrIndex == 8 && $0.event.type == .ipl && $0.dataVouching == .contradicted
            }
            #expect(contradictedGrub.isEmpty,
                    "\(name): grub strings that do not hash by grub's convention: \(contradictedGrub.map(\.event.index))")
            grubStrings +=
                report.verified.events.filter { $0.event.pcrIndex == 8 && $0.event.type == .ipl && $0.dataVouching == .vouched }.count
            // (A TDX CCEL log counts RTMRs, not PCRs: grub's strings are not in its "PCR 8".)
            if log.events.contains(where: {
                if case .ipl(let i) = $0.decoded { i.kind == .kernelCommandLine && $0.pcrIndex == 8 } else { false }
            }) {
                #expect(facts.kernelCommandLine != nil, "\(name): a grub command line that did not bind: \(facts.anomalies.map(\.message))")
                if facts.kernelCommandLine != nil { cmdlines += 1 }
            }
            if facts.secureBoot.enabled != nil {
                #expect(facts.keyDatabases.map(\.name).starts(with: ["PK", "KEK", "db", "dbx"]),
                        "\(name): \(facts.keyDatabases.map(\.name))")
            }
        }
        #expect(cmdlines >= 25 && grubStrings >= 1000, "\(cmdlines) bound command lines, \(grubStrings) vouched grub strings")
    }
}
