/// Runs `body`, then `teardown` — also when `body` throws — and awaits it: what a test started
/// (servers, swtpm processes, databases) is stopped before the test ends, not by a stray task
/// racing the next test.
public func withTeardown<T>(_ teardown: () async -> Void, _ body: () async throws -> T) async rethrows -> T {
    let value: T
    do { value = try await body() } catch {
        await teardown()
        throw error
    }
    await teardown()
    return value
}
