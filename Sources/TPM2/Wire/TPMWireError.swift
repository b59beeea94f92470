/// The one error type of the TPM 2.0 wire layer: a stable code, where it happened
/// (byte offset and the structure/field path), and a reason a person can act on.
///
/// Decoding untrusted bytes never traps: every failure becomes one of these.
public struct TPMWireError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Stable, open set of failure kinds.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// Fewer bytes remain than the field needs.
        public static let truncated = Code(rawValue: "truncated")
        /// A TPM2B size is above the limit the specification sets for that buffer.
        public static let sizeExceedsLimit = Code(rawValue: "size-exceeds-limit")
        /// A TPML count is above the limit the specification sets for that list.
        public static let countExceedsLimit = Code(rawValue: "count-exceeds-limit")
        /// A union selector (an algorithm, structure tag or capability) that selects no known member.
        public static let unknownSelector = Code(rawValue: "unknown-selector")
        /// A value outside its interface type's allowed set (e.g. TPMI_YES_NO = 2).
        public static let invalidValue = Code(rawValue: "invalid-value")
        /// Bytes left after a complete structure.
        public static let trailingBytes = Code(rawValue: "trailing-bytes")
        /// A sized structure's contents did not fill exactly its declared size.
        public static let sizeMismatch = Code(rawValue: "size-mismatch")
        /// When encoding: a union's value does not match its selector.
        public static let selectorMismatch = Code(rawValue: "selector-mismatch")
        /// A sized structure that must not be empty has size zero.
        public static let emptyStructure = Code(rawValue: "empty-structure")
    }

    /// One step of the path to the failing field: the structure (spec name) and its field.
    public struct Step: Hashable, Sendable, CustomStringConvertible {
        public var structure: String
        public var field: String
        public var description: String { field.isEmpty ? structure : "\(structure).\(field)" }
    }

    public var code: Code
    /// Byte offset into the decoded input (or into the output, when encoding) where the failing field starts.
    public var offset: Int
    /// Outermost structure first.
    public var path: [Step]
    public var reason: String
    /// Field named by the innermost caller that has not yet been attributed to a structure.
    @usableFromInline var pendingField: String?

    @inlinable
    public init(_ code: Code, offset: Int, field: String? = nil, reason: String) {
        self.code = code
        self.offset = offset
        self.path = []
        self.reason = reason
        self.pendingField = field
    }

    /// The field named by the outermost caller when that caller was not itself a structure —
    /// e.g. the parameter of a command's parameter area that failed to decode.
    public var outerField: String? { pendingField }

    /// The outermost structure named by the path (e.g. `TPMS_ATTEST`).
    public var structure: String? { path.first?.structure }
    /// The innermost field (e.g. `size` of a `TPM2B_DIGEST`).
    public var field: String? { path.last?.field ?? pendingField }

    /// Attributes the pending field to `structure` and makes it the outermost step.
    @usableFromInline mutating func qualify(_ structure: String) {
        path.insert(Step(structure: structure, field: pendingField ?? ""), at: 0)
        pendingField = nil
    }

    public var description: String {
        var where_ = path.map(\.description).joined(separator: " > ")
        if let pendingField { where_ += where_.isEmpty ? pendingField : " > \(pendingField)" }
        if where_.isEmpty { where_ = "(top level)" }
        return "TPM wire error [\(code)] at byte \(offset) in \(where_): \(reason)"
    }
}
