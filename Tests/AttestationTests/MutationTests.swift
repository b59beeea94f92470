import Foundation
import MeasuredBoot
import TLaunchTestSupport
import Testing
@testable import Attestation

/// The property behind every refusal: mutations of a passing attestation — its log's events
/// (data, digests, types, PCRs, order, labels, additions), the PCR values sent, the quote, the
/// signature, the nonce — never pass unless they verify to the same facts as the boot the TPM
/// signed (claims such as image paths and event positions aside).
@Suite("Attestation: mutations of passing evidence never pass with other facts")
struct MutationTests {
    /// A deterministic generator (xorshift64*), so a failure is reproducible from its seed.
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state ^= state >> 12; state ^= state << 25; state ^= state >> 27
            return state &* 2685821657736338717
        }
    }

    @Test func randomMutationProgramsNeverPassWithOtherFacts() throws {
        let fixture = MutationFixture.shared
        #expect(fixture.facts.secureBoot.enabled == true && fixture.facts.kernelCommandLine == "/vmlinuz root=/dev/vda2 ro quiet")
        var rng = Generator(state: 0x7452_7573_7465_644C)
        var passed = 0, changedAndPassed = 0, runs = 0
        for _ in 0..<3000 {
            let length = Int.random(in: 1...12, using: &rng)
            let program = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let report = AttestationFuzzing.mutate(program)
            #expect(report.violations.isEmpty, "program \(hexString(program)): \(report.violations)")
            runs += 1
            if report.passed { passed += 1; if report.changed { changedAndPassed += 1 } }
        }
        // Not vacuous: some changes are harmless (claims, unquoted PCRs) and still pass; most do not.
        #expect(changedAndPassed > 0 && passed < runs / 2, "\(passed) of \(runs) passed, \(changedAndPassed) of them changed")
    }

    @Test func theAttacksOfTheSoundnessClassesAreAmongTheMutations() {
        // Relabel grub's kernel command line as a command (op 7 on the event), then on its own.
        let log = try! EventLog(parsing: [UInt8](Data(base64Encoded: MutationFixture.shared.evidence.eventLog)!))
        let cmdline = UInt8(log.events.firstIndex { String(decoding: $0.data, as: UTF8.self).hasPrefix("kernel_cmdline: ") }!)
        var r = AttestationFuzzing.mutate([7, cmdline, 0])
        #expect(!r.passed && r.changed)
        // Benign data in place of the command line (op 8: another event's data).
        r = AttestationFuzzing.mutate([8, cmdline, cmdline - 1])
        #expect(!r.passed)
        // A changed device path (a claim): passes, with the same facts.
        let app = UInt8(log.events.firstIndex { $0.type == .efiBootServicesApplication }!)
        r = AttestationFuzzing.mutate([0, app, 40, 0x20])
        #expect(r.passed && r.changed && r.violations.isEmpty)
    }

    @Test func fuzzCorpus() throws {
        #expect(try FuzzCorpus.replay("evidence-mutation", AttestationFuzzing.evidenceMutation) >= 20, "the corpus is committed")
    }
}
