/// The one libFuzzer driver every fuzz target runs: a target names its check (the invariants an
/// input broke, as `*Fuzzing` functions in the libraries report them) and hands its entry point
/// to `run`; an input that breaks one stops the campaign with what it broke.
public enum FuzzDriver {
    /// The running target's check (set once, before libFuzzer calls in).
    nonisolated(unsafe) static var check: ([UInt8]) -> [String] = { _ in [] }

    /// libFuzzer's driver over `check`, with the executable's arguments.
    public static func run(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
                           _ check: @escaping ([UInt8]) -> [String]) -> Int32 {
        Self.check = check
        var c = argc
        var v = argv
        return llvmFuzzerRunDriver(&c, &v, testOneInput)
    }
}

/// libFuzzer's entry for one input.
@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let violations = FuzzDriver.check(Array(UnsafeBufferPointer(start: data, count: size)))
    if !violations.isEmpty { fatalError(violations.joined(separator: "; ")) }
    return 0
}

@_silgen_name("LLVMFuzzerRunDriver")
func llvmFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> Int32
) -> Int32
