import Foundation

/// One lock per key (a VM's name): operations on one VM run one at a time, different VMs in
/// parallel. Waiters are served in order.
actor KeyedLocks {
    var held: Set<String> = []
    var waiters: [String: [CheckedContinuation<Void, Never>]] = [:]

    func lock(_ key: String) async {
        if held.contains(key) {
            await withCheckedContinuation { waiters[key, default: []].append($0) }
        } else {
            held.insert(key)
        }
    }

    func unlock(_ key: String) {
        if var w = waiters[key], !w.isEmpty {
            let next = w.removeFirst()
            waiters[key] = w.isEmpty ? nil : w
            next.resume()
        } else {
            held.remove(key)
        }
    }

    nonisolated func with<T: Sendable>(_ key: String, _ body: () async throws -> T) async throws -> T {
        await lock(key)
        do {
            let v = try await body()
            await unlock(key)
            return v
        } catch {
            await unlock(key)
            throw error
        }
    }
}
