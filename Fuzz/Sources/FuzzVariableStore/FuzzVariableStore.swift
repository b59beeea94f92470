import FuzzDriver
import FuzzTargets

/// libFuzzer entry: VariableStore parsing and what is built on it.
@_cdecl("FuzzVariableStore_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    FuzzDriver.run(argc, argv, FuzzTargets.variableStore)
}
