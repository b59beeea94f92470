import AttestationAPI
import Crypto
import Foundation
import TPM2

/// Token-signing private keys as the database holds them: sealed with AES-256-GCM under a
/// key-encryption key kept outside the database (`TLAUNCH_KEY`, else the data folder's
/// `token-keys.key`), bound to the key's id so a sealed key cannot be moved to another row.
///
/// Stored form: `sealed:v1:` + base64(nonce ‖ ciphertext ‖ tag). A database dump, a backup or a
/// read-only SQL injection then yields no key that signs tokens.
public struct KeySealer: Sendable {
    let key: SymmetricKey
    static let prefix = "sealed:v1:"

    public init(key: [UInt8]) throws {
        guard key.count == 32 else {
            throw AttestationServiceError(.internal, "the key-encryption key is 32 bytes (64 hex digits); got \(key.count)")
        }
        self.key = SymmetricKey(data: key)
    }

    /// From `TLAUNCH_KEY` (64 hex digits or base64 of 32 bytes); nil when unset.
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws -> KeySealer? {
        guard let text = env["TLAUNCH_KEY"]?.trimmingCharacters(in: .whitespacesAndNewlines), !text.isEmpty else { return nil }
        if text.count == 64, let bytes = [UInt8](hex: text), bytes.count == 32 { return try KeySealer(key: bytes) }
        if let d = Data(base64Encoded: text), d.count == 32 { return try KeySealer(key: [UInt8](d)) }
        throw AttestationServiceError(.internal, "TLAUNCH_KEY must be 32 bytes as 64 hex digits or base64 (e.g. openssl rand -hex 32)")
    }

    public static func isSealed(_ stored: String) -> Bool { stored.hasPrefix(prefix) }

    public func seal(_ pem: String, kid: String) throws -> String {
        let box = try AES.GCM.seal(Data(pem.utf8), using: key, authenticating: Data("tlaunch token key \(kid)".utf8))
        guard let combined = box.combined else { throw AttestationServiceError(.internal, "AES-GCM gave no combined form") }
        return Self.prefix + combined.base64EncodedString()
    }

    /// The PEM of a sealed key; a clear error for another key-encryption key or a damaged row.
    public func open(_ stored: String, kid: String) throws -> String {
        guard Self.isSealed(stored), let data = Data(base64Encoded: String(stored.dropFirst(Self.prefix.count))) else {
            throw AttestationServiceError(.internal, "token-signing key \(kid) is not a sealed key")
        }
        do {
            let box = try AES.GCM.SealedBox(combined: data)
            return String(decoding: try AES.GCM.open(box, using: key, authenticating: Data("tlaunch token key \(kid)".utf8)), as: UTF8.self)
        } catch {
            throw AttestationServiceError(.internal, "token-signing key \(kid) does not open with this key-encryption key: give every "
                                                   + "instance the same TLAUNCH_KEY (or the data folder's token-keys.key) as the one that "
                                                   + "sealed it")
        }
    }
}
