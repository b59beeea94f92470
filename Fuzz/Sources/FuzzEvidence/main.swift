import FuzzDriver
import FuzzTargets

/// libFuzzer entry: evidence and policy documents as the attestation service decodes them.
@_cdecl("FuzzEvidence_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    FuzzDriver.run(argc, argv, FuzzTargets.evidence)
}
