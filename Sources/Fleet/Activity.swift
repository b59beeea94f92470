import Foundation
import Synchronization

/// The platform's progress, attributed to the VM whose operation caused it: an operation runs
/// with `ActivityLog.$vm` set (a task-local, so the image catalog's and the hypervisor's messages
/// deep below it land on the right VM without being told which). In memory, per process: the
/// process that runs the VM is the one that knows; at most 64 steps per VM are kept.
final class ActivityLog: Sendable {
    @TaskLocal static var vm: String?
    private let byVM = Mutex<[String: VMActivity]>([:])
    static let limit = 64

    /// A new operation of `vm` (one accepted for the background and now running keeps its steps).
    func begin(_ vm: String, operation: String) {
        byVM.withLock { all in
            if let a = all[vm], a.busy, a.operation == operation { return }
            all[vm] = VMActivity(vm: vm, operation: operation, busy: true, steps: [])
        }
    }

    /// A progress message: the current VM's step (its "NAME: " prefix removed), if one is set.
    func note(_ message: String) {
        guard let vm = Self.vm else { return }
        note(vm, message)
    }

    func note(_ vm: String, _ message: String) {
        let text = message.hasPrefix("\(vm): ") ? String(message.dropFirst(vm.count + 2)) : message
        byVM.withLock { all in
            var a = all[vm] ?? VMActivity(vm: vm, operation: nil, busy: true, steps: [])
            a.steps.append(.init(time: Time.now(), message: text))
            if a.steps.count > Self.limit { a.steps.removeFirst(a.steps.count - Self.limit) }
            all[vm] = a
        }
    }

    func end(_ vm: String, _ outcome: String, error: String? = nil) {
        byVM.withLock { all in
            guard var a = all[vm] else { return }
            a.steps.append(.init(time: Time.now(), message: outcome))
            a.busy = false
            a.error = error
            all[vm] = a
        }
    }

    func forget(_ vm: String) { byVM.withLock { $0[vm] = nil } }

    func activity(_ vm: String) -> VMActivity { byVM.withLock { $0[vm] } ?? VMActivity(vm: vm, operation: nil, busy: false, steps: []) }
}
