/// Markup the dashboard builds, escaping by default. A literal's own text is markup (the
/// template); what is interpolated is either a fragment built the same way (`\(fragment)`, as
/// it is), a number, or text, which is always escaped for element content and quoted attribute
/// values (`& < > " '`): `\(text: vm.name)`. A `String` cannot be interpolated bare — the
/// compiler refuses it — so text is never inserted unescaped by forgetting, only through an
/// `HTML(trusted:)` that says so (this program's own constants), and markup is never escaped
/// twice (a literal inside a fragment is always markup, never a string taken for text).
struct HTML: Sendable, Hashable, ExpressibleByStringInterpolation, CustomStringConvertible {
    private(set) var markup: String

    /// Markup from this program's own constants (a stylesheet, a script tag): never from input.
    init(trusted markup: String) { self.markup = markup }
    init(stringLiteral markup: String) { self.markup = markup }
    init(stringInterpolation: Interpolation) { markup = stringInterpolation.markup }
    var description: String { markup }

    struct Interpolation: StringInterpolationProtocol {
        var markup = ""
        init(literalCapacity: Int, interpolationCount: Int) { markup.reserveCapacity(literalCapacity + 16 * interpolationCount) }
        mutating func appendLiteral(_ literal: String) { markup += literal }
        /// Text: escaped.
        mutating func appendInterpolation(text: String) { HTML.escape(text, into: &markup) }
        /// A number.
        mutating func appendInterpolation<N: BinaryInteger>(_ number: N) { markup += String(number) }
        /// A fragment: as it is (it escaped its own text).
        mutating func appendInterpolation(_ fragment: HTML) { markup += fragment.markup }
        /// A fragment that may be absent: nothing when it is.
        mutating func appendInterpolation(_ fragment: HTML?) { markup += fragment?.markup ?? "" }
    }

    static func + (a: HTML, b: HTML) -> HTML { HTML(trusted: a.markup + b.markup) }
    static func += (a: inout HTML, b: HTML) { a.markup += b.markup }

    static func escape(_ s: String, into out: inout String) {
        for c in s.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(c)
            }
        }
    }

    static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        escape(s, into: &out)
        return out
    }
}

extension Sequence where Element == HTML {
    func joined(separator: HTML = "") -> HTML {
        var out = HTML(trusted: "")
        var first = true
        for h in self {
            if !first { out += separator }
            out += h
            first = false
        }
        return out
    }
}
