import Foundation
import Synchronization

/// libvirt hosts: the registry (`tlaunch host add|list|remove`, in the shared database), where a
/// new VM goes, and what happens to VMs when their host stops answering.
extension Fleet {
    /// The driver of host `name` (made on first use, from the VM record's copy of its URI when
    /// this instance has not read the host yet); nil when this platform has no QEMU/OVMF to
    /// describe domains with.
    func hostDriver(name: String, uri: String?) -> QEMUHypervisor? {
        if let d = hostDrivers.withLock({ $0[name] }) { return d }
        guard let installation = qemu else { return nil }
        let known = hostCache.withLock { $0[name] }
        guard let uri = known?.uri ?? uri else { return nil }
        let ship = known?.shipFiles ?? !FleetRules.hostIsThisMachine(uri)
        let tpm = LibvirtTPMBackend(rawValue: known?.tpm ?? (try? FleetRules.hostTPM(nil, uri: uri,
                                                                                     shipFiles: ship)) ?? "emulator") ?? .emulator
        let made = QEMUHypervisor(installation: installation, bootTimeout: qemuDriver.bootTimeout, context: context,
                                  engine: .libvirt(LibvirtConnection(uri: uri, ship: ship), tpm: tpm))
        let (driver, new) = hostDrivers.withLock { d -> (QEMUHypervisor, Bool) in
            if let existing = d[name] { return (existing, false) }
            d[name] = made
            return (made, true)
        }
        if new { driver.observe { [weak self] event in await self?.handle(event) } }
        return driver
    }

    /// Reads the hosts again (another instance sharing the database may have added or removed one).
    public func refreshHosts() async {
        if let hosts = try? await store.hosts() { remember(hosts) }
    }

    func remember(_ hosts: [LibvirtHost]) {
        hostCache.withLock { c in c = Dictionary(uniqueKeysWithValues: hosts.map { ($0.name, $0) }) }
    }

    /// The hosts with the VMs placed on each (read once, and kept as the fleet's view of them).
    public func hostViews() async throws -> [HostView] {
        let hosts = try await store.hosts()
        remember(hosts)
        let placed = try await store.placements()
        return hosts.map { HostView(host: $0, vms: placed[$0.name] ?? []) }
    }

    /// Registers a libvirt host once it answers (`virsh -c URI nodeinfo`), so that a typo or a
    /// missing credential is found now and not at the first deploy.
    public func addHost(_ r: AddHostRequest) async throws -> HostView {
        try FleetRules.checkName(r.name, what: "host")
        try FleetRules.checkHostURI(r.uri)
        let ship = (r.shipFiles ?? false) || !FleetRules.hostIsThisMachine(r.uri)
        let tpm = try FleetRules.hostTPM(r.tpm, uri: r.uri, shipFiles: ship)
        if let m = r.maxVMs, !(1...100_000).contains(m) { throw FleetError(.invalid, "maxVMs must be 1 to 100000", field: "maxVMs") }
        guard qemu != nil else {
            throw FleetError(.invalid, "this platform did not find QEMU and OVMF (apt-get install qemu-system-x86 ovmf): it describes its "
                                     + "libvirt domains with them", field: "uri")
        }
        let existing = try await store.hosts()
        if let same = existing.first(where: { $0.uri == r.uri }) {
            throw FleetError(.conflict, "host \(same.name) has the URI \(r.uri) already (one libvirt host, counted once)", field: "uri")
        }
        let info: LibvirtConnection.NodeInfo
        switch await LibvirtConnection(uri: r.uri).inspect() {
        case .success(let i): info = i
        case .failure(let e): throw FleetError(.invalid, """
            libvirt at \(r.uri) does not answer: \(e.message) — check the URI, the daemon and the credentials (virsh -c \(r.uri) \
            nodeinfo); the host was not added
            """, field: "uri")
        }
        let now = Time.millis()
        let host = LibvirtHost(name: r.name, uri: r.uri, tpm: tpm, shipFiles: ship, maxVMs: r.maxVMs, memoryMiB: info.memoryMiB,
                               cpus: info.cpus, state: .reachable,
                               detail: info.versions, lastSeen: now, since: now, added: now)
        guard try await store.insertHost(host) else {
            throw FleetError(.conflict, "a host named \(r.name) exists (tlaunch host list)", field: "name")
        }
        hostCache.withLock { $0[host.name] = host }
        logger.info(
            "libvirt host added",
            metadata: [
                "host": .string(host.name), "uri": .string(host.uri), "tpm": .string(tpm), "shipFiles": .stringConvertible(ship),
                "capacity": .stringConvertible(host.capacity)
            ])
        return HostView(host: host, vms: [])
    }

    /// Forgets a host that has no VMs (a VM keeps its place until it is deleted).
    public func removeHost(_ name: String) async throws {
        try FleetRules.checkName(name, what: "host")
        let vms = try await store.placements()[name] ?? []
        guard vms.isEmpty else {
            let listed = vms.prefix(20).joined(separator: ", ") + (vms.count > 20 ? ", …" : "")
            throw FleetError(.conflict, "host \(name) has VMs: \(listed) — delete them first", field: "name")
        }
        guard try await store.deleteHost(name) else {
            throw FleetError(.notFound, "no libvirt host named \(name) (tlaunch host list)", field: "name")
        }
        hostCache.withLock { $0[name] = nil }
        hostDrivers.withLock { $0[name] = nil }
        logger.info("libvirt host removed", metadata: ["host": .string(name)])
    }

    /// The platform's own libvirt connection (`up --hypervisor libvirt`) as host `name`, unless a
    /// host has its URI already.
    public func registerPlatformHost(name: String = "local", uri: String, tpm: LibvirtTPMBackend) async {
        guard let hosts = try? await store.hosts(), !hosts.contains(where: { $0.uri == uri || $0.name == name }) else {
            await refreshHosts(); return
        }
        do { _ = try await addHost(AddHostRequest(name: name, uri: uri, tpm: tpm.rawValue)) } catch {
            logger.warning("the platform's libvirt connection is not a registered host",
                           metadata: ["uri": .string(uri), "error": .string("\(error)")])
        }
    }

    /// A libvirt VM goes on a host when hosts are registered (none: the platform's own libvirt connection).
    func place(_ vm: inout VMRecord, wanted: String?) async throws {
        guard vm.hypervisor == FleetRules.libvirt else {
            if wanted != nil { throw FleetError(.invalid, "--host places libvirt VMs: give --hypervisor libvirt", field: "host") }
            return
        }
        let hosts = hostCache.withLock { Array($0.values) }.sorted { $0.name < $1.name }
        if hosts.isEmpty, wanted == nil, libvirtDriver != nil { return }
        let placed = try await store.placements().mapValues(\.count)
        let host = try FleetRules.place(on: hosts, placed: placed, wanted: wanted)
        vm.host = host.name
        vm.hostURI = host.uri
    }

    /// Looks at every host (every `hostCheckInterval` from the monitor): one that stops answering
    /// makes its running VMs Unknown, each with a High alert; when it answers again, each such VM
    /// is Running again if its domain still runs, Failed (with an alert) if not.
    public func checkHosts(now: Int64 = Time.millis()) async {
        lastHostCheck.withLock { $0 = now }
        await refreshHosts()
        for host in hostCache.withLock({ Array($0.values) }).sorted(by: { $0.name < $1.name }) {
            var next = host
            // One slow or failed answer is asked again before a host is called unreachable.
            var probe = await LibvirtConnection(uri: host.uri).inspect(timeout: .seconds(15))
            if case .failure = probe {
                try? await Task.sleep(for: .milliseconds(500))
                probe = await LibvirtConnection(uri: host.uri).inspect(timeout: .seconds(15))
            }
            switch probe {
            case .success(let info):
                next.state = .reachable
                next.memoryMiB = info.memoryMiB; next.cpus = info.cpus; next.detail = info.versions; next.lastSeen = now
            case .failure(let e):
                next.state = .unreachable
                next.detail = e.message
            }
            if next.state != host.state { next.since = now }
            let changed = next.state != host.state
            // Of several instances checking, the one whose write finds the old state tells of the change.
            guard (try? await store.updateHost(next, expected: changed ? host.state : nil)) == true else { continue }
            hostCache.withLock { $0[host.name] = next }
            if changed {
                if next.state == .unreachable {
                    logger.error("libvirt host does not answer",
                                 metadata: ["host": .string(host.name), "uri": .string(host.uri), "error": .string(next.detail)])
                } else {
                    logger.notice("libvirt host answers again", metadata: ["host": .string(host.name), "uri": .string(host.uri)])
                }
            }
            await settleVMs(on: next)
        }
    }

    /// The VMs of `host` after a check: Unknown while it does not answer, looked up when it does.
    func settleVMs(on host: LibvirtHost) async {
        guard let vms = try? await store.vms(onHost: host.name) else { return }
        if host.state == .unreachable {
            for vm in vms where vm.powerState == .running {
                guard let updated = try? await mutate(vm.name, { v in
                    guard v.powerState == .running else { throw FleetError(.conflict, "changed meanwhile") }
                    v.powerState = .unknown
                }) else { continue }
                try? await store.appendEvent(vm: vm.name, kind: .hostUnreachable,
                                             message: "host \(host.name) does not answer (\(host.detail)): power state Unknown")
                try? await raise(AlertBuilder.hostUnreachable(updated, host: host))
            }
            return
        }
        for vm in vms where vm.powerState == .unknown {
            let domain = LibvirtDomainXML.domainName(vm.name)
            let look = await LibvirtConnection(uri: host.uri).lookup(domain)
            let runsHere = hypervisor(for: vm).isRunning(vm.name)
            // Running, but its vTPM and relay are another instance's (sharing the database): that
            // instance settles it. (A platform restart boots the Unknown VMs of answering hosts again.)
            if case .state(let s) = look, s == "running" || s == "paused", !runsHere { continue }
            if case .state(let s) = look, s == "running" || s == "paused" {
                guard (try? await mutate(vm.name, { v in
                    guard v.powerState == .unknown else { throw FleetError(.conflict, "changed meanwhile") }
                    v.powerState = .running
                })) != nil else { continue }
                try? await store.appendEvent(vm: vm.name, kind: .hostReachable,
                                             message: "host \(host.name) answers again; the VM kept running")
                try? await resolve(vm: vm.name, kinds: [.hostUnreachable],
                                   resolution: "host \(host.name) answered again and the VM's domain was still \(s)")
            } else {
                let what: String
                switch look {
                case .state(let s): what = "libvirt: \(s)"
                case .absent: what = "libvirt has no domain \(domain)"
                case .unreachable(let why): what = "libvirt: \(why)"
                }
                guard let updated = try? await mutate(vm.name, { v in
                    guard v.powerState == .unknown else { throw FleetError(.conflict, "changed meanwhile") }
                    v.powerState = .failed
                }) else { continue }
                await hypervisor(for: vm).stop(vm.name, timeout: nil)
                try? await store.appendEvent(vm: vm.name, kind: .crashed, message: "host \(host.name) answers again but the VM is not "
                                                                                 + "running (\(what)); the VM is off (tlaunch vm start "
                                                                                 + "\(vm.name) boots it again)")
                try? await resolve(vm: vm.name, kinds: [.hostUnreachable],
                                   resolution: "host \(host.name) answered again; the VM was not running (\(what))")
                try? await raise(AlertBuilder.crashed(updated, how: "was not running when host \(host.name) answered again (\(what))",
                                                      console: ""))
            }
        }
    }
}

extension LibvirtConnection {
    /// What `virsh nodeinfo` and `virsh version` say of the host.
    struct NodeInfo: Sendable {
        var memoryMiB: Int
        var cpus: Int
        var versions: String
    }

    /// The host's memory, CPUs and versions, or what kept virsh from getting them.
    func inspect(timeout: Duration = .seconds(30)) async -> Result<NodeInfo, FleetError> {
        do {
            let node = try await run(["nodeinfo"], timeout: timeout)
            func field(_ label: String) -> Int? {
                node.split(separator: "\n").first { $0.hasPrefix(label) }
                    .flatMap { Int($0.dropFirst(label.count).trimmingCharacters(in: .whitespaces).split(separator: " ").first ?? "") }
            }
            guard let kib = field("Memory size:"), let cpus = field("CPU(s):") else {
                return .failure(FleetError(.failed, "virsh nodeinfo answered without memory size and CPUs: \(node.prefix(200))"))
            }
            let version = (try? await run(["version"], timeout: timeout)) ?? ""
            let versions = version.split(separator: "\n").filter { $0.contains("Running hypervisor") || $0.contains("Using library") }
                .map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: "; ")
            return .success(NodeInfo(memoryMiB: kib / 1024, cpus: cpus, versions: versions))
        } catch let e as FleetError {
            return .failure(e)
        } catch {
            return .failure(FleetError(.failed, "\(error)"))
        }
    }
}
