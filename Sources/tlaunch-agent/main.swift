import AttestationAPI
import Foundation
import GuestAgent
import TPM2

/// The guest attestation agent as it runs inside a VM of the platform: it reads the TPM at
/// /dev/tpmrm0 and the kernel's TCG event log, and reaches the attestation service through the
/// virtio-serial port the platform gives the VM (`org.tlaunch.agent.0`), whose host side adds
/// the VM's credential. Small on purpose: it goes into the guest's initramfs.
///
///   tlaunch-agent run [--interval SECONDS]   attest at start and every interval (default: the VM's, as the platform says)
///   tlaunch-agent attest                     attest once; exit 0 only when it passed
///   tlaunch-agent status [--json]            the guest's own view (Secure Boot, TPM, log, last attestation)
///
/// Every line it prints starts with "tlaunch-agent:" so the platform can find it on the console.

func say(_ s: String) {
    for line in s.split(separator: "\n", omittingEmptySubsequences: false) where !line.isEmpty {
        FileHandle.standardOutput.write(Data("tlaunch-agent: \(line)\n".utf8))
    }
}

func fail(_ s: String) -> Never {
    say("error: \(s)")
    exit(2)
}

/// The relay's answer: the VM, and (from platforms that say it) its attestation interval.
struct Identity: Decodable { var vm: String; var interval: Int? }

func makeAgent(_ args: [String]) async throws -> (GuestAgent, Identity) {
    var port: String?
    if let i = args.firstIndex(of: "--port"), i + 1 < args.count { port = args[i + 1] }
    var found = port ?? SerialChannel.findPort()
    var waited = 0
    while found == nil && waited < 30 {
        try await Task.sleep(for: .seconds(1)); waited += 1
        found = SerialChannel.findPort()
    }
    guard let path = found else { fail("no virtio-serial port named org.tlaunch.agent.0 (is virtio_console loaded, and was the VM started "
                                     + "by the platform?)") }
    let client = ServiceClient(channel: try SerialChannel(path: path))
    let id = try await client.call("GET", "/relay/identity", as: Identity.self, step: "identity")
    var tcti = TCTIConfiguration(kind: .device, path: "/dev/tpmrm0")
    tcti.timeout = .seconds(120)
    let ima = "/sys/kernel/security/ima/ascii_runtime_measurements"
    return (GuestAgent(tpm: TPMClient(transport: tcti.makeTransport()), service: client, vm: id.vm,
                       eventLogPath: "/sys/kernel/security/tpm0/binary_bios_measurements",
                       imaLogPath: FileManager.default.isReadableFile(atPath: ima) ? ima : nil), id)
}

let args = Array(CommandLine.arguments.dropFirst())
let command = args.first ?? "run"
do {
    switch command {
    case "run":
        // --interval, else what the platform says (the VM's attestation interval), else 60 s.
        let given = args.firstIndex(of: "--interval").flatMap { $0 + 1 < args.count ? Int(args[$0 + 1]) : nil }
        let (agent, identity) = try await makeAgent(args)
        let interval = max(1, given ?? identity.interval ?? 60)
        say("attesting \(agent.vm) every \(interval) s through the host's relay")
        var backoff = 1
        while true {
            var ok = false
            do {
                say(GuestAgent.describe(try await agent.attest(), showToken: false))   // the console is no place for a credential
                ok = true
            } catch {
                say("attestation failed: \(error)")
            }
            // The guest's own view goes to the platform for `tlaunch vm guest` and the overview.
            let status = await agent.status()
            _ = try? await agent.service.send("POST", "/relay/status", json: try JSONEncoder().encode(status), step: "status")
            try await Task.sleep(for: .seconds(ok ? interval : backoff))
            backoff = ok ? 1 : min(backoff * 2, interval)
        }
    case "attest":
        let o = try await makeAgent(args).0.attest()
        say(GuestAgent.describe(o, showToken: false))
        exit(o.passed ? 0 : 1)
    case "status":
        let s = await (try makeAgent(args)).0.status()
        if args.contains("--json") {
            let e = JSONEncoder()
            e.outputFormatting = [.sortedKeys]
            say(String(decoding: try e.encode(s), as: UTF8.self))
        } else {
            say(s.text)
        }
    default:
        fail("unknown command \(command): use run, attest or status")
    }
} catch {
    fail("\(error)")
}
