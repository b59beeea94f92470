import FuzzDriver
import FuzzTargets

/// libFuzzer entry: the vTPM's command dispatcher.
@_cdecl("FuzzVTPMCommands_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    FuzzDriver.run(argc, argv, FuzzTargets.vtpmCommands)
}
