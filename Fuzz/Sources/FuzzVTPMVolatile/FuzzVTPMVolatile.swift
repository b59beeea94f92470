import FuzzDriver
import FuzzTargets

/// libFuzzer entry: the vTPM's volatile state blobs (save, restore, migration).
@_cdecl("FuzzVTPMVolatile_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    FuzzDriver.run(argc, argv, FuzzTargets.vtpmVolatile)
}
