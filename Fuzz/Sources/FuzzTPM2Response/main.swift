import TPM2

/// libFuzzer entry: decoding of TPM responses and the structures they carry.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let violations = TPMFuzzing.responseDecoding(bytes)
    if !violations.isEmpty { fatalError(violations.joined(separator: "; ")) }
    return 0
}
