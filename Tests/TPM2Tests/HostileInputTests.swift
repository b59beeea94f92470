import TPM2
import Testing
import TLaunchTestSupport

@Suite("wire: hostile input gives typed errors with context")
struct HostileInputTests {
    func decodeError<T: TPMStructure>(_ type: T.Type, _ hex: String) -> TPMWireError? {
        do {
            _ = try T(tpmBytes: [UInt8](hex: hex)!)
            return nil
        } catch {
            return error
        }
    }

    @Test func wrongMagic() throws {
        var bytes = try vector("tpms_attest_quote")
        bytes[0] = 0x00
        let e = #expect(throws: TPMWireError.self) { try TPMSAttest(tpmBytes: bytes) }
        #expect(e?.code == .invalidValue)
        #expect(e?.offset == 0)
        #expect(e?.structure == "TPMS_ATTEST")
        #expect(e?.field == "magic")
    }

    @Test func oversizedDigestNamesItsPath() throws {
        var bytes = try vector("tpms_attest_quote")
        // pcrDigest.size is at offset 0x63; claim 65 bytes (limit 64).
        bytes[0x63] = 0x00; bytes[0x64] = 0x41
        let e = #expect(throws: TPMWireError.self) { try TPMSAttest(tpmBytes: bytes) }
        #expect(e?.code == .sizeExceedsLimit)
        #expect(e?.offset == 0x63)
        #expect(e?.path.map(\.description) == ["TPMS_ATTEST.attested", "TPMU_ATTEST.quote", "TPMS_QUOTE_INFO.pcrDigest",
                                               "TPM2B_DIGEST.buffer"])
        #expect(e?.description.contains("size 65 exceeds the limit of 64") == true)
    }

    @Test func truncatedInsideANestedList() throws {
        let bytes = try vector("tpms_attest_quote")
        let e = #expect(throws: TPMWireError.self) { try TPMSAttest(tpmBytes: bytes.prefix(0x61)) }
        #expect(e?.code == .truncated)
        #expect(e?.offset == 0x60)
        #expect(e?.path.map(\.description).last == "TPMS_PCR_SELECTION.pcrSelect")
        #expect(e?.path.map(\.description).contains("TPML_PCR_SELECTION.pcrSelections[0]") == true)
    }

    @Test func listCountAboveSpecLimitAllocatesNothing() {
        // TPML_PCR_SELECTION claiming 4 billion entries.
        let e = decodeError(TPMLPCRSelection.self, "ffffffff")
        #expect(e?.code == .countExceedsLimit)
        #expect(e?.field == "pcrSelections")
        // TPML_DIGEST limit is 8.
        #expect(decodeError(TPMLDigest.self, "00000009")?.code == .countExceedsLimit)
        // A capability list with a count within the limit but no bytes behind it: truncated.
        #expect(decodeError(TPMSCapabilityData.self, "00000001 000000fe")?.code == .truncated)
    }

    @Test func unknownSelectors() {
        // TPMT_PUBLIC with type 0x0099.
        let e = decodeError(TPMTPublic.self, "0099 000b 00000000 0000")
        #expect(e?.code == .unknownSelector)
        #expect(e?.path.first?.description == "TPMT_PUBLIC.parameters")
        // TPMT_HA with an unknown hash: its size is unknowable.
        #expect(decodeError(TPMTHA.self, "7777")?.code == .unknownSelector)
        // TPMS_ATTEST type that is not an attestation tag.
        var bytes = (try? vector("tpms_attest_quote")) ?? []
        bytes[5] = 0x01
        #expect((try? TPMSAttest(tpmBytes: bytes)) == nil)
        // TPMS_CAPABILITY_DATA with an unknown capability.
        #expect(decodeError(TPMSCapabilityData.self, "0000abcd 00000000")?.code == .unknownSelector)
        // TPMT_SIGNATURE with an unknown algorithm.
        #expect(decodeError(TPMTSignature.self, "0042")?.code == .unknownSelector)
    }

    @Test func interfaceValuesAreValidated() {
        // TPMS_CLOCK_INFO.safe = 2 is not a TPMI_YES_NO.
        let e = decodeError(TPMSClockInfo.self, "0000000000000000 00000000 00000000 02")
        #expect(e?.code == .invalidValue)
        #expect(e?.field == "safe")
        #expect(e?.offset == 16)
    }

    @Test func sizedStructuresMustFillTheirSize() {
        // TPM2B_ECC_POINT of size 6 holding x (2+1) and y (2+0) = 5 bytes, plus one stray byte.
        let e = decodeError(TPM2BECCPoint.self, "0006 0001aa 0000 ff")
        #expect(e?.code == .sizeMismatch)
        // A required TPM2B_PUBLIC of size 0.
        #expect(decodeError(TPM2BPublic.self, "0000")?.code == .emptyStructure)
        // A size that runs past the end.
        #expect(decodeError(TPM2BPublic.self, "0100 0001")?.code == .truncated)
    }

    @Test func encoderRefusesInconsistentValues() {
        var p = TPMTemplates.ekRSA2048
        p.unique = .ecc(TPMSECCPoint())
        let e = #expect(throws: TPMWireError.self) { try p.tpmBytes() }
        #expect(e?.code == .selectorMismatch)
        let tooBig = TPM2BDigest([UInt8](repeating: 0, count: 65))
        #expect((#expect(throws: TPMWireError.self) { try tooBig.tpmBytes() })?.code == .sizeExceedsLimit)
    }

    @Test func responseFramingErrors() {
        func decode(_ hex: String, handles: Int = 0, sessions: Int = 0) -> TPMWireError? {
            do { _ = try TPMResponsePacket.decode([UInt8](hex: hex)!, handleCount: handles,
                                                  sessionCount: sessions); return nil } catch { return error }
        }
        // responseSize disagrees with the bytes received.
        #expect(decode("8001 00000010 00000000")?.code == .sizeMismatch)
        // Header cut short.
        #expect(decode("8001 0000")?.code == .truncated)
        // An error response with a body.
        #expect(decode("8001 0000000c 00000101 0000")?.code == .trailingBytes)
        // parameterSize larger than what follows.
        #expect(decode("8002 00000010 00000000 00000100 0000", sessions: 0)?.code == .truncated)
        // A response tag that is not one.
        #expect(decode("1234 0000000a 00000000")?.code == .invalidValue)
        // Missing session area.
        #expect(decode("8002 0000000e 00000000 00000000", sessions: 1)?.code == .truncated)
    }
}

@Suite("response codes")
struct ResponseCodeTests {
    @Test func formatOneSubjects() {
        let rc = TPMRC(rawValue: 0x98E)
        #expect(rc.base == .authFail)
        #expect(rc.subject == .session(1))
        #expect(rc.decoded == "tpm:session(1):the authorization HMAC check failed and DA counter incremented")
        #expect(TPMRC(rawValue: 0x1D5).subject == .parameter(1))
        #expect(TPMRC(rawValue: 0x1D5).base == .size)
        #expect(TPMRC(rawValue: 0x18B).subject == .handle(1))
        #expect(TPMRC(rawValue: 0x18B).base == .handle)
        #expect(TPMRC.policyFail.with(.session(2)).rawValue == 0xA9D)
        #expect(TPMRC.value.with(.parameter(3)).rawValue == 0x3C4)
    }

    @Test func formatZeroAndWarnings() {
        #expect(TPMRC(rawValue: 0x101).baseName == "TPM_RC_FAILURE")
        #expect(TPMRC(rawValue: 0x902).isWarning)
        #expect(TPMRC(rawValue: 0x902).decoded == "tpm:warn(2.0): out of memory for object contexts")
        #expect(TPMRC(rawValue: 0x100).decoded.hasPrefix("tpm:error(2.0): "))
        #expect(TPMRC(rawValue: 0x0).decoded == "tpm:success")
        #expect(TPMRC(rawValue: 0x8_000A).layer == 8)
    }
}

@Suite("TCTI strings")
struct TCTITests {
    @Test func parses() throws {
        let s = try TCTIConfiguration(parsing: "swtpm:host=127.0.0.1,port=2341")
        #expect(s.kind == .swtpm && s.host == "127.0.0.1" && s.port == 2341)
        #expect(try TCTIConfiguration(parsing: "mssim").port == 2321)
        #expect(try TCTIConfiguration(parsing: "device:/dev/tpm0").path == "/dev/tpm0")
        #expect(try TCTIConfiguration(parsing: "device").path == "/dev/tpmrm0")
        #expect(try TCTIConfiguration(parsing: "swtpm:path=/run/x.sock").path == "/run/x.sock")
        #expect(try TCTIConfiguration(parsing: "libtss2-tcti-mssim.so.0:port=5000").kind == .mssim)
        #expect(try TCTIConfiguration.resolve(nil, environment: ["TPM2TOOLS_TCTI": "swtpm:port=7"]).port == 7)
        #expect(try TCTIConfiguration.resolve(nil, environment: [:]).kind == .device)
    }

    @Test func rejectsWithReasons() {
        for bad in ["tabrmd", "swtpm:port=0", "swtpm:port=x", "swtpm:colour=blue", "mssim:host", ""] {
            let e = #expect(throws: TPMError.self) { try TCTIConfiguration(parsing: bad) }
            #expect(e?.code == .configuration, "\(bad)")
        }
    }
}
