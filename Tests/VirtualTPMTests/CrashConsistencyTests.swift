import Foundation
import Synchronization
import TLaunchTestSupport
import TPM2
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `tlaunch vtpm socket` killed with SIGKILL at random moments during a stream of NV writes:
/// every acknowledged write survives, a write in flight is all there or not at all, and the
/// state always loads.
@Suite("vTPM: crash consistency under SIGKILL")
struct CrashConsistencyTests {
    static var tlaunch: String { Built.tlaunch }

    /// `tlaunch vtpm socket` on `dir` (its host key and CA inside) and `port`/`port + 1`, stdout
    /// (and, when `quiet`, stderr) to /dev/null; its pid, or nil when it cannot be started.
    static func spawnVTPM(dir: URL, port: Int, quiet: Bool) -> pid_t? {
        let args = [tlaunch, "vtpm", "socket", "--tpm2", "--tpmstate", "dir=\(dir.path)", "--server", "type=tcp,port=\(port)", "--ctrl",
                    "type=tcp,port=\(port + 1)",
            "--flags", "not-need-init,startup-clear", "--key", "file=\(dir.appendingPathComponent("host.key").path)", "--ca",
            "dir=\(dir.appendingPathComponent("ca").path)"
        ]
        var pid: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        if quiet { posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0) }
        return posix_spawn(&pid, tlaunch, &actions, nil, argv, environ) == 0 ? pid : nil
    }

    final class Running: @unchecked Sendable {
        let pid: pid_t
        let port: Int
        init(dir: URL) throws {
            var lastError: (any Error)?
            for _ in 0..<5 {
                let port = try SwtpmProcess.freePortPair()
                guard let pid = CrashConsistencyTests.spawnVTPM(dir: dir, port: port,
                                                                quiet: false) else { throw VectorErr("cannot start tlaunch") }
                for _ in 0..<400 {
                    if SwtpmProcess.portFreeProbe(port + 1) == false, Self.connectable(port) {
                        self.pid = pid
                        self.port = port
                        return
                    }
                    usleep(10_000)
                }
                kill(pid, SIGKILL)
                var st: Int32 = 0
                waitpid(pid, &st, 0)
                lastError = VectorErr("tlaunch vtpm socket did not listen on \(port)")
            }
            throw lastError!
        }
        static func connectable(_ port: Int) -> Bool {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(port).bigEndian)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            return withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            } == 0
        }
        private let state = Mutex(false)
        var reaped: Bool { state.withLock { $0 } }
        func killHard() {
            kill(pid, SIGKILL)
            var st: Int32 = 0
            waitpid(pid, &st, 0)
            state.withLock { $0 = true }
        }
    }

    /// What the writer of one round tells the killer thread.
    final class Round: Sendable {
        let writes = Atomic<Int>(0)
        let writerStopped = Atomic<Bool>(false)
    }

    struct VectorErr: Error, CustomStringConvertible { var description: String; init(_ d: String) { description = d } }

    /// `tlaunch vtpm socket` manufactures a new vTPM (EKs, their certificates from the CA into
    /// NV) on its first start; killed at random moments while it does, it must never leave a
    /// state without the certificates — such a vTPM could never attest.
    @Test func aCrashDuringManufactureNeverLeavesAVTPMWithoutItsCertificates() async throws {
        guard FileManager.default.isExecutableFile(atPath: Self.tlaunch) else {
            Issue.record("\(Self.tlaunch) is not built")
            return
        }
        let state = { (dir: URL) in dir.appendingPathComponent("tlaunch-vtpm.state") }
        var manufactured = 0, interrupted = 0
        for round in 0..<8 {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tl-mfg-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            try Data(TPMCrypto.random(32)).write(to: dir.appendingPathComponent("host.key"))
            // A start killed at a random moment (the first rounds early, the later ones late).
            let port = try SwtpmProcess.freePortPair()
            let pid = try #require(Self.spawnVTPM(dir: dir, port: port, quiet: true))
            usleep(UInt32(round * 150_000 + Int.random(in: 0...150_000)))
            kill(pid, SIGKILL)
            var st: Int32 = 0
            waitpid(pid, &st, 0)
            if FileManager.default.fileExists(atPath: state(dir).path) { manufactured += 1 } else { interrupted += 1 }
            // Whatever the kill interrupted, the next start gives a vTPM whose EK certificates are in NV.
            let vtpm = try Running(dir: dir)
            let tpm = TPMClient(transport: SwtpmTransport(data: .tcp(host: "127.0.0.1", port: vtpm.port), control: nil,
                                                          timeout: .seconds(10)))
            for index in [TPMHandle(0x01C0_0002), TPMHandle(0x01C0_000A)] {
                let der = try await tpm.nvRead(index, authHandle: .owner)
                #expect(der.count > 300 && der.first == 0x30, "round \(round): the EK certificate at \(index) is missing or not DER")
            }
            await tpm.close()
            vtpm.killHard()
            #expect(!FileManager.default.fileExists(atPath: state(dir).path + ".manufacturing"),
                    "round \(round): an unfinished manufacture was left behind")
        }
        // Kills landed before the state existed (how many landed after depends on the machine's speed).
        #expect(interrupted > 0, "interrupted \(interrupted), manufactured \(manufactured)")
    }

    @Test func acknowledgedWritesSurviveKillMinus9() async throws {
        guard FileManager.default.isExecutableFile(atPath: Self.tlaunch) else {
            Issue.record("\(Self.tlaunch) is not built")
            return
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tl-crash-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data(TPMCrypto.random(32)).write(to: dir.appendingPathComponent("host.key"))
        let counter = TPMHandle(0x0150_00C0), block = TPMHandle(0x0150_00C1)
        var acknowledged: UInt64 = 0
        var lastBlock: UInt8 = 0
        var rounds = 0
        for round in 0..<20 {
            let vtpm = try Running(dir: dir)
            let tpm = TPMClient(transport: SwtpmTransport(data: .tcp(host: "127.0.0.1", port: vtpm.port), control: nil,
                                                          timeout: .seconds(5)))
            if round == 0 {
                try await tpm.nvDefineSpace(TPMSNVPublic(nvIndex: counter, attributes: TPMANV([.ownerRead, .ownerWrite], type: .counter),
                                                         dataSize: 8))
                try await tpm.nvDefineSpace(TPMSNVPublic(nvIndex: block, attributes: [.ownerRead, .ownerWrite], dataSize: 256))
            } else {
                // After the crash: the state loads; nothing acknowledged is missing; nothing is torn.
                let value = try await tpm.nvRead(counter, authHandle: .owner).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                #expect(value == acknowledged || value == acknowledged + 1,
                        "round \(round): counter \(value), acknowledged \(acknowledged)")
                acknowledged = value
                let content = try await tpm.nvRead(block, authHandle: .owner)
                #expect(Set(content).count == 1, "round \(round): the 256-byte block is torn")
                #expect(content[0] == lastBlock || content[0] == lastBlock &+ 1,
                        "round \(round): block \(content[0]), acknowledged \(lastBlock)")
                lastBlock = content[0]
            }
            // Write as fast as possible while another OS thread kills the process at a random
            // moment (a thread of its own: the writer's blocking socket I/O must not be able to
            // starve the kill of a cooperative-pool thread). The moment is random but comes after
            // this round's first acknowledged write, however slow a loaded machine makes writes:
            // a kill before any write would test nothing.
            let killAfter = UInt32.random(in: 0...60)
            let progress = Round()
            let killer = Thread {
                while progress.writes.load(ordering: .acquiring) == 0 && !progress.writerStopped.load(ordering: .acquiring) { usleep(500) }
                usleep(killAfter * 1000)
                vtpm.killHard()
            }
            killer.start()
            while true {
                do {
                    try await tpm.nvIncrement(counter, authHandle: .owner)
                    acknowledged += 1
                    try await tpm.nvWrite(block, data: [UInt8](repeating: lastBlock &+ 1, count: 256), authHandle: .owner)
                    lastBlock &+= 1
                    progress.writes.add(1, ordering: .releasing)
                } catch {
                    break
                }
                await Task.yield()
            }
            progress.writerStopped.store(true, ordering: .releasing)
            while !vtpm.reaped { usleep(1000) }
            await tpm.close()
            rounds += 1
        }
        #expect(rounds == 20)
        #expect(acknowledged >= 20, "every round acknowledged at least one write before its kill")
    }
}
