import ArgumentParser
import Foundation
import TPM2

struct TPMCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tpm",
        abstract: "Talk to a TPM 2.0 (hardware, swtpm, the Microsoft simulator or a TrustedLaunch vTPM).",
        subcommands: [Info.self, PCRs.self, RCDecode.self, Demo.self]
    )

    struct Info: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "info",
                                                        abstract: "Manufacturer, firmware, algorithms, PCR banks and EK certificates.")
        @OptionGroup var connection: TCTIOptions
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let tpm = try connection.client()
            let info = try await tpm.info()
            await tpm.close()
            if json {
                print(try jsonString(info))
            } else {
                print(render(info))
            }
        }
    }

    struct PCRs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "pcrs", abstract: "Read PCR values (all allocated banks, or one).")
        @OptionGroup var connection: TCTIOptions
        @Option(help: "Only this bank (sha1, sha256, sha384, sha512).") var bank: String?
        @Option(help: "Only these PCRs, e.g. 0,1,7.") var pcrs: String?
        @Flag(help: "Print JSON: {\"sha256\": {\"0\": \"hex\", …}}.") var json = false

        func run() async throws {
            var only: [Int]?
            if let pcrs {
                only = try pcrs.split(separator: ",").map { s in
                    guard let n = Int(s.trimmingCharacters(in: .whitespaces)), (0..<32).contains(n) else {
                        throw ValidationError("--pcrs takes PCR numbers 0–31 separated by commas, not \"\(s)\"")
                    }
                    return n
                }
            }
            var wanted: TPMAlgID?
            if let bank {
                guard let alg = TPMAlgID(shortName: bank), alg.digestSize != nil else {
                    throw ValidationError("--bank must be a hash algorithm such as sha1 or sha256, not \"\(bank)\"")
                }
                wanted = alg
            }
            let tpm = try connection.client()
            let allocated = try await tpm.pcrBanks()
            var selections: [TPMSPCRSelection] = []
            for sel in allocated.pcrSelections where !sel.pcrs.isEmpty && (wanted == nil || sel.hash == wanted) {
                selections.append(TPMSPCRSelection(hash: sel.hash, pcrs: only ?? sel.pcrs))
            }
            if let wanted, selections.isEmpty {
                await tpm.close()
                throw ValidationError("""
                    the TPM has no allocated \(wanted.shortName) bank (allocated: \
                    \(allocated.pcrSelections.filter { !$0.pcrs.isEmpty }.map(\.hash.shortName).joined(separator: ", ")))
                    """)
            }
            let banks = try await tpm.pcrRead(TPMLPCRSelection(selections))
            await tpm.close()
            print(json ? try pcrJSON(banks) : renderPCRs(banks))
        }
    }

    struct RCDecode: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rc-decode",
                                                        abstract: "Explain a TPM response code, as tpm2_rc_decode does.")
        @Argument(help: "The response code, e.g. 0x9a2 or 2466.") var code: String

        func run() throws {
            let text = code.lowercased()
            let value = text.hasPrefix("0x") ? UInt32(text.dropFirst(2), radix: 16) : UInt32(text)
            guard let value else { throw ValidationError("\"\(code)\" is not a number (decimal or 0x-prefixed hex)") }
            let rc = TPMRC(rawValue: value)
            print(rc.decoded)
            if let name = rc.baseName { print("\(name)\(rc.subject.map { " (\($0))" } ?? "")") }
        }
    }
}

func jsonString(_ value: some Encodable) throws -> String {
    let e = JSONEncoder()
    e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try e.encode(value), as: UTF8.self)
}

/// The layout tpm2_pcrread uses: a bank header, then `  N : 0xHEX` per PCR.
func renderPCRs(_ banks: [TPMPCRBank]) -> String {
    var lines: [String] = []
    for b in banks {
        lines.append("  \(b.hashAlg.shortName):")
        for p in b.values.keys.sorted() {
            let idx = String(p)
            lines.append("    \(idx)\(String(repeating: " ", count: max(0, 2 - idx.count))): 0x\(b.values[p]!.hexString.uppercased())")
        }
    }
    return lines.joined(separator: "\n")
}

func pcrJSON(_ banks: [TPMPCRBank]) throws -> String {
    var out: [String: [String: String]] = [:]
    for b in banks {
        var m: [String: String] = [:]
        for (p, v) in b.values { m[String(p)] = v.hexString }
        out[b.hashAlg.shortName] = m
    }
    return try jsonString(out)
}

func render(_ info: TPMInfo) -> String {
    var s = """
    Manufacturer:      \(info.manufacturer)
    Vendor string:     \(info.vendorString)
    Firmware version:  \(info.firmwareVersion)
    Specification:     TPM \(info.specFamily), level \(info.specLevel), revision \(info.specRevision) (\(info.specDate))
    PCR banks:         \(info.pcrBanks.keys.sorted().map { "\($0) (\(info.pcrBanks[$0]!.count) PCRs)" }.joined(separator: ", "))
    Algorithms:        \(info.algorithms.joined(separator: " "))
    ECC curves:        \(info.eccCurves.joined(separator: " "))
    """
    if info.ekCertificates.isEmpty {
        s += "\nEK certificates:   none in NV"
    } else {
        for c in info.ekCertificates {
            s += "\nEK certificate:    \(c.kind) at \(c.nvIndex)\n  Subject:         \(c.subject)\n  Issuer:          \(c.issuer)\n  "
               + "Serial:          \(c.serial)\n  Not after:       \(c.notAfter)"
        }
    }
    return s
}
