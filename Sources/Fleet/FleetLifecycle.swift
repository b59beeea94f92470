import Attestation
import Foundation
import GuestAgent
import Logging
import MeasuredBoot
import Storage
import Synchronization
import TPM2
import VirtualFirmware
import VirtualTPM

/// The lifecycle: start, restart (a power cycle: TPM reset, new measured boot), stop, delete,
/// files written onto a VM's disk. Each runs under the VM's lock, on the VM's hypervisor.
extension Fleet {
    /// A start boots a VM that is not running; a restart power-cycles one that is not stopped.
    /// A VM whose host does not answer cannot be started, restarted or stopped: the platform
    /// would not know what it did.
    static func checkHostAnswers(_ vm: VMRecord) throws {
        guard vm.powerState != .unknown else {
            throw FleetError(.conflict, "\(vm.name)'s host \(vm.host ?? "") does not answer: its state is Unknown (tlaunch host list); "
                                      + "wait for the host, or delete the VM")
        }
    }

    static func checkCanStart(_ vm: VMRecord) throws {
        try checkHostAnswers(vm)
        guard vm.powerState != .running else { throw FleetError(.conflict, "\(vm.name) is already running: tlaunch vm restart \(vm.name) "
                                                                         + "boots it again") }
    }

    static func checkCanRestart(_ vm: VMRecord) throws {
        try checkHostAnswers(vm)
        guard vm.powerState != .stopped else { throw FleetError(.conflict, "\(vm.name) is stopped: tlaunch vm start \(vm.name)") }
    }

    public func start(_ name: String) async throws -> VMRecord {
        try await tracked(name, "start") { try await startNow(name) }
    }

    func startNow(_ name: String) async throws -> VMRecord {
        try await bootNow(name, verb: "start", check: Self.checkCanStart)
    }

    /// One boot of the VM under its lock (after `check` of its record), then its attestation.
    func bootNow(_ name: String, verb: String, check: (VMRecord) throws -> Void = { _ in }) async throws -> VMRecord {
        let vm: VMRecord = try await locks.with(name) {
            let vm = try await require(name)
            try check(vm)
            return try await boot(vm, verb: verb)
        }
        return try await afterBoot(vm)
    }

    public func restart(_ name: String) async throws -> VMRecord {
        try await tracked(name, "restart") { try await restartNow(name) }
    }

    func restartNow(_ name: String) async throws -> VMRecord {
        // Powered off and on again: the disk's new files and a TPM reset take effect.
        try await bootNow(name, verb: "restart", check: Self.checkCanRestart)
    }

    func afterBoot(_ vm: VMRecord) async throws -> VMRecord {
        // A real VM's own agent attested during its boot.
        if hypervisor(for: vm).guestRunsAgent { return try await require(vm.name) }
        if vm.powerState == .running, vm.integrityMonitoring, vm.guestAgent == .running {
            _ = await attestNow(vm.name)
            return try await require(vm.name)
        }
        return vm
    }

    /// One boot on the VM's hypervisor (caller holds the VM's lock).
    func boot(_ vm: VMRecord, verb: String) async throws -> VMRecord {
        let image = try images.disk(try await image(vm.image))
        progress("booting \(vm.name) (\(vm.securityType.rawValue), \(vm.image))")
        let b = try await hypervisor(for: vm).boot(vm, image: image, esp: try folder(vm.name).esp(over: image))
        let updated = try await mutate(vm.name) { v in
            v.bootCount = b.number
            v.lastBoot = b
            v.powerState = b.succeeded ? .running : .failed
            // A real VM's own agent already attested this boot while the platform waited for it.
            let started = Self.parse(b.time) ?? Int64.max
            if !(vm.isRealVM && b.succeeded && (v.lastAttestation ?? 0) >= started) {
                v.bootIntegrity = v.integrityMonitoring ? .pending : .notMonitored
            }
        }
        let chain = b.stages.map { ($0.path as NSString).lastPathComponent }.joined(separator: " → ")
        if b.succeeded {
            try await store.appendEvent(vm: vm.name, kind: .boot, message: "\(verb): boot \(b.number) reached \(b.kernel ?? "the OS") via "
                                                                         + "\(chain.isEmpty ? b.firmware : chain)"
                + (b.measured ? " — \(b.events) events measured into the vTPM" : " — not measured (no vTPM)")
                + (b.secureBootEnforced ? ", Secure Boot enforced" : ""))
            try await resolve(vm: vm.name, kinds: [.bootFailure], resolution: "boot \(b.number) at \(b.time) succeeded")
        } else {
            try await store.appendEvent(vm: vm.name, kind: .bootFailed, message: "\(verb): boot \(b.number) failed: \(b.failure ?? "?")")
            try await raise(AlertBuilder.bootFailure(b, vm: updated))
        }
        return updated
    }

    public func stop(_ name: String) async throws -> VMRecord {
        try await locks.with(name) {
            let vm = try await require(name)
            guard vm.powerState != .stopped else { throw FleetError(.conflict, "\(name) is already stopped") }
            try Self.checkHostAnswers(vm)
            await hypervisor(for: vm).stop(name, timeout: .seconds(10))
            let updated = try await mutate(name) { $0.powerState = .stopped }
            try await store.appendEvent(vm: name, kind: .stopped, message: "stopped (vTPM state kept, encrypted, for the next start)")
            try await resolve(vm: name, kinds: [.notReporting], resolution: "the VM was stopped")
            return updated
        }
    }

    /// Deletes the VM: its record, its disk, its vTPM state (destroyed), what the attestation
    /// service knew about it. Its alerts stay, resolved, for the record.
    public func delete(_ name: String) async throws {
        try await locks.with(name) {
            let vm = try await require(name)
            await hypervisor(for: vm).delete(name)
            guard try await store.deleteVM(name) else { throw FleetError(.notFound, "no VM named \(name)") }
            try? FileManager.default.removeItem(at: folder(name).url)
            try await service.forget(vm: name)
            activityLog.forget(name)
            try await resolve(vm: name, kinds: nil, resolution: "the VM was deleted")
            try await store.deleteEvents(vm: name)
            logger.info("deleted", metadata: ["vm": .string(name)])
        }
    }

    /// Writes a file onto the VM's boot disk (an OS update replacing the kernel, or an attacker
    /// replacing grub); it takes effect at the next boot.
    public func putFile(_ name: String, path: String, bytes: [UInt8]) async throws -> VMRecord {
        guard path.hasPrefix("/"), !path.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }), path.count <= 255,
            !path.hasSuffix("/")
        else {
            throw FleetError(.invalid, "the path on the disk must be absolute, without . or .. (e.g. /EFI/BOOT/grubx64.efi)", field: "path")
        }
        guard bytes.count <= 64 << 20 else {
            throw FleetError(.invalid, "the file is \(bytes.count) bytes; the limit is 64 MiB", field: "file")
        }
        return try await locks.with(name) {
            let vm = try await require(name)
            guard try await image(vm.image).generation == 2 else {
                throw FleetError(.invalid, "\(name)'s image \(vm.image) is a BIOS disk without an EFI System Partition: files go on "
                                         + "Generation 2 disks", field: "path")
            }
            let dest = folder(name).overlay.appendingPathComponent(String(path.dropFirst()))
            try FileManager.default.createDirectory(at: dest.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(bytes).write(to: dest, options: .atomic)
            let digest = hexString((try? TPMCrypto.hash(.sha256, bytes)) ?? [])
            try await store.appendEvent(vm: name, kind: .disk, message: "\(path) written (\(bytes.count) bytes, sha256 "
                                                                      + "\(digest.prefix(16))…); it takes effect at the next boot")
            return try await mutate(name) { _ in }
        }
    }
}
