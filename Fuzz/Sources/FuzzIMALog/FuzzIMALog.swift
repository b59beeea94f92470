import FuzzDriver
import FuzzTargets

/// libFuzzer entry: the IMALog parser and everything built on it.
@_cdecl("FuzzIMALog_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    FuzzDriver.run(argc, argv, FuzzTargets.imaLog)
}
