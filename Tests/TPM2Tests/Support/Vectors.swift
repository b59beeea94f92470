import Foundation
import TPM2

/// Loads a hex vector file: hex digits, `#` comments to the end of the line, spaces ignored.
func vector(_ name: String) throws -> [UInt8] {
    guard let url = Bundle.module.url(forResource: "Vectors/\(name)", withExtension: "hex") else {
        throw VectorError(message: "vector \(name).hex is missing")
    }
    let text = try String(contentsOf: url, encoding: .utf8)
    let hex = text.split(separator: "\n").map { line in line.split(separator: "#", maxSplits: 1,
                                                                   omittingEmptySubsequences: false).first ?? "" }.joined()
    guard let bytes = [UInt8](hex: hex) else { throw VectorError(message: "vector \(name).hex has non-hex content") }
    return bytes
}

struct VectorError: Error { var message: String }
