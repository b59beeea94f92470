// swift-tools-version: 6.2
import PackageDescription

// Warnings are errors in every target of ours (the contract in README.md).
let strict: [SwiftSetting] = [
    .treatAllWarnings(as: .error),
    .enableUpcomingFeature("ExistentialAny"),
]

// TLBigNum (Miller–Rabin while deriving a vTPM's RSA primes) can be built optimized even in debug
// builds, where it is otherwise ~2.6× slower. That takes an unsafe flag, and SwiftPM refuses a
// package with unsafe flags as a dependency of another: so the flag is asked for by this project's
// own scripts (TLAUNCH_OPTIMIZE_BIGNUM=1) and a package that depends on TrustedLaunch never sees it.
// `@_optimize(speed)` on its functions instead is not enough (measured 2026-12-07, debug builds,
// 30 `tlaunch vtpm setup` runs each, an RSA EK derived in each: plain 42.3 s, every function
// @_optimize(speed) 42.2 s, the multiply's loops also moved out of their closures 37.1 s, -O 16.9 s):
// the standard library's array and pointer code it calls stays unoptimized in a debug build.
let optimizedBigNum: [SwiftSetting] =
    Context.environment["TLAUNCH_OPTIMIZE_BIGNUM"] == "1" ? [.unsafeFlags(["-O"])] : []

let package = Package(
    name: "TrustedLaunch",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "tlaunch", targets: ["tlaunch"]),
        .executable(name: "tlaunch-agent", targets: ["tlaunch-agent"]),
        .library(name: "TPM2", targets: ["TPM2"]),
        .library(name: "VirtualTPM", targets: ["VirtualTPM"]),
        .library(name: "MeasuredBoot", targets: ["MeasuredBoot"]),
        .library(name: "SecureBoot", targets: ["SecureBoot"]),
        .library(name: "AttestationAPI", targets: ["AttestationAPI"]),
        .library(name: "GuestAgent", targets: ["GuestAgent"]),
        // The fuzz package's checks (Fuzz/ is a package of its own, built with -sanitize=fuzzer):
        // the platform itself (the virtual firmware, the verifier, the fleet) is the tlaunch
        // executable, not libraries for others.
        .library(name: "FuzzTargets", targets: ["FuzzTargets"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-crypto.git", exact: "4.5.2"),
        .package(url: "https://github.com/apple/swift-certificates.git", exact: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", exact: "1.7.4"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", exact: "1.8.2"),
        .package(url: "https://github.com/attaswift/BigInt.git", exact: "6.0.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", exact: "2.28.1"),
        .package(url: "https://github.com/vapor/postgres-nio.git", exact: "1.33.2"),
        .package(url: "https://github.com/apple/swift-log.git", exact: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", exact: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio.git", exact: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", exact: "2.37.6"),
    ],
    targets: [
        .target(
            name: "TPM2",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "BigInt", package: "BigInt"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "TLBigNum",
            swiftSettings: strict + optimizedBigNum
        ),
        .target(
            name: "VirtualTPM",
            dependencies: [
                "TPM2",
                "TLBigNum",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "BigInt", package: "BigInt"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "MeasuredBoot",
            dependencies: [
                "TPM2",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "SecureBoot",
            dependencies: [
                "TPM2",
                "MeasuredBoot",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "VirtualFirmware",
            dependencies: [
                "TPM2",
                "VirtualTPM",
                "MeasuredBoot",
                "SecureBoot",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        // The attestation API as its callers see it: requests, answers, evidence and its reader,
        // checks, baseline components, the error; the client and the relay's frames. No verifier,
        // no keys, no store: the agent, the CLI and the fleet's rules link this, not `Attestation`.
        .target(
            name: "AttestationAPI",
            dependencies: ["TPM2", "MeasuredBoot"],
            swiftSettings: strict
        ),
        .target(
            name: "Attestation",
            dependencies: [
                "TPM2",
                "MeasuredBoot",
                "AttestationAPI",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            swiftSettings: strict
        ),
        .systemLibrary(name: "CSQLite3", path: "Sources/CSQLite3", providers: [.apt(["libsqlite3-dev"])]),
        .target(
            name: "Storage",
            dependencies: [
                "Attestation",
                "AttestationAPI",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                "CSQLite3",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "Server",
            dependencies: [
                "TPM2",
                "MeasuredBoot",
                "Attestation",
                "AttestationAPI",
                "Storage",
                "Fleet",
                "ServiceTLS",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        // The platform's TLS: its CA and certificates, and the pinned HTTPS client.
        .target(
            name: "ServiceTLS",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "GuestAgent",
            dependencies: [
                "TPM2",
                "MeasuredBoot",
                "AttestationAPI",
            ],
            swiftSettings: strict
        ),
        .target(
            name: "FleetCore",
            dependencies: ["AttestationAPI"],
            swiftSettings: strict
        ),
        .target(
            name: "FuzzTargets",
            dependencies: ["TPM2", "VirtualTPM", "MeasuredBoot", "SecureBoot", "VirtualFirmware", "AttestationAPI", "Attestation",
                           "FleetCore"],
            swiftSettings: strict
        ),
        .target(
            name: "Fleet",
            dependencies: [
                "FleetCore",
                "TPM2",
                "VirtualTPM",
                "MeasuredBoot",
                "SecureBoot",
                "VirtualFirmware",
                "Attestation",
                "AttestationAPI",
                "Storage",
                "GuestAgent",
                "ServiceTLS",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "tlaunch",
            dependencies: [
                "TPM2",
                "VirtualTPM",
                "MeasuredBoot",
                "SecureBoot",
                "VirtualFirmware",
                "Attestation",
                "AttestationAPI",
                "Storage",
                "Server",
                "GuestAgent",
                "Fleet",
                "ServiceTLS",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The guest attestation agent as it runs inside a VM (in its initramfs): small, no server stack.
        .executableTarget(
            name: "tlaunch-agent",
            dependencies: ["GuestAgent", "AttestationAPI", "TPM2"],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "TLaunchBench",
            dependencies: ["TPM2", "VirtualTPM", "MeasuredBoot", "SecureBoot", "VirtualFirmware", "Attestation", "AttestationAPI",
                           "Storage", "GuestAgent", "Fleet", "ServiceTLS", .product(name: "Crypto", package: "swift-crypto"),
                           .product(name: "Logging", package: "swift-log"), .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOPosix", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio"),
                           .product(name: "NIOSSL", package: "swift-nio-ssl")],
            swiftSettings: strict
        ),
        .target(
            name: "TLaunchTestSupport",
            dependencies: ["TPM2", "VirtualTPM"],
            path: "Tests/TestSupport",
            swiftSettings: strict
        ),
        .testTarget(
            name: "TPM2Tests",
            dependencies: [
                "TPM2",
                "VirtualTPM",
                "TLaunchTestSupport",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ],
            resources: [.copy("Vectors")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "VirtualTPMTests",
            dependencies: [
                "TPM2",
                "VirtualTPM",
                "TLaunchTestSupport",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "MeasuredBootTests",
            dependencies: [
                "TPM2",
                "MeasuredBoot",
                "TLaunchTestSupport",
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "AttestationTests",
            dependencies: [
                "TPM2",
                "MeasuredBoot",
                "VirtualTPM",
                "VirtualFirmware",
                "Attestation",
                "AttestationAPI",
                "Storage",
                "Server",
                "GuestAgent",
                "Fleet",
                "TLaunchTestSupport",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "GuestAgentTests",
            dependencies: ["GuestAgent", "AttestationAPI", "Attestation", "TPM2", "VirtualTPM"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "StorageTests",
            dependencies: ["Storage"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ServerTests",
            dependencies: ["Server", "FleetCore"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "FleetCoreTests",
            dependencies: ["FleetCore", "AttestationAPI"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "FleetTests",
            dependencies: [
                "TPM2",
                "VirtualTPM",
                "VirtualFirmware",
                "Attestation",
                "AttestationAPI",
                "Storage",
                "Server",
                "GuestAgent",
                "Fleet",
                "FleetCore",
                "FuzzTargets",
                "ServiceTLS",
                "TLaunchTestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "VirtualFirmwareTests",
            dependencies: [
                "TPM2",
                "MeasuredBoot",
                "SecureBoot",
                "VirtualTPM",
                "VirtualFirmware",
                "TLaunchTestSupport",
                .product(name: "X509", package: "swift-certificates"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "SecureBootTests",
            dependencies: [
                "tlaunch",
                "TPM2",
                "MeasuredBoot",
                "SecureBoot",
                "VirtualTPM",
                "TLaunchTestSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
            ],
            swiftSettings: strict
        ),
    ]
)
