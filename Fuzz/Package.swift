// swift-tools-version: 6.2
// libFuzzer targets. Build and run with Fuzz/run.sh (needs -sanitize=fuzzer, so it is not
// part of the main package's build).
import PackageDescription

let package = Package(
    name: "TrustedLaunchFuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "TrustedLaunch", path: "..")],
    targets: [
        // The driver every target shares (libFuzzer's entry and run loop).
        .target(name: "FuzzDriver"),
        .executableTarget(
            name: "FuzzTPM2Response",
            dependencies: ["FuzzDriver", .product(name: "FuzzTargets", package: "TrustedLaunch")]
        ),
        .executableTarget(
            name: "FuzzVTPMCommands",
            dependencies: ["FuzzDriver", .product(name: "FuzzTargets", package: "TrustedLaunch")]
        ),
        .executableTarget(
            name: "FuzzVTPMVolatile",
            dependencies: ["FuzzDriver", .product(name: "FuzzTargets", package: "TrustedLaunch")]
        ),
        .executableTarget(
            name: "FuzzPEImage",
            dependencies: ["FuzzDriver", .product(name: "FuzzTargets", package: "TrustedLaunch")]
        ),
        .executableTarget(
            name: "FuzzSignatureLists",
            dependencies: ["FuzzDriver", .product(name: "FuzzTargets", package: "TrustedLaunch")]
        ),
        .executableTarget(
            name: "FuzzVariableStore",
            dependencies: ["FuzzDriver", .product(name: "FuzzTargets", package: "TrustedLaunch")]
        ),
        .executableTarget(
            name: "FuzzESPImage",
            dependencies: ["FuzzDriver", .product(name: "FuzzTargets", package: "TrustedLaunch")]
        ),
        .executableTarget(
            name: "FuzzGrubConfig",
            dependencies: ["FuzzDriver", .product(name: "FuzzTargets", package: "TrustedLaunch")]
        ),
        .executableTarget(
            name: "FuzzEventLog",
            dependencies: ["FuzzDriver", .product(name: "FuzzTargets", package: "TrustedLaunch")]
        ),
        .executableTarget(
            name: "FuzzEvidence",
            dependencies: ["FuzzDriver", .product(name: "FuzzTargets", package: "TrustedLaunch")]
        ),
        .executableTarget(
            name: "FuzzEvidenceMutation",
            dependencies: ["FuzzDriver", .product(name: "FuzzTargets", package: "TrustedLaunch")]
        ),
        .executableTarget(
            name: "FuzzFleetRequest",
            dependencies: ["FuzzDriver", .product(name: "FuzzTargets", package: "TrustedLaunch")]
        ),
        .executableTarget(
            name: "FuzzRelayFrames",
            dependencies: ["FuzzDriver", .product(name: "FuzzTargets", package: "TrustedLaunch")]
        ),
        .executableTarget(
            name: "FuzzIMALog",
            dependencies: ["FuzzDriver", .product(name: "FuzzTargets", package: "TrustedLaunch")]
        ),
    ]
)
