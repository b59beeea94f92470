import FuzzDriver
import FuzzTargets

/// libFuzzer entry: the EventLog parser and everything built on it.
@_cdecl("FuzzEventLog_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    FuzzDriver.run(argc, argv, FuzzTargets.eventLog)
}
