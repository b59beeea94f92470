import Foundation

/// A libvirt host the platform places VMs on (`tlaunch host add NAME URI`): its connection,
/// what it has (from `virsh nodeinfo` when it last answered), how many VMs it may take, and
/// whether it answers.
public struct LibvirtHost: Sendable, Codable, Hashable {
    public enum State: String, Sendable, Codable, CaseIterable {
        case reachable = "Reachable"
        case unreachable = "Unreachable"
    }
    public var name: String
    /// The libvirt URI (`qemu:///system`, `qemu+ssh://root@h1/system`, `qemu+tls://h1/system`, …).
    public var uri: String
    /// Where its VMs' vTPMs come from: `external` (the platform's vTPM over a socket the host's
    /// QEMU reaches: this machine only) or `emulator` (the host's swtpm — ours once installed there).
    public var tpm: String
    /// The host does not see the platform's files: each VM's disk and variable store are copied
    /// to its `tlaunch` storage pool over libvirt, its console read back, its agent port is TCP.
    /// Always so for a host on another machine.
    public var shipFiles: Bool
    /// At most this many VMs (nil: as many as its memory takes).
    public var maxVMs: Int?
    /// The host's memory and CPUs as libvirt last reported them.
    public var memoryMiB: Int
    public var cpus: Int
    public var state: State
    /// libvirt's and QEMU's versions when it answers; what went wrong when it does not.
    public var detail: String
    /// When it last answered, when its state last changed, when it was added (ms since 1970).
    public var lastSeen: Int64?
    public var since: Int64
    public var added: Int64

    public init(name: String, uri: String, tpm: String, shipFiles: Bool = false, maxVMs: Int?, memoryMiB: Int, cpus: Int, state: State,
                detail: String, lastSeen: Int64?, since: Int64, added: Int64) {
        self.name = name; self.uri = uri; self.tpm = tpm; self.shipFiles = shipFiles; self.maxVMs = maxVMs; self.memoryMiB = memoryMiB;
        self.cpus = cpus
        self.state = state; self.detail = detail; self.lastSeen = lastSeen; self.since = since; self.added = added
    }

    /// How many VMs it can hold: its memory less what the host keeps for itself, in VMs of
    /// `FleetRules.vmMemoryMiB`, and no more than `maxVMs`.
    public var capacity: Int {
        let byMemory = max(0, (memoryMiB - FleetRules.hostReserveMiB) / FleetRules.vmMemoryMiB)
        return min(byMemory, maxVMs ?? .max)
    }
}

/// A host as `GET /v1/hosts` shows it: the record and the VMs placed on it.
public struct HostView: Sendable, Codable, Hashable {
    public var host: LibvirtHost
    public var vms: [String]
    /// VMs it can still take.
    public var free: Int
    public init(host: LibvirtHost, vms: [String]) { self.host = host; self.vms = vms; free = max(0, host.capacity - vms.count) }
}

/// `POST /v1/hosts`.
public struct AddHostRequest: Sendable, Codable, Hashable {
    public var name: String
    public var uri: String
    public var tpm: String?
    public var maxVMs: Int?
    /// Copy the VMs' files to the host even though it is this machine (a host elsewhere always gets copies).
    public var shipFiles: Bool?
    public init(name: String, uri: String, tpm: String? = nil, maxVMs: Int? = nil, shipFiles: Bool? = nil) {
        self.name = name; self.uri = uri; self.tpm = tpm; self.maxVMs = maxVMs; self.shipFiles = shipFiles
    }
}

extension AddHostRequest: StrictBody {
    public static func unknownFields(_ object: [String: Any]) -> [String] { unknown(object,
                                                                                    known: ["name", "uri", "tpm", "maxVMs", "shipFiles"]) }
}

extension FleetRules {
    /// What a VM takes on a host (the domain's memory).
    public static let vmMemoryMiB = 1024
    /// What a host keeps for itself and libvirt.
    public static let hostReserveMiB = 1024

    /// A libvirt URI the platform accepts: a QEMU driver URI (`qemu:///system`, `qemu+ssh://…`,
    /// `qemu+tls://…`, `qemu+tcp://…`, `qemu+unix://…`), printable, without spaces.
    public static func checkHostURI(_ uri: String) throws {
        let schemes = ["qemu://", "qemu+ssh://", "qemu+tls://", "qemu+tcp://", "qemu+unix://", "qemu+libssh2://", "qemu+libssh://"]
        guard uri.count <= 512, uri.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F }),
            schemes.contains(where: uri.hasPrefix)
        else {
            throw FleetError(.invalid, "libvirt URI \"\(uri.prefix(80))\" is not a QEMU driver URI (e.g. qemu:///system, "
                                     + "qemu+ssh://root@host/system, qemu+tls://host/system)", field: "uri")
        }
    }

    /// Whether QEMU under `uri` runs on this machine (it reaches the platform's own sockets and files).
    public static func hostIsThisMachine(_ uri: String) -> Bool {
        uri.hasPrefix("qemu:///") || uri.hasPrefix("qemu+unix:///")
    }

    /// The vTPM backend of a new host: `external` needs the host's QEMU on this machine, seeing
    /// the platform's files.
    public static func hostTPM(_ tpm: String?, uri: String, shipFiles: Bool = false) throws -> String {
        let local = hostIsThisMachine(uri) && !shipFiles
        let t = tpm ?? (local ? "external" : "emulator")
        guard t == "external" || t == "emulator" else {
            throw FleetError(.invalid, "tpm must be external or emulator", field: "tpm")
        }
        if t == "external", !local {
            throw FleetError(.invalid, """
                the external vTPM backend needs the host's QEMU on this machine (its socket is the platform's); a remote host runs its \
                VMs' vTPMs as swtpm: --tpm emulator, with `tlaunch vtpm install-swtpm` there
                """, field: "tpm")
        }
        return t
    }

    /// The host a new VM goes on: `wanted` if it answers and has room; otherwise the answering
    /// host with the most room (VMs it can still take; ties by name). `placed` counts the VMs on
    /// each host (a VM keeps its place, stopped or not, until it is deleted).
    public static func place(on hosts: [LibvirtHost], placed: [String: Int], wanted: String?) throws -> LibvirtHost {
        func room(_ h: LibvirtHost) -> Int { h.capacity - (placed[h.name] ?? 0) }
        func why(_ h: LibvirtHost) -> String {
            if h.state == .unreachable { return "\(h.name): does not answer since \(Time.rfc3339(h.since)) (\(h.detail))" }
            return "\(h.name): \(placed[h.name] ?? 0) of \(h.capacity) VMs placed (\(h.memoryMiB) "
                 + "MiB\(h.maxVMs.map { ", --max-vms \($0)" } ?? ""))"
        }
        if let wanted {
            guard let h = hosts.first(where: { $0.name == wanted }) else {
                throw FleetError(.notFound, "no libvirt host named \(wanted) (tlaunch host list)", field: "host")
            }
            guard h.state == .reachable, room(h) > 0 else {
                throw FleetError(.conflict, "host \(why(h)): place the VM on another host, or leave --host out", field: "host")
            }
            return h
        }
        guard !hosts.isEmpty else {
            throw FleetError(.conflict, "no libvirt host is registered: tlaunch host add NAME qemu+ssh://HOST/system", field: "host")
        }
        let open = hosts.filter { $0.state == .reachable && room($0) > 0 }
        guard let best = open.max(by: { room($0) != room($1) ? room($0) < room($1) : $0.name > $1.name }) else {
            throw FleetError(.conflict,
                             "no libvirt host has room for another VM of \(vmMemoryMiB) MiB — " + hosts.map(why).joined(separator: "; ")
                             + ": add a host (tlaunch host add), raise its --max-vms, or delete VMs", field: "host")
        }
        return best
    }
}
