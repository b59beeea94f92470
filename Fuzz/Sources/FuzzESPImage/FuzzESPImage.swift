import FuzzDriver
import FuzzTargets

/// libFuzzer entry: the virtual firmware's espImage parsing.
@_cdecl("FuzzESPImage_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    FuzzDriver.run(argc, argv, FuzzTargets.espImage)
}
