/// Entry points for fuzzing the decoders of untrusted bytes (responses from a TPM, attestation
/// evidence). The libFuzzer targets in `Fuzz/` call these, and the test suite replays the
/// saved corpora through them. Each returns the invariant violations it found (none expected);
/// a decoder that traps is a violation the fuzzer reports by itself.
public enum TPMFuzzing {
    /// Decoding every response type and structure a client receives. The first byte picks the
    /// decoder, the rest is its input. Invariants: decoding never traps, and whatever decodes
    /// re-encodes to exactly the bytes it came from.
    public static func responseDecoding(_ data: [UInt8]) -> [String] {
        guard let selector = data.first else { return [] }
        let input = Array(data.dropFirst())
        var violations: [String] = []
        func structure<T: TPMStructure>(_: T.Type) {
            guard let v = try? T(tpmBytes: input) else { return }
            do {
                let again = try v.tpmBytes()
                if again != input { violations.append("\(T.tpmName): re-encoding differs from the decoded bytes") }
            } catch {
                violations.append("\(T.tpmName): a decoded value does not encode: \(error)")
            }
        }
        func response<C: TPMCommand>(_: C.Type) {
            for sessions in 0...3 {
                guard let packet = try? TPMResponsePacket.decode(input, handleCount: C.Response.handleCount,
                                                                 sessionCount: sessions) else { continue }
                if let again = try? packet.encode(), packet.responseCode.isSuccess, packet.tag != .rspCommand, again != input {
                    violations.append("\(C.code) response packet: re-encoding differs")
                }
                guard packet.responseCode.isSuccess, let typed = try? C.Response(handles: packet.handles, parameters: packet.parameters)
                else { continue }
                if let params = try? typed.parameterBytes(), params != packet.parameters {
                    violations.append("\(C.code) response parameters: re-encoding differs")
                }
            }
        }
        switch selector % 24 {
        case 0: structure(TPMSAttest.self)
        case 1: structure(TPMTPublic.self)
        case 2: structure(TPMSCapabilityData.self)
        case 3: structure(TPMTSignature.self)
        case 4: structure(TPMSCreationData.self)
        case 5: structure(TPMSNVPublic.self)
        case 6: structure(TPMSContext.self)
        case 7: structure(TPMTSensitive.self)
        case 8: structure(TPMSIDObject.self)
        case 9: response(TPM2GetCapability.self)
        case 10: response(TPM2PCRRead.self)
        case 11: response(TPM2CreatePrimary.self)
        case 12: response(TPM2Create.self)
        case 13: response(TPM2Quote.self)
        case 14: response(TPM2StartAuthSession.self)
        case 15: response(TPM2ReadPublic.self)
        case 16: response(TPM2NVReadPublic.self)
        case 17: response(TPM2PCREvent.self)
        case 18: response(TPM2PolicySecret.self)
        case 19: response(TPM2ContextSave.self)
        case 20: response(TPM2Sign.self)
        case 21: response(TPM2ReadClock.self)
        case 22: response(TPM2NVRead.self)
        default:
            _ = try? TPMCommandPacket.decode(input) { _ in Int(selector % 3) }
        }
        return violations
    }
}
