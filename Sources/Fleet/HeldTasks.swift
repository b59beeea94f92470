import Synchronization

/// Tasks a component starts and holds, so that a shutdown can end them instead of leaving them
/// to the process's exit: each task leaves the set when it finishes; once closed, the set starts
/// no more.
final class HeldTasks: Sendable {
    private let state = Mutex<(next: UInt64, closed: Bool, tasks: [UInt64: Task<Void, Never>])>((0, false, [:]))

    /// Runs `body` as a held task (nothing, once closed).
    func start(_ body: @escaping @Sendable () async -> Void) {
        state.withLock { s in
            guard !s.closed else { return }
            let id = s.next
            s.next += 1
            // Inserted under the lock the task's own removal waits for: it cannot leave first.
            s.tasks[id] = Task {
                await body()
                _ = self.state.withLock { $0.tasks.removeValue(forKey: id) }
            }
        }
    }

    /// Cancels the tasks held now and returns them, to be awaited; with `closing`, starts no more.
    func cancelAll(closing: Bool = false) -> [Task<Void, Never>] {
        let tasks = state.withLock { s in
            if closing { s.closed = true }
            return Array(s.tasks.values)
        }
        for t in tasks { t.cancel() }
        return tasks
    }

    /// How many are held now.
    var count: Int { state.withLock { $0.tasks.count } }
}
