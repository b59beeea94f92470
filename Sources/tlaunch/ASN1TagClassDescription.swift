import SwiftASN1

/// swift-certificates builds every RSA public key through `_RSA.Signing.PublicKey(derRepresentation:)`, which
/// first tries the PKCS#1 bytes as a SubjectPublicKeyInfo; that attempt fails by design, and its error text
/// interpolates an `ASN1Identifier`, whose tag class has no description of its own — so the standard library
/// prints it by reflection (`Mirror`). In a fresh `tlaunch` process that reflection was 4.6 M of the 20 M
/// instructions `secureboot verify` spends outside hashing (callgrind), and it recurs for every RSA
/// certificate parsed. The words are the ones reflection prints (the case names), so no message changes.
/// Declared in the executable, not in a library, so no package that links ours inherits the conformance.
extension ASN1Identifier.TagClass: @retroactive CustomStringConvertible {
    public var description: String {
        switch self {
        case .universal: "universal"
        case .application: "application"
        case .contextSpecific: "contextSpecific"
        case .private: "private"
        }
    }
}
