// swift-tools-version: 6.2
// libFuzzer targets. Build and run with Fuzz/run.sh (needs -sanitize=fuzzer, so it is not
// part of the main package's build).
import PackageDescription

let package = Package(
    name: "TrustedLaunchFuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "TrustedLaunch", path: "..")],
    targets: [
        .executableTarget(
            name: "FuzzTPM2Response",
            dependencies: [.product(name: "TPM2", package: "TrustedLaunch")]
        ),
        .executableTarget(
            name: "FuzzVTPMCommands",
            dependencies: [.product(name: "VirtualTPM", package: "TrustedLaunch")]
        ),
        .executableTarget(
            name: "FuzzVTPMVolatile",
            dependencies: [.product(name: "VirtualTPM", package: "TrustedLaunch")]
        ),
        .executableTarget(
            name: "FuzzPEImage",
            dependencies: [.product(name: "SecureBoot", package: "TrustedLaunch")]
        ),
        .executableTarget(
            name: "FuzzSignatureLists",
            dependencies: [.product(name: "SecureBoot", package: "TrustedLaunch")]
        ),
        .executableTarget(
            name: "FuzzVariableStore",
            dependencies: [.product(name: "SecureBoot", package: "TrustedLaunch")]
        ),
        .executableTarget(
            name: "FuzzESPImage",
            dependencies: [.product(name: "VirtualFirmware", package: "TrustedLaunch")]
        ),
        .executableTarget(
            name: "FuzzGrubConfig",
            dependencies: [.product(name: "VirtualFirmware", package: "TrustedLaunch")]
        ),
        .executableTarget(
            name: "FuzzEventLog",
            dependencies: [.product(name: "MeasuredBoot", package: "TrustedLaunch")]
        ),
        .executableTarget(
            name: "FuzzEvidence",
            dependencies: [.product(name: "Attestation", package: "TrustedLaunch")]
        ),
        .executableTarget(
            name: "FuzzEvidenceMutation",
            dependencies: [.product(name: "Attestation", package: "TrustedLaunch")]
        ),
        .executableTarget(
            name: "FuzzFleetRequest",
            dependencies: [.product(name: "FleetCore", package: "TrustedLaunch")]
        ),
        .executableTarget(
            name: "FuzzRelayFrames",
            dependencies: [.product(name: "GuestAgent", package: "TrustedLaunch")]
        ),
        .executableTarget(
            name: "FuzzIMALog",
            dependencies: [.product(name: "MeasuredBoot", package: "TrustedLaunch")]
        ),
    ]
)
