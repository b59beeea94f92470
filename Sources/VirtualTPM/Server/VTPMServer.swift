#if canImport(Glibc)
import Glibc
#endif
import Crypto
import Foundation
import Synchronization
import TPM2

/// Serves a ``VirtualTPM`` over swtpm's socket interface (data channel and control channel,
/// as tpm2-tools' `swtpm:` TCTI and QEMU's `-tpmdev emulator` use them) or over the Microsoft
/// simulator protocol (`mssim:`: command port and platform port).
public final class VTPMServer: Sendable {
    public enum WireProtocol: String, Sendable { case swtpm, mssim }

    public struct Options: Sendable {
        /// The data channel's listening endpoint; nil: the client passes the data channel's socket
        /// over the control channel (CMD_SET_DATAFD), as QEMU does when libvirt starts swtpm.
        public var data: VTPMEndpoint?
        /// swtpm's control channel, or mssim's platform port.
        public var control: VTPMEndpoint?
        /// Permissions of UNIX sockets created (swtpm's `mode=`), e.g. 0o600; nil: the umask decides.
        public var socketMode: mode_t?
        /// swtpm's `--migration-key`: state blobs leave sealed with it (AES-256-GCM, flagged
        /// PTM_STATE_FLAG_ENCRYPTED) and sealed blobs are opened with it when they arrive.
        public var migrationKey: [UInt8]?
        public var wireProtocol: WireProtocol = .swtpm
        /// The TPM is initialized without waiting for CMD_INIT / power-on.
        public var notNeedInit = false
        /// TPM2_Startup(CLEAR) after each initialization.
        public var startupClear = false
        /// Stop when the data channel's client — the VM's QEMU — disconnects (swtpm `--terminate`:
        /// clients of the control channel alone, such as swtpm_ioctl, come and go without ending it).
        public var terminateOnDataClose = false
        /// Called with each command the TPM executes and its response (a trace, as swtpm's
        /// `--log level=` gives).
        public var trace: (@Sendable (_ command: [UInt8], _ response: [UInt8]) -> Void)?
        public init(data: VTPMEndpoint?, control: VTPMEndpoint?) { self.data = data; self.control = control }
    }

    struct Shared {
        var initialized = false
        var locality: UInt8 = 0
        var established = false
        var terminated = false
        var hashing: [UInt8]?
        var listeners: [Int32] = []
        var started = false
        var connections: Set<Int32> = []
        /// A volatile state set by CMD_SET_STATEBLOB (a restore or an incoming migration): the
        /// next CMD_INIT resumes from it instead of resetting the TPM.
        var pendingVolatile: [UInt8]?
    }

    public let tpm: VirtualTPM
    public let options: Options
    /// The endpoints actually bound (port 0 becomes the port the kernel chose).
    public let dataEndpoint: VTPMEndpoint?
    public let controlEndpoint: VTPMEndpoint?
    private let shared = Mutex(Shared())
    private let done = DispatchSemaphore(value: 0)
    /// The listening sockets, data channel's then control channel's (or mssim's command then platform port).
    private let listenerRoles: (data: Int32?, control: Int32?)
    static let bufferSize: UInt32 = 4096

    /// Sockets bound and listening before the TPM behind them is ready: clients (libvirt waits
    /// only a few seconds for swtpm's socket to appear) may connect at once; their commands wait
    /// in the backlog until the server starts.
    public struct Listeners: ~Copyable {
        let bound: [(fd: Int32, endpoint: VTPMEndpoint)]
        /// The server's options (those that bind — endpoints, socket mode — are used already).
        public var options: Options
        fileprivate(set) var handedOver = false

        public init(options: Options) throws(VTPMError) {
            guard options.data != nil || options.control != nil else {
                throw VTPMError(.option, "a vTPM server needs a data channel, a control channel, or both")
            }
            guard options.data != nil || options.wireProtocol == .swtpm else {
                throw VTPMError(.option, "the mssim protocol needs its command port (the data channel)")
            }
            var bound: [(fd: Int32, endpoint: VTPMEndpoint)] = []
            do throws(VTPMError) {
                for e in [options.data, options.control] {
                    guard let e else { continue }
                    let l = try Sock.listen(e)
                    bound.append(l)
                    if case .unix(let path) = e, let mode = options.socketMode, chmod(path, mode) != 0 {
                        throw VTPMError(.io, "cannot set mode \(String(mode, radix: 8)) on \(path): \(String(cString: strerror(errno)))")
                    }
                }
            } catch {
                for l in bound { close(l.fd) }
                throw error
            }
            self.bound = bound
            self.options = options
        }

        deinit {
            guard !handedOver else { return }
            for l in bound { close(l.fd) }
            for l in bound { if case .unix(let p) = l.endpoint { unlink(p) } }
        }
    }

    public convenience init(tpm: VirtualTPM, options: Options) throws(VTPMError) {
        self.init(tpm: tpm, listening: try Listeners(options: options))
    }

    /// A server on sockets already listening (``Listeners``), with their options.
    public init(tpm: VirtualTPM, listening: consuming Listeners) {
        let options = listening.options, bound = listening.bound
        listening.handedOver = true
        self.tpm = tpm
        self.options = options
        let hasData = options.data != nil
        dataEndpoint = hasData ? bound[0].endpoint : nil
        controlEndpoint = options.control != nil ? bound[hasData ? 1 : 0].endpoint : nil
        listenerRoles = (hasData ? bound[0].fd : nil, options.control != nil ? bound[hasData ? 1 : 0].fd : nil)
        shared.withLock { $0.listeners = bound.map(\.fd) }
        if options.notNeedInit { initialize() }
    }

    /// Starts accepting connections on background threads.
    public func start() {
        let started = shared.withLock { s -> Bool in
            s.started = !s.terminated
            return s.started
        }
        guard started else { return }
        if let data = listenerRoles.data {
            accept(on: data) { [self] fd in
                if options.wireProtocol == .mssim { serveMssimCommands(fd) } else { serveData(fd) }
                if options.terminateOnDataClose { terminate() }
            }
        }
        if let control = listenerRoles.control {
            accept(on: control) { [self] fd in
                options.wireProtocol == .mssim ? serveMssimPlatform(fd) : serveControl(fd)
            }
        }
    }

    /// Blocks until the server terminates (CMD_SHUTDOWN/CMD_STOP…, `--terminate`, or ``terminate()``).
    public func wait() {
        done.wait()
        done.signal()
    }

    public func terminate() {
        // Shut the sockets down (waking their threads) but leave closing to the thread that owns
        // each one: a descriptor closed here while its thread still uses the number could be
        // reused by another socket or file of this process, which that thread would then read,
        // write or close.
        let first = shared.withLock { s -> Bool in
            let first = !s.terminated
            s.terminated = true
            for fd in s.listeners + Array(s.connections) { shutdown(fd, Int32(SHUT_RDWR)) }
            if !s.started {
                // No accept thread owns the listeners: close them here.
                for fd in s.listeners { close(fd) }
                s.listeners = []
            }
            return first
        }
        if case .unix(let p)? = dataEndpoint { unlink(p) }
        if case .unix(let p)? = controlEndpoint { unlink(p) }
        if first { done.signal() }
    }

    var isTerminated: Bool { shared.withLock { $0.terminated } }

    /// Accepts on `listener`, a thread per connection.
    private func accept(on listener: Int32, _ serve: @escaping @Sendable (Int32) -> Void) {
        Thread.detachNewThread { [self] in
            while !isTerminated {
                let fd = Glibc.accept(listener, nil, nil)
                if fd < 0 {
                    if errno == EINTR { continue }
                    break
                }
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                var one: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                let terminated = shared.withLock { s -> Bool in
                    s.connections.insert(fd)
                    return s.terminated
                }
                if terminated { shutdown(fd, Int32(SHUT_RDWR)) }
                Thread.detachNewThread { [self] in
                    serve(fd)
                    shared.withLock { _ = $0.connections.remove(fd) }
                    close(fd)
                }
            }
            // This thread owns the listener: it closes it once nobody can shut it down any more.
            shared.withLock { $0.listeners.removeAll { $0 == listener } }
            close(listener)
        }
    }

    /// _TPM_Init (and TPM2_Startup(CLEAR) with `startupClear`), or — when a volatile state is
    /// waiting (CMD_SET_STATEBLOB, as QEMU restores or migrates a VM; or CMD_STORE_VOLATILE) — the
    /// TPM resumed as it was saved. The waiting state is used once (swtpm's
    /// PTM_INIT_FLAG_DELETE_VOLATILE, which QEMU sets when it resumes, asks exactly that). A
    /// volatile state that does not load fails the initialization (the TPM stays down).
    @discardableResult
    func initialize() -> Bool {
        let pending = shared.withLock { s -> [UInt8]? in defer { s.pendingVolatile = nil }; return s.pendingVolatile }
        if let pending {
            do { try tpm.resumeVolatileState(pending) } catch { return false }
            shared.withLock { $0.initialized = true }
            return true
        }
        tpm.powerOn()
        shared.withLock { $0.initialized = true }
        if options.startupClear {
            _ = tpm.handle([0x80, 0x01, 0, 0, 0, 0x0C, 0, 0, 0x01, 0x44, 0, 0])
        }
        return true
    }

    /// One command from the data channel; a TPM not yet initialized answers TPM_RC_FAILURE.
    func process(_ command: [UInt8], locality: UInt8? = nil) -> [UInt8] {
        let (ready, loc) = shared.withLock { ($0.initialized, $0.locality) }
        guard ready else { return [0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x01] }
        let response = tpm.handle(command, locality: locality ?? loc)
        options.trace?(command, response)
        return response
    }

    // MARK: swtpm data channel

    func serveData(_ fd: Int32) {
        // One receive usually brings the whole command; a command is at most bufferSize bytes.
        var buffer = [UInt8](repeating: 0, count: Int(Self.bufferSize))
        var have = 0
        while true {
            while have < 10 || have < Int(readU32(buffer, 2)) {
                if have >= 10 {
                    let size = Int(readU32(buffer, 2))
                    guard size >= 10, size <= Int(Self.bufferSize) else {
                        // An oversized or impossible frame: answer as a TPM would and drop the stream.
                        _ = Sock.writeAll(fd, [0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x42])
                        return
                    }
                }
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + have, $0.count - have) }
                if n > 0 { have += n; continue }
                if n < 0 && errno == EINTR { continue }
                // End of stream (possibly mid-command: that command never reaches the TPM).
                return
            }
            let size = Int(readU32(buffer, 2))
            let response = process(Array(buffer[0..<size]))
            guard Sock.writeAll(fd, response) else { return }
            // Pipelined bytes of the next command stay in the buffer.
            if have > size {
                buffer.replaceSubrange(0..<(have - size), with: buffer[size..<have])
            }
            have -= size
        }
    }

    // MARK: swtpm control channel (swtpm_ioctls CMD_*)

    enum ControlCode: UInt32 {
        case getCapability = 1, initialize, shutdown, getTPMEstablished, setLocality, hashStart, hashData, hashEnd,
             cancelTPMCommand, storeVolatile, resetTPMEstablished, getStateBlob, setStateBlob, stop, getConfig,
             setDataFD, setBufferSize, getInfo, lockStorage
    }

    static let capabilities: UInt64 = {
        var caps: UInt64 = 0
        for bit in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16] { caps |= 1 << UInt64(bit) }
        return caps
    }()

    /// The control channel is message-oriented, as swtpm reads it: each command arrives in one
    /// send (QEMU passes whole C unions, so a request may carry padding beyond its fields, e.g.
    /// CMD_SET_LOCALITY's one byte in four); what a command does not use is dropped with the
    /// message, and only a message shorter than its command's fields is completed from the stream.
    /// PTM_STATE_FLAG_ENCRYPTED: the blob is sealed with the migration key.
    static let blobEncrypted: UInt32 = 2

    /// A state blob sealed for migration: AES-256-GCM under the migration key, bound to its type.
    static func sealBlob(_ blob: [UInt8], type: UInt32, key: [UInt8]) -> [UInt8]? {
        guard key.count == 32, let box = try? AES.GCM.seal(blob, using: SymmetricKey(data: key), authenticating: be32Bytes(type)) else {
            return nil
        }
        return box.combined.map(Array.init)
    }

    static func openBlob(_ sealed: [UInt8], type: UInt32, key: [UInt8]) -> [UInt8]? {
        guard key.count == 32, let box = try? AES.GCM.SealedBox(combined: sealed),
              let plain = try? AES.GCM.open(box, using: SymmetricKey(data: key), authenticating: be32Bytes(type)) else { return nil }
        return Array(plain)
    }

    func serveControl(_ fd: Int32) {
        while let received = Sock.receive(fd, max: 4 + Int(Self.bufferSize)) {
            var message = received.bytes
            let passedFD = received.passed
            if message.count < 4 {
                guard let rest = Sock.readExactly(fd, 4 - message.count) else { return }
                message += rest
            }
            let raw = readU32(message)
            var input = ControlInput(fd: fd, buffered: Array(message.dropFirst(4)))
            guard let code = ControlCode(rawValue: raw) else {
                if let passedFD { close(passedFD) }
                _ = Sock.writeAll(fd, be32Bytes(0x0A))  // TPM_BAD_ORDINAL
                continue
            }
            if code != .setDataFD, let passedFD { close(passedFD) }
            guard let reply = controlCommand(code, input: &input, passedFD: code == .setDataFD ? passedFD : nil) else { return }
            guard Sock.writeAll(fd, reply) else { return }
            // As swtpm does, CMD_SHUTDOWN ends the process once it has answered.
            if code == .shutdown {
                terminate()
                return
            }
        }
    }

    /// A control command's parameters: the bytes that came with its message, then the stream.
    struct ControlInput {
        let fd: Int32
        var buffered: [UInt8]
        mutating func take(_ count: Int) -> [UInt8]? {
            if buffered.count >= count {
                defer { buffered.removeFirst(count) }
                return Array(buffered.prefix(count))
            }
            guard let rest = Sock.readExactly(fd, count - buffered.count) else { return nil }
            defer { buffered = [] }
            return buffered + rest
        }
    }

    /// The reply to one control command (nil: the connection is broken).
    func controlCommand(_ code: ControlCode, input: inout ControlInput, passedFD: Int32?) -> [UInt8]? {
        let ok = be32Bytes(0)
        switch code {
        case .getCapability:
            return be64Bytes(Self.capabilities)
        case .initialize:
            // The flags (PTM_INIT_FLAG_DELETE_VOLATILE) are read; a waiting volatile state is used once anyway.
            guard input.take(4) != nil else { return nil }
            return initialize() ? ok : be32Bytes(0x09)
        case .shutdown:
            shared.withLock { $0.initialized = false }
            return ok
        case .getTPMEstablished:
            let bit: UInt8 = shared.withLock { $0.established } ? 1 : 0
            return ok + [bit, 0, 0, 0]
        case .setLocality:
            guard let loc = input.take(1) else { return nil }
            guard loc[0] <= 4 else { return be32Bytes(0x3D) }  // TPM_BAD_LOCALITY
            shared.withLock { $0.locality = loc[0] }
            return ok
        case .hashStart:
            shared.withLock { $0.hashing = [] }
            return ok
        case .hashData:
            guard let len = input.take(4) else { return nil }
            let n = Int(readU32(len))
            guard n <= 4096, let data = input.take(n) else { return nil }
            let accepted = shared.withLock { s -> Bool in
                guard s.hashing != nil else { return false }
                s.hashing! += data
                return true
            }
            return accepted ? ok : be32Bytes(0x09)  // TPM_FAIL
        case .hashEnd:
            let data = shared.withLock { s -> [UInt8]? in defer { s.hashing = nil }; return s.hashing }
            guard let data else { return be32Bytes(0x09) }
            tpm.hcrtm(data)
            shared.withLock { $0.established = true }
            return ok
        case .storeVolatile:
            // Kept for the next CMD_INIT of this process (swtpm writes it to a file beside the state).
            let v = tpm.exportVolatileState()
            shared.withLock { $0.pendingVolatile = v }
            return ok
        case .cancelTPMCommand, .lockStorage:
            if code == .lockStorage { guard input.take(4) != nil else { return nil } }
            return ok
        case .resetTPMEstablished:
            guard let loc = input.take(1) else { return nil }
            guard loc[0] >= 3 else { return be32Bytes(0x3D) }
            shared.withLock { $0.established = false }
            return ok
        case .getStateBlob:
            guard let req = input.take(12) else { return nil }
            // Blob types (PTM_BLOB_TYPE_*): 1 permanent, 2 volatile, 3 savestate (TPM 1.2 only: empty).
            let type = readU32(req, 4), offset = Int(readU32(req, 8))
            var blob = type == 1 ? tpm.exportPermanentState() : type == 2 ? tpm.exportVolatileState() : []
            var flags: UInt32 = 0
            if let key = options.migrationKey, !blob.isEmpty {
                guard let sealed = Self.sealBlob(blob, type: type, key: key) else { return be32Bytes(0x09) }
                blob = sealed
                flags = Self.blobEncrypted
            }
            // The rest of the blob from `offset`, in one answer: QEMU reads a blob in one piece
            // (it refuses an answer whose length is not the total length), swtpm_ioctl in a loop.
            let chunk = offset < blob.count ? Array(blob[offset...]) : []
            return ok + be32Bytes(flags) + be32Bytes(UInt32(blob.count)) + be32Bytes(UInt32(chunk.count)) + chunk
        case .setStateBlob:
            guard let req = input.take(12) else { return nil }
            let flags = readU32(req), type = readU32(req, 4), length = Int(readU32(req, 8))
            guard length <= 1 << 20, var data = input.take(length) else { return nil }
            if flags & Self.blobEncrypted != 0 {
                // Sealed with the migration key on the other side: without that key, or altered, it is refused.
                guard let key = options.migrationKey, let opened = Self.openBlob(data, type: type, key: key) else { return be32Bytes(0x09) }
                data = opened
            }
            guard shared.withLock({ !$0.initialized }) else { return be32Bytes(0x09) }
            switch type {
            case 1:
                do { try tpm.importPermanentState(data) } catch { return be32Bytes(0x09) }
            case 2:
                shared.withLock { $0.pendingVolatile = data.isEmpty ? nil : data }
            default:
                break
            }
            return ok
        case .stop:
            shared.withLock { $0.initialized = false }
            return ok
        case .getConfig:
            return ok + be32Bytes(0x1)
        case .setDataFD:
            guard let dataFD = passedFD else { return be32Bytes(0x09) }
            Thread.detachNewThread { [self] in
                serveData(dataFD)
                close(dataFD)
                // `--terminate`: the VM's QEMU is gone.
                if options.terminateOnDataClose { terminate() }
            }
            return ok
        case .setBufferSize:
            guard input.take(4) != nil else { return nil }
            return ok + be32Bytes(Self.bufferSize) + be32Bytes(Self.bufferSize) + be32Bytes(Self.bufferSize)
        case .getInfo:
            guard let req = input.take(16) else { return nil }
            let flags = req.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            let offset = Int(readU32(req, 8))
            var parts: [String] = []
            if flags & 1 != 0 {
                parts.append("\"TPMSpecification\":{\"family\":\"2.0\",\"level\":0,\"revision\":\(EngineCore.specRevision)}")
            }
            if flags & 2 != 0 {
                parts.append(
                    "\"TPMAttributes\":{\"manufacturer\":\"id:544C4348\",\"version\":\"id:00010000\",\"model\":\"TrustedLaunch vTPM\"}")
            }
            let json = Array(("{" + parts.joined(separator: ",") + "}").utf8)
            let chunk = offset < json.count ? Array(json[offset...]) : []
            return ok + be32Bytes(UInt32(json.count)) + be32Bytes(UInt32(chunk.count)) + chunk
        }
    }

    // MARK: mssim

    enum MssimSignal: UInt32 {
        case powerOn = 1, powerOff = 2, physPresOn = 3, physPresOff = 4, hashStart = 5, hashData = 6, hashEnd = 7
        case sendCommand = 8, cancelOn = 9, cancelOff = 10, nvOn = 11, nvOff = 12, keyCacheOn = 13, keyCacheOff = 14
        case remoteHandshake = 15, setAlternativeResult = 16, reset = 17, restart = 18, sessionEnd = 20, stop = 21
    }

    func serveMssimCommands(_ fd: Int32) {
        while let codeBytes = Sock.readExactly(fd, 4) {
            switch MssimSignal(rawValue: readU32(codeBytes)) {
            case .sendCommand?:
                guard let head = Sock.readExactly(fd, 5) else { return }
                let size = Int(readU32(head, 1))
                guard size >= 10, size <= Int(Self.bufferSize), let command = Sock.readExactly(fd, size) else { return }
                let response = process(command, locality: head[0])
                guard Sock.writeAll(fd, be32Bytes(UInt32(response.count)) + response + be32Bytes(0)) else { return }
            case .remoteHandshake?:
                guard Sock.readExactly(fd, 4) != nil else { return }
                guard Sock.writeAll(fd, be32Bytes(1) + be32Bytes(0x7) + be32Bytes(0)) else { return }
            case .sessionEnd?:
                return
            case .stop?:
                terminate()
                return
            default:
                _ = Sock.writeAll(fd, be32Bytes(1))
                return
            }
        }
    }

    func serveMssimPlatform(_ fd: Int32) {
        while let codeBytes = Sock.readExactly(fd, 4) {
            switch MssimSignal(rawValue: readU32(codeBytes)) {
            case .powerOn?:
                // Power-on while powered is a no-op, as in the reference simulator.
                if !shared.withLock({ $0.initialized }) { initialize() }
            case .reset?:
                initialize()
            case .powerOff?:
                shared.withLock { $0.initialized = false }
            case .sessionEnd?:
                return
            case .stop?:
                _ = Sock.writeAll(fd, be32Bytes(0))
                terminate()
                return
            case .none:
                return
            default:
                break
            }
            guard Sock.writeAll(fd, be32Bytes(0)) else { return }
        }
    }
}
