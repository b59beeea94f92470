import ServiceLifecycle

/// A database backend as a service of the process's group: it holds the backend open while the
/// group runs and closes it when the group shuts down (PostgreSQL's connections ended, SQLite's
/// WAL checkpointed once more). Listed first, it stops last: the group shuts services down in
/// reverse order, so the server and the fleet finish their writes before the database closes.
///
/// The backend is open before the group starts (a store migrates its tables when it opens, and
/// the platform reads its state to start): this service owns its end, not its start.
public struct StorageService: Service {
    let backend: any SQLBackend
    public init(_ backend: any SQLBackend) { self.backend = backend }

    public func run() async throws {
        // Until the group shuts down (or this task is cancelled: the group failed).
        try? await gracefulShutdown()
        await backend.close()
    }
}
