import FuzzDriver
import FuzzTargets

/// libFuzzer entry: mutation programs over a passing attestation (nothing but the signed boot may pass).
@_cdecl("FuzzEvidenceMutation_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    FuzzDriver.run(argc, argv, FuzzTargets.evidenceMutation)
}
