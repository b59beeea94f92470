/// The part of grub's script language that boot configurations use: commands with quoting
/// and `$var`/`${var}` expansion, `;` and newlines, `if/elif/else/fi` with `!`, `[ … ]` tests,
/// assignments, `function`, `menuentry` and `submenu` blocks (kept as their source text, as grub
/// measures them). Loops are refused with a clear error rather than guessed.
enum GrubScript {
    indirect enum Node: Sendable {
        case command(words: [Word], negated: Bool, line: Int)
        case conditional(branches: [(condition: [Node], body: [Node])], otherwise: [Node]?)
        case function(name: String, body: String, line: Int)
        /// menuentry or submenu: its arguments and its block's text.
        case menu(keyword: String, words: [Word], body: String, line: Int)
    }

    /// A word: literal and variable parts, kept apart so that expansion happens when run; or a
    /// `{ … }` block's source text.
    struct Word: Sendable {
        enum Part: Sendable { case literal(String), variable(String), block(String) }
        var parts: [Part]
        /// Whether any of it was quoted (an unquoted word that expands to nothing is dropped).
        var quoted = false
        var block: String? {
            if parts.count == 1, case .block(let b) = parts[0] { return b }
            return nil
        }
    }

    struct ParseError: Error { var line: Int; var reason: String; var unsupported = false }

    static func parse(_ text: String) throws(ParseError) -> [Node] {
        var lines: [(Int, [Word])] = []
        try tokenize(text, into: &lines)
        var i = 0
        return try block(lines, &i, until: [])
    }

    static func tokenize(_ text: String, into out: inout [(Int, [Word])]) throws(ParseError) {
        let chars = Array(text)
        var i = 0, line = 1
        var words: [Word] = []
        var parts: [Word.Part] = []
        var literal = ""
        var inWord = false
        var quoted = false
        func endWord() {
            if !literal.isEmpty { parts.append(.literal(literal)); literal = "" }
            if inWord { words.append(Word(parts: parts, quoted: quoted)) }
            parts = []; inWord = false; quoted = false
        }
        func endCommand() {
            endWord()
            if !words.isEmpty { out.append((line, words)) }
            words = []
        }
        func variable(_ j: inout Int) -> String? {
            // at '$'
            var k = j + 1
            if k < chars.count, chars[k] == "{" {
                var name = ""
                k += 1
                while k < chars.count, chars[k] != "}" { name.append(chars[k]); k += 1 }
                guard k < chars.count else { return nil }
                j = k + 1
                return name
            }
            var name = ""
            while k < chars.count, chars[k].isLetter || chars[k].isNumber || chars[k] == "_" { name.append(chars[k]); k += 1 }
            guard !name.isEmpty else { return nil }
            j = k
            return name
        }
        while i < chars.count {
            let c = chars[i]
            switch c {
            case "#" where !inWord:
                while i < chars.count, chars[i] != "\n" { i += 1 }
            case "\n", ";":
                endCommand()
                if c == "\n" { line += 1 }
                i += 1
            case " ", "\t", "\r":
                endWord(); i += 1
            case "\\":
                inWord = true
                if i + 1 < chars.count {
                    if chars[i + 1] == "\n" { line += 1 } else { literal.append(chars[i + 1]) }
                }
                i += 2
            case "'":
                inWord = true
                quoted = true
                i += 1
                while i < chars.count, chars[i] != "'" { if chars[i] == "\n" { line += 1 }; literal.append(chars[i]); i += 1 }
                guard i < chars.count else { throw ParseError(line: line, reason: "unterminated single quote") }
                i += 1
            case "\"":
                inWord = true
                quoted = true
                i += 1
                while i < chars.count, chars[i] != "\"" {
                    if chars[i] == "$", let name = variable(&i) {
                        if !literal.isEmpty { parts.append(.literal(literal)); literal = "" }
                        parts.append(.variable(name))
                        continue
                    }
                    if chars[i] == "\\", i + 1 < chars.count, "\"$\\".contains(chars[i + 1]) {
                        literal.append(chars[i + 1]); i += 2; continue
                    }
                    if chars[i] == "\n" { line += 1 }
                    literal.append(chars[i]); i += 1
                }
                guard i < chars.count else { throw ParseError(line: line, reason: "unterminated double quote") }
                i += 1
            case "$":
                inWord = true
                if let name = variable(&i) {
                    if !literal.isEmpty { parts.append(.literal(literal)); literal = "" }
                    parts.append(.variable(name))
                } else {
                    literal.append(c); i += 1
                }
            case "{" where !inWord:
                // A block: its source text up to the matching brace (quotes and nesting respected).
                var depth = 1, j = i + 1
                var quote: Character?
                while j < chars.count {
                    let ch = chars[j]
                    if let q = quote {
                        if ch == q { quote = nil } else if ch == "\\" && q == "\"" { j += 1 }
                    } else if ch == "'" || ch == "\"" {
                        quote = ch
                    } else if ch == "\\" {
                        j += 1
                    } else if ch == "{" {
                        depth += 1
                    } else if ch == "}" {
                        depth -= 1
                        if depth == 0 { break }
                    }
                    j += 1
                }
                guard j < chars.count else { throw ParseError(line: line, reason: "{ without a matching }") }
                let body = String(chars[(i + 1)..<j])
                endWord()
                words.append(Word(parts: [.block(body)]))
                line += body.reduce(0) { $0 + ($1 == "\n" ? 1 : 0) }
                i = j + 1
            case "}" where !inWord:
                throw ParseError(line: line, reason: "} without a matching {")
            default:
                inWord = true
                literal.append(c); i += 1
            }
        }
        endCommand()
    }

    static func keyword(_ w: Word) -> String? {
        if w.parts.count == 1, case .literal(let s) = w.parts[0] { return s }
        return nil
    }

    static func block(_ lines: [(Int, [Word])], _ i: inout Int, until: Set<String>) throws(ParseError) -> [Node] {
        var nodes: [Node] = []
        while i < lines.count {
            var (line, words) = lines[i]
            let first = keyword(words[0]) ?? ""
            if until.contains(first) { return nodes }
            i += 1
            switch first {
            case "if":
                var branches: [(condition: [Node], body: [Node])] = []
                var otherwise: [Node]?
                words.removeFirst()
                var pending = words
                var current = "if"
                while true {
                    // the condition: the rest of this line, then lines up to "then"
                    var cond: [Node] = []
                    if !pending.isEmpty { cond.append(command(pending, line)) }
                    cond += try block(lines, &i, until: ["then"])
                    guard i < lines.count else { throw ParseError(line: line, reason: "\(current) without then") }
                    var rest = lines[i].1; line = lines[i].0
                    rest.removeFirst()
                    i += 1
                    var body: [Node] = []
                    if !rest.isEmpty { body += try inline(rest, line) }
                    body += try block(lines, &i, until: ["elif", "else", "fi"])
                    branches.append((cond, body))
                    guard i < lines.count, let k = keyword(lines[i].1[0]) else { throw ParseError(line: line, reason: "if without fi") }
                    var after = lines[i].1; after.removeFirst()
                    line = lines[i].0
                    i += 1
                    if k == "elif" { pending = after; current = "elif"; continue }
                    if k == "else" {
                        var e: [Node] = []
                        if !after.isEmpty { e += try inline(after, line) }
                        e += try block(lines, &i, until: ["fi"])
                        guard i < lines.count else { throw ParseError(line: line, reason: "else without fi") }
                        i += 1
                        otherwise = e
                    }
                    break
                }
                nodes.append(.conditional(branches: branches, otherwise: otherwise))
            case "then", "elif", "else", "fi":
                throw ParseError(line: line, reason: "\(first) without if")
            case "function":
                guard words.count == 3, let name = keyword(words[1]), let body = words[2].block else {
                    throw ParseError(line: line, reason: "function needs a name and a { … } block")
                }
                nodes.append(.function(name: name, body: body, line: line))
            case "menuentry", "submenu":
                guard let body = words.last?.block, words.count >= 3 else {
                    throw ParseError(line: line, reason: "\(first) needs a title and a { … } block")
                }
                nodes.append(.menu(keyword: first, words: Array(words.dropFirst().dropLast()), body: body, line: line))
            case "while", "until", "for":
                throw ParseError(line: line, reason: "\(first) loops are not modelled; write the boot commands without loops",
                                 unsupported: true)
            default:
                nodes.append(command(words, line))
            }
        }
        return nodes
    }

    static func inline(_ words: [Word], _ line: Int) throws(ParseError) -> [Node] {
        if let k = keyword(words[0]), ["if", "while", "for", "menuentry"].contains(k) {
            throw ParseError(line: line, reason: "\(k) after then/else on the same line is not modelled", unsupported: true)
        }
        return [command(words, line)]
    }

    static func command(_ words: [Word], _ line: Int) -> Node {
        if let k = keyword(words[0]), k == "!", words.count > 1 {
            return .command(words: Array(words.dropFirst()), negated: true, line: line)
        }
        return .command(words: words, negated: false, line: line)
    }
}
