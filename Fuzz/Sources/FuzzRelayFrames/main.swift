import FuzzDriver
import FuzzTargets

/// libFuzzer entry: what a guest writes to its relay port, as the host reads it.
@_cdecl("FuzzRelayFrames_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    FuzzDriver.run(argc, argv, FuzzTargets.relayFrames)
}
