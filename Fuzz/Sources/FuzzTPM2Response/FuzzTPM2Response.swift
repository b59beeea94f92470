import FuzzDriver
import FuzzTargets

/// libFuzzer entry: decoding of TPM responses and the structures they carry.
@_cdecl("FuzzTPM2Response_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    FuzzDriver.run(argc, argv, FuzzTargets.tpm2Response)
}
