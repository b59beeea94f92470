import Foundation
import MeasuredBoot
import TPM2
import TLaunchTestSupport
import Testing

/// What the Measured Boot tests know about the real-world corpus (`Corpus`, TLaunchTestSupport).
enum SharedData {
    /// Logs that are malformed on purpose (SOURCES.md).
    static let malformed: Set<String> = ["edge_short_no_action_go-attestation.bin", "fragment_specid_vendordata_tpm2-tools.bin"]
}
