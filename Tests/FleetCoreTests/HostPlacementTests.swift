import FleetCore
import Foundation
import Testing

/// Where a libvirt VM goes: the rules alone (no libvirt), hosts in the states a fleet sees.
@Suite("libvirt hosts: placement and the rules for adding one")
struct HostPlacementTests {
    static func host(_ name: String, memoryMiB: Int = 8192, maxVMs: Int? = nil, state: LibvirtHost.State = .reachable) -> LibvirtHost {
        LibvirtHost(name: name, uri: "qemu+ssh://\(name)/system", tpm: "emulator", maxVMs: maxVMs, memoryMiB: memoryMiB, cpus: 4,
                    state: state,
                    detail: state == .reachable ? "libvirt 9.0.0" : "cannot connect", lastSeen: 1, since: 1, added: 1)
    }

    @Test func theAnsweringHostWithTheMostRoomTakesTheVM() throws {
        // 8 GiB less 1 GiB for the host: 7 VMs of 1 GiB; --max-vms caps it.
        #expect(Self.host("a").capacity == 7 && Self.host("a", maxVMs: 2).capacity == 2 && Self.host("tiny", memoryMiB: 1500).capacity == 0)
        let hosts = [Self.host("a"), Self.host("b", memoryMiB: 16384), Self.host("c", memoryMiB: 65536, state: .unreachable)]
        // c is the biggest but does not answer; b has more room than a.
        #expect(try FleetRules.place(on: hosts, placed: [:], wanted: nil).name == "b")
        #expect(try FleetRules.place(on: hosts, placed: ["b": 12], wanted: nil).name == "a")   // b: 3 left, a: 7
        // Ties go by name, so placement is the same on every instance.
        #expect(try FleetRules.place(on: [Self.host("z"), Self.host("m")], placed: [:], wanted: nil).name == "m")
        // A wanted host is taken when it answers and has room, whatever the others have.
        #expect(try FleetRules.place(on: hosts, placed: [:], wanted: "a").name == "a")
    }

    @Test func aVMIsRefusedWithWhatEachHostLacksWhenNoneHasRoom() {
        let hosts = [Self.host("a", maxVMs: 1), Self.host("b", state: .unreachable)]
        do {
            _ = try FleetRules.place(on: hosts, placed: ["a": 1], wanted: nil)
            Issue.record("placed a VM with no room anywhere")
        } catch let e as FleetError {
            #expect(e.kind == .conflict && e.field == "host")
            #expect(
                e.message.contains("a: 1 of 1 VMs placed") && e.message.contains("b: does not answer")
                    && e.message.contains("tlaunch host add"), "\(e.message)")
        } catch { Issue.record("\(error)") }
        #expect(throws: FleetError.self) { try FleetRules.place(on: [], placed: [:], wanted: nil) }
        // Wanted: unknown (404), unreachable or full (409) — never silently elsewhere.
        #expect { try FleetRules.place(on: hosts, placed: [:], wanted: "nope") } throws: { ($0 as? FleetError)?.kind == .notFound }
        #expect { try FleetRules.place(on: hosts, placed: [:], wanted: "b") } throws: { ($0 as? FleetError)?.kind == .conflict }
        #expect { try FleetRules.place(on: hosts, placed: ["a": 1], wanted: "a") } throws: { ($0 as? FleetError)?.kind == .conflict }
    }

    @Test func hostURIsAndTPMBackendsAreChecked() throws {
        for good in ["qemu:///system", "qemu+ssh://root@h1/system", "qemu+tls://h1.example/system",
                     "qemu+unix:///system?socket=/run/x/libvirt-sock"] {
            #expect(throws: Never.self) { try FleetRules.checkHostURI(good) }
        }
        for bad in ["", "http://h1/", "xen:///system", "qemu+ssh://h1/system --readonly", "qemu:///system\u{1b}[2J",
                    "qemu+ssh://" + String(repeating: "h", count: 600)] {
            #expect { try FleetRules.checkHostURI(bad) } throws: { ($0 as? FleetError)?.field == "uri" }
        }
        // The external backend is the platform's socket: only a QEMU on this machine reaches it.
        #expect(try FleetRules.hostTPM(nil, uri: "qemu:///system") == "external")
        #expect(try FleetRules.hostTPM(nil, uri: "qemu+tls://h1/system") == "emulator")
        #expect { try FleetRules.hostTPM("external", uri: "qemu+ssh://h1/system") } throws: { ($0 as? FleetError)?.field == "tpm" }
        #expect { try FleetRules.hostTPM("tpm1.2", uri: "qemu:///system") } throws: { ($0 as? FleetError)?.field == "tpm" }
        // Copied files on this machine (as for a host elsewhere): the host's swtpm, not the platform's socket.
        #expect(try FleetRules.hostTPM(nil, uri: "qemu:///system", shipFiles: true) == "emulator")
        #expect { try FleetRules.hostTPM("external", uri: "qemu:///system",
                                         shipFiles: true) } throws: { ($0 as? FleetError)?.field == "tpm" }
    }
}
