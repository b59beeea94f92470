import AttestationAPI
import Testing
@testable import Attestation

/// A boot compared with its baseline, event by event: the shortcut for a boot equal to its
/// baseline answers what the full comparison answers.
@Suite struct BaselineDiffTests {
    static func component(_ key: String, _ value: String, name: String = "n", signer: String? = nil) -> BaselineComponent {
        BaselineComponent(key: key, pcr: 4, kind: .bootApplication, name: name, value: value, signer: signer)
    }

    @Test func aBootEqualToItsBaselineHasNoChangesAndOneStepAwayHasOne() {
        let boot = (0..<31).map { Self.component("PCR 4 image \($0)", "v\($0)", signer: $0 % 3 == 0 ? "CA" : nil) }
        #expect(Baseline.diff(baseline: boot, current: boot).isEmpty)
        #expect(Baseline.diff(baseline: [], current: []).isEmpty)
        var moved = boot
        moved[7].value = "other"
        #expect(Baseline.diff(baseline: boot, current: moved).map(\.key) == ["PCR 4 image 7"])
        var resigned = boot
        resigned[30].signer = "another CA"
        #expect(Baseline.diff(baseline: boot, current: resigned).map(\.change) == [.changed])
        #expect(Baseline.diff(baseline: boot, current: Array(boot.dropLast())).map(\.change) == [.removed])
        #expect(Baseline.diff(baseline: Array(boot.dropLast()), current: boot).map(\.change) == [.added])
    }

    /// A list whose key repeats (a stored baseline this build did not write) is compared as
    /// always, even when the boot equals it: each later component against the first of its key.
    @Test func aRepeatedKeyIsComparedWithTheFirstOfItsKeyEvenWhenTheBootEqualsItsBaseline() {
        let listed = [Self.component("PCR 4 image 1", "a"), Self.component("PCR 4 image 2", "b"), Self.component("PCR 4 image 1", "c")]
        let changes = Baseline.diff(baseline: listed, current: listed)
        #expect(changes.count == 1)
        #expect(changes.first?.change == .changed && changes.first?.from == "a" && changes.first?.to == "c")
        let same = [Self.component("PCR 4 image 1", "a"), Self.component("PCR 4 image 1", "a")]
        #expect(Baseline.diff(baseline: same, current: same).isEmpty)
    }
}
