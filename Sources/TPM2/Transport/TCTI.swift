/// A transport configuration in tpm2-tools' TCTI syntax, so operators reuse what they know:
/// `swtpm:host=127.0.0.1,port=2321`, `swtpm:path=/run/swtpm.sock`, `mssim:host=…,port=…`,
/// `device:/dev/tpmrm0`, or the name alone for the defaults. `TPM2TOOLS_TCTI` supplies the
/// string when none is given.
public struct TCTIConfiguration: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable {
        case swtpm
        case mssim
        case device
    }

    public var kind: Kind
    public var host: String = "localhost"
    public var port: Int = 2321
    public var path: String?
    public var timeout: Duration = .seconds(30)

    public init(kind: Kind, host: String = "localhost", port: Int = 2321, path: String? = nil) {
        self.kind = kind; self.host = host; self.port = port; self.path = path
    }

    /// Parses a TCTI string. Errors say which part is wrong and what is accepted.
    public init(parsing text: String) throws(TPMError) {
        let trimmed = text.trimmingWhitespace
        let name: Substring
        let conf: Substring
        if let colon = trimmed.firstIndex(of: ":") {
            name = trimmed[..<colon]
            conf = trimmed[trimmed.index(after: colon)...]
        } else {
            name = Substring(trimmed)
            conf = ""
        }
        let short = name.hasPrefix("libtss2-tcti-") ? name.dropFirst("libtss2-tcti-".count).prefix { $0 != "." } : name
        switch short {
        case "swtpm": kind = .swtpm
        case "mssim": kind = .mssim
        case "device": kind = .device
        case "":
            throw TPMError(.configuration, reason: "empty TCTI; use swtpm:host=H,port=P, mssim:host=H,port=P or device:/dev/tpmrm0")
        default:
            throw TPMError(.configuration, reason: "TCTI \"\(short)\" is not supported; use swtpm, mssim or device")
        }
        if kind == .device {
            path = conf.isEmpty ? "/dev/tpmrm0" : String(conf)
            return
        }
        for item in conf.split(separator: ",", omittingEmptySubsequences: true) {
            let kv = item.split(separator: "=", maxSplits: 1)
            guard kv.count == 2 else {
                throw TPMError(.configuration, reason: "\"\(item)\" in TCTI \"\(text)\" is not key=value (keys: host, port, path)")
            }
            switch kv[0] {
            case "host": host = String(kv[1])
            case "port":
                guard let p = Int(kv[1]), (1...65535).contains(p) else {
                    throw TPMError(.configuration, reason: "port \"\(kv[1])\" in TCTI \"\(text)\" is not 1–65535")
                }
                port = p
            case "path": path = String(kv[1])
            default:
                throw TPMError(.configuration, reason: "unknown key \"\(kv[0])\" in TCTI \"\(text)\" (keys: host, port, path)")
            }
        }
        if kind == .mssim && port == 65535 {
            throw TPMError(.configuration, reason: "mssim needs port+1 for its platform port; \(port) is the last port")
        }
    }

    /// The configuration from `--tcti`, else `TPM2TOOLS_TCTI`, else the local device.
    public static func resolve(_ option: String?, environment: [String: String]) throws(TPMError) -> TCTIConfiguration {
        if let option { return try TCTIConfiguration(parsing: option) }
        if let env = environment["TPM2TOOLS_TCTI"], !env.isEmpty { return try TCTIConfiguration(parsing: env) }
        return TCTIConfiguration(kind: .device, path: "/dev/tpmrm0")
    }

    public var description: String {
        switch kind {
        case .device: "device:\(path ?? "/dev/tpmrm0")"
        case .swtpm, .mssim: path.map { "\(kind.rawValue):path=\($0)" } ?? "\(kind.rawValue):host=\(host),port=\(port)"
        }
    }

    /// Builds the transport.
    public func makeTransport() -> any TPMTransport {
        switch kind {
        case .device:
            return DeviceTransport(path: path ?? "/dev/tpmrm0", timeout: timeout)
        case .swtpm:
            if let path {
                return SwtpmTransport(data: .unix(path: path), control: nil, timeout: timeout)
            }
            return SwtpmTransport(data: .tcp(host: host, port: port), control: .tcp(host: host, port: port + 1), timeout: timeout)
        case .mssim:
            return MssimTransport(command: .tcp(host: host, port: port), platform: .tcp(host: host, port: port + 1), timeout: timeout)
        }
    }
}

extension String {
    var trimmingWhitespace: String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s.removeFirst() }
        while let l = s.last, l.isWhitespace { s.removeLast() }
        return String(s)
    }
}
