import ArgumentParser
import Foundation
import TPM2

@main
struct TLaunch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tlaunch",
        abstract: "TrustedLaunch: Trusted Launch for virtual machines (Secure Boot, vTPM, Measured Boot, integrity monitoring).",
        subcommands: [
            Up.self, PlatformDemo.self, VMCommand.self, ImageCommand.self, AlertCommand.self, HostCommand.self, TPMCommand.self,
            VTPMCommand.self, EventLogCommand.self, IMACommand.self, SecureBootCommand.self, FirmwareCommand.self, Predict.self, Serve.self,
            TokenCommand.self, AgentCommand.self, WebhookCommand.self, TLSCommand.self
        ]
    )

    /// The offline commands' plain command lines run without ArgumentParser (`OfflineFastPath`), on the main
    /// thread (a nonisolated `main` would start a thread of the cooperative pool for them and wait for it);
    /// every other line, and every error, goes through ArgumentParser as before.
    @MainActor static func main() async {
        if let line = OfflineFastPath.line(for: Array(CommandLine.arguments.dropFirst())) {
            do { try OfflineFastPath.run(line) } catch { exit(withError: error) }
            return
        }
        await main(nil)
    }
}

/// `--tcti` as tpm2-tools spell it, falling back to TPM2TOOLS_TCTI.
struct TCTIOptions: ParsableArguments {
    @Option(name: [.customShort("T"), .long], help: """
        TPM connection, as tpm2-tools: swtpm:host=H,port=P | mssim:host=H,port=P | device:/dev/tpmrm0. Default: $TPM2TOOLS_TCTI, else \
        device:/dev/tpmrm0.
        """)
    var tcti: String?

    func client() throws -> TPMClient {
        let config = try TCTIConfiguration.resolve(tcti, environment: ProcessInfo.processInfo.environment)
        return TPMClient(transport: config.makeTransport())
    }
}

extension TPMError: LocalizedError {
    public var errorDescription: String? { description }
}
