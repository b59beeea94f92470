#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A child process started with posix_spawn and a clean signal mask and dispositions.
/// (Foundation's Process passes on the Swift runtime's blocked signals, so a child such as
/// swtpm would ignore SIGTERM.)
final class ChildProcess: Sendable {
    let pid: pid_t
    private let exitStatus = Mutex<Int32?>(nil)

    init(path: String, arguments: [String]) throws(TPMError) {
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        // Nothing else of this process goes with it: a descriptor opened without close-on-exec
        // (a listening socket, say) would otherwise live as long as the child does.
        spawnClosesDescriptors(from: 3, &actions)

        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, path, &actions, &attr, argv, environ)
        guard rc == 0 else { throw TPMError(.transport, reason: "cannot start \(path): \(String(cString: strerror(rc)))") }
        pid = child
    }

    /// Whether the child is still running (reaps it if it has exited).
    var isRunning: Bool {
        exitStatus.withLock { status in
            if status != nil { return false }
            var s: Int32 = 0
            let r = waitpid(pid, &s, WNOHANG)
            if r == pid { status = s; return false }
            return r == 0
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; returns when the child is reaped.
    func terminate(grace: Duration = .seconds(2)) {
        guard isRunning else { return }
        kill(pid, SIGTERM)
        let deadline = ContinuousClock.now + grace
        while isRunning {
            if ContinuousClock.now > deadline {
                kill(pid, SIGKILL)
                exitStatus.withLock { status in
                    var s: Int32 = 0
                    if status == nil, waitpid(pid, &s, 0) == pid { status = s }
                }
                return
            }
            usleep(2_000)
        }
    }
}

/// glibc ≥ 2.34's posix_spawn_file_actions_addclosefrom_np (not in Swift's Glibc module).
private typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
private let closeFrom: CloseFrom? = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np")
    .map { unsafeBitCast($0, to: CloseFrom.self) }

/// Has a posix_spawn close every descriptor from `low` up in the child (a no-op on a glibc
/// older than 2.34).
public func spawnClosesDescriptors(from low: Int32, _ actions: inout posix_spawn_file_actions_t) {
    if let closeFrom { _ = closeFrom(&actions, low) }
}
