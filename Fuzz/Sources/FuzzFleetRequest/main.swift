import FuzzDriver
import FuzzTargets

/// libFuzzer entry: deploy and update requests, dashboard forms and cookies as the fleet reads them.
@_cdecl("FuzzFleetRequest_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    FuzzDriver.run(argc, argv, FuzzTargets.fleetRequest)
}
