import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The one-method path to a TPM: a command's bytes in, the response's bytes out. The same
/// client code talks to the in-process vTPM, swtpm, the Microsoft simulator and `/dev/tpmrm0`.
public protocol TPMTransport: Sendable {
    /// Runs on the caller's executor (no hop off the client actor).
    nonisolated(nonsending) func send(_ command: [UInt8]) async throws(TPMError) -> [UInt8]
    /// Releases the connection; later sends reconnect where the transport can.
    func close() async
}

/// What simulators offer beyond commands: power, NV availability and locality.
public protocol TPMPlatformControl: Sendable {
    /// Powers the TPM on (mssim: power-on and NV-on; swtpm: CMD_INIT). TPM2_Startup is still needed after.
    func powerOn() async throws(TPMError)
    /// Sets the locality of the following commands.
    func setLocality(_ locality: UInt8) async throws(TPMError)
}

/// The largest response accepted from any transport; TPMs answer with at most a few KiB.
let maxResponseSize = 65536

/// Reads a TPM response framed by its own header (tag, responseSize, responseCode).
func readTPMResponse(_ s: DeadlineSocket, deadline: ContinuousClock.Instant) throws(TPMError) -> [UInt8] {
    let header = try s.receive(exactly: 10, deadline: deadline)
    let size = Int(readU32BE(header, 2))
    guard size >= 10, size <= maxResponseSize else {
        throw TPMError(.malformedResponse,
                       reason: "\(s.peer) sent a response header declaring \(size) bytes (allowed: 10 to \(maxResponseSize))")
    }
    return header + (try s.receive(exactly: size - 10, deadline: deadline))
}

/// One connection kept open between exchanges (connected on first use) and dropped after
/// a failed exchange, whose stream position is then unknown.
struct PersistentConnection {
    let address: TPMSocketAddress
    let timeout: Duration
    private(set) var socket: DeadlineSocket?

    init(address: TPMSocketAddress, timeout: Duration) {
        self.address = address
        self.timeout = timeout
    }

    mutating func exchange<R>(_ body: (DeadlineSocket, ContinuousClock.Instant) throws(TPMError) -> R) throws(TPMError) -> R {
        let deadline = ContinuousClock.now + timeout
        let s: DeadlineSocket
        if let existing = socket { s = existing } else {
            s = try address.connect(timeout: timeout)
            socket = s
        }
        do throws(TPMError) {
            return try body(s, deadline)
        } catch {
            s.close()
            socket = nil
            throw error
        }
    }

    mutating func close() {
        socket?.close()
        socket = nil
    }
}

/// Where a socket transport connects.
public enum TPMSocketAddress: Sendable, Hashable, CustomStringConvertible {
    case tcp(host: String, port: Int)
    case unix(path: String)

    public var description: String {
        switch self {
        case .tcp(let h, let p): "\(h):\(p)"
        case .unix(let path): path
        }
    }

    func connect(timeout: Duration) throws(TPMError) -> DeadlineSocket {
        switch self {
        case .tcp(let h, let p): try DeadlineSocket.connect(host: h, port: p, timeout: timeout)
        case .unix(let path): try DeadlineSocket.connect(path: path, timeout: timeout)
        }
    }
}

/// swtpm's socket interface (man swtpm): raw TPM commands on the data channel and the
/// CMD_* protocol of swtpm_ioctls on the control channel (by default the data port + 1).
/// The connection stays open between commands (swtpm serves one client at a time: call
/// ``close()`` to let another client in).
public actor SwtpmTransport: TPMTransport, TPMPlatformControl {
    public nonisolated let data: TPMSocketAddress
    public nonisolated let control: TPMSocketAddress?
    public nonisolated let timeout: Duration
    private var connection: PersistentConnection

    /// swtpm control commands (swtpm_ioctls.h), sent big-endian on the control channel.
    enum ControlCommand: UInt32 {
        case getCapability = 1
        case initialize = 2
        case shutdown = 3
        case setLocality = 5
        case stop = 14
    }

    public init(data: TPMSocketAddress, control: TPMSocketAddress?, timeout: Duration = .seconds(30)) {
        self.data = data
        self.control = control
        self.timeout = timeout
        self.connection = PersistentConnection(address: data, timeout: timeout)
    }

    public func send(_ command: [UInt8]) async throws(TPMError) -> [UInt8] {
        try connection.exchange { (s, deadline) throws(TPMError) in
            try s.sendAll(command, deadline: deadline)
            return try readTPMResponse(s, deadline: deadline)
        }
    }

    public func close() async {
        connection.close()
    }

    /// Sends one control command and returns the payload after its 4-byte result.
    func controlCommand(_ cmd: ControlCommand, payload: [UInt8], responseSize: Int) throws(TPMError) -> [UInt8] {
        guard let control else { throw TPMError(.configuration, reason: "no swtpm control channel configured") }
        let deadline = ContinuousClock.now + timeout
        let s = try control.connect(timeout: timeout)
        defer { s.close() }
        try s.sendAll(be32(cmd.rawValue) + payload, deadline: deadline)
        let resp = try s.receive(exactly: 4 + responseSize, deadline: deadline)
        let result = readU32BE(resp)
        guard result == 0 else {
            throw TPMError(.transport, reason: "swtpm control command \(cmd) failed with result \(hex32(result))")
        }
        return Array(resp[4...])
    }

    public func powerOn() async throws(TPMError) {
        await close()
        _ = try controlCommand(.initialize, payload: be32(0), responseSize: 0)
    }

    public func setLocality(_ locality: UInt8) async throws(TPMError) {
        guard locality <= 4 else { throw TPMError(.invalidArgument, reason: "locality \(locality) is not 0–4") }
        _ = try controlCommand(.setLocality, payload: [locality], responseSize: 0)
    }

    /// Asks swtpm to shut down the TPM (CMD_SHUTDOWN); the process keeps running.
    public func shutdownTPM() async throws(TPMError) {
        await close()
        _ = try controlCommand(.shutdown, payload: [], responseSize: 0)
    }
}

/// The Microsoft TPM simulator protocol (mssim; also IBM's tpm_server and tpm2-tss' mssim
/// TCTI): TPM_SEND_COMMAND framing with a locality on the command port, and a platform port
/// for power and NV signals.
public actor MssimTransport: TPMTransport, TPMPlatformControl {
    public nonisolated let command: TPMSocketAddress
    public nonisolated let platform: TPMSocketAddress
    public nonisolated let timeout: Duration
    private var connection: PersistentConnection
    private var locality: UInt8 = 0

    /// TpmTcpProtocol signal and command codes.
    enum Signal: UInt32 {
        case powerOn = 1
        case powerOff = 2
        case sendCommand = 8
        case nvOn = 11
        case nvOff = 12
        case reset = 17
        case sessionEnd = 20
        case stop = 21
    }

    public init(command: TPMSocketAddress, platform: TPMSocketAddress, timeout: Duration = .seconds(30)) {
        self.command = command
        self.platform = platform
        self.timeout = timeout
        self.connection = PersistentConnection(address: command, timeout: timeout)
    }

    public func send(_ bytes: [UInt8]) async throws(TPMError) -> [UInt8] {
        let locality = self.locality
        return try connection.exchange { (s, deadline) throws(TPMError) in
            try s.sendAll(be32(Signal.sendCommand.rawValue) + [locality] + be32(UInt32(bytes.count)) + bytes, deadline: deadline)
            let lengthBytes = try s.receive(exactly: 4, deadline: deadline)
            let length = Int(readU32BE(lengthBytes))
            guard length >= 10, length <= maxResponseSize else {
                throw TPMError(.malformedResponse, reason: "mssim response length \(length) is out of range")
            }
            let response = try s.receive(exactly: length, deadline: deadline)
            let ack = try s.receive(exactly: 4, deadline: deadline)
            guard readU32BE(ack) == 0 else {
                throw TPMError(.transport, reason: "mssim returned a non-zero trailer \(hex32(readU32BE(ack)))")
            }
            return response
        }
    }

    public func close() async {
        try? connection.socket?.sendAll(be32(Signal.sessionEnd.rawValue), deadline: ContinuousClock.now + .seconds(1))
        connection.close()
    }

    func platformSignal(_ signal: Signal) throws(TPMError) {
        let deadline = ContinuousClock.now + timeout
        let s = try platform.connect(timeout: timeout)
        defer {
            try? s.sendAll(be32(Signal.sessionEnd.rawValue), deadline: ContinuousClock.now + .seconds(1))
            s.close()
        }
        try s.sendAll(be32(signal.rawValue), deadline: deadline)
        let r = try s.receive(exactly: 4, deadline: deadline)
        guard readU32BE(r) == 0 else {
            throw TPMError(.transport, reason: "mssim platform signal \(signal) failed: \(hex32(readU32BE(r)))")
        }
    }

    public func powerOn() async throws(TPMError) {
        try platformSignal(.powerOn)
        try platformSignal(.nvOn)
    }

    public func powerOff() async throws(TPMError) {
        try platformSignal(.powerOff)
    }

    public func setLocality(_ locality: UInt8) async throws(TPMError) {
        guard locality <= 4 else { throw TPMError(.invalidArgument, reason: "locality \(locality) is not 0–4") }
        self.locality = locality
    }
}

/// A Linux TPM character device (`/dev/tpmrm0` with the kernel's resource manager, or `/dev/tpm0`):
/// write the whole command, read the whole response.
public actor DeviceTransport: TPMTransport {
    public nonisolated let path: String
    public nonisolated let timeout: Duration
    private var device: DeadlineSocket?

    public init(path: String = "/dev/tpmrm0", timeout: Duration = .seconds(120)) {
        self.path = path
        self.timeout = timeout
    }

    public func send(_ command: [UInt8]) async throws(TPMError) -> [UInt8] {
        let deadline = ContinuousClock.now + timeout
        let d: DeadlineSocket
        if let existing = device { d = existing } else {
            let fd = open(path, O_RDWR | O_CLOEXEC)
            guard fd >= 0 else {
                let why = errnoString()
                throw TPMError(.transport, reason: "cannot open TPM device \(path): \(why)" +
                        (errno == ENOENT
                            ? " (no TPM here? use --tcti swtpm:… or mssim:…)"
                            : errno == EACCES ? " (run as root or join the tss group)" : ""))
            }
            d = DeadlineSocket.adopt(fd: fd, peer: path)
            device = d
        }
        do throws(TPMError) {
            try d.sendAll(command, deadline: deadline)
            let r = try d.receiveMessage(max: maxResponseSize, deadline: deadline, zeroIsPending: true)
            guard r.count >= 10, Int(readU32BE(r, 2)) == r.count else {
                throw TPMError(.malformedResponse, reason: "\(path) returned \(r.count) bytes that are not one whole response")
            }
            return r
        } catch {
            d.close()
            device = nil
            throw error
        }
    }

    public func close() async {
        device?.close()
        device = nil
    }
}

/// Something that executes TPM commands in this process (the vTPM engine).
public protocol TPMCommandExecutor: Sendable {
    nonisolated(nonsending) func execute(_ command: [UInt8], locality: UInt8) async -> [UInt8]
}

/// A transport to a TPM in this process: no sockets, no copies beyond the command itself, and
/// no hop between executors.
public final class InProcessTransport: TPMTransport, TPMPlatformControl {
    public let executor: any TPMCommandExecutor
    private let locality = Mutex<UInt8>(0)
    public init(_ executor: any TPMCommandExecutor) { self.executor = executor }
    nonisolated(nonsending) public func send(_ command: [UInt8]) async throws(TPMError) -> [UInt8] {
        await executor.execute(command, locality: locality.withLock { $0 })
    }
    public func close() async {}
    public func powerOn() async throws(TPMError) {}
    public func setLocality(_ locality: UInt8) async throws(TPMError) { self.locality.withLock { $0 = locality } }
}
