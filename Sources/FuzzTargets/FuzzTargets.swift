import Attestation
import AttestationAPI
import FleetCore
import MeasuredBoot
import SecureBoot
import TPM2
import VirtualFirmware
import VirtualTPM

/// The checks the libFuzzer package (`Fuzz/`, built apart with `-sanitize=fuzzer`) runs, one per
/// fuzz target: each takes the input's bytes and returns what it found wrong (empty: nothing).
/// The fuzz package reaches the modules through this one product, so the libraries that are the
/// platform's own (the virtual firmware, the verifier, the fleet's rules) are not products for
/// other packages to depend on. The test suite replays the committed corpora through the same
/// functions.
public enum FuzzTargets {
    public typealias Check = @Sendable ([UInt8]) -> [String]
    public static let tpm2Response: Check = { TPMFuzzing.responseDecoding($0) }
    public static let vtpmCommands: Check = { VTPMFuzzing.commands($0) }
    public static let vtpmVolatile: Check = { VTPMFuzzing.volatileState($0) }
    public static let peImage: Check = { SecureBootFuzzing.peImage($0) }
    public static let signatureLists: Check = { SecureBootFuzzing.signatureLists($0) }
    public static let variableStore: Check = { SecureBootFuzzing.variableStore($0) }
    public static let espImage: Check = { VirtualFirmwareFuzzing.espImage($0) }
    public static let grubConfig: Check = { VirtualFirmwareFuzzing.grubConfig($0) }
    public static let eventLog: Check = { MeasuredBootFuzzing.eventLog($0) }
    public static let imaLog: Check = { MeasuredBootFuzzing.imaLog($0) }
    public static let evidence: Check = { AttestationFuzzing.evidence($0) }
    public static let evidenceMutation: Check = { AttestationFuzzing.evidenceMutation($0) }
    public static let fleetRequest: Check = { FleetFuzzing.request($0) }
    public static let relayFrames: Check = { RelayFuzzing.frames($0) }

    /// Each check by the name `Fuzz/run.sh` takes and its corpus folder (`Fuzz/corpus/NAME`) has.
    public static let byName: [String: Check] = [
        "tpm2-response": tpm2Response, "vtpm-commands": vtpmCommands, "vtpm-volatile": vtpmVolatile,
        "pe": peImage, "esl": signatureLists, "varstore": variableStore, "esp": espImage, "grubcfg": grubConfig,
        "eventlog": eventLog, "ima": imaLog, "evidence": evidence, "evidence-mutation": evidenceMutation,
        "fleet-request": fleetRequest, "relay-frames": relayFrames,
    ]
}
