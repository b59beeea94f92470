import TPM2

/// Entry points for fuzzing the vTPM's command processing with untrusted bytes. The libFuzzer
/// target in `Fuzz/` calls these, and the test suite replays the saved corpus.
public enum VTPMFuzzing {
    /// Feeds a stream of commands (each framed by its own header size, the rest as one final
    /// command) to a fresh, started vTPM. Invariants: nothing traps, and every response is a
    /// well-formed TPM response whose declared size is its length (10 bytes for an error).
    public static func commands(_ data: [UInt8]) -> [String] {
        let tpm = VirtualTPM.ephemeral()
        var violations: [String] = []
        var offset = 0
        var count = 0
        while offset < data.count && count < 64 {
            var size = data.count - offset
            if size >= 6 {
                let declared =
                    Int(data[offset + 2]) << 24 | Int(data[offset + 3]) << 16 | Int(data[offset + 4]) << 8 | Int(data[offset + 5])
                if declared >= 10 && declared <= size { size = declared }
            }
            let command = Array(data[offset..<(offset + size)])
            offset += size
            count += 1
            let locality = UInt8(count % 5)
            let response = tpm.handle(command, locality: locality)
            guard response.count >= 10 else {
                violations.append("command \(count): a response of \(response.count) bytes")
                continue
            }
            let declared = Int(response[2]) << 24 | Int(response[3]) << 16 | Int(response[4]) << 8 | Int(response[5])
            if declared != response.count { violations.append("command \(count): responseSize \(declared) but \(response.count) bytes") }
            let rc = UInt32(response[6]) << 24 | UInt32(response[7]) << 16 | UInt32(response[8]) << 8 | UInt32(response[9])
            if rc != 0 && response.count != 10 { violations.append("command \(count): an error response with a body") }
            if response.count > 4096 { violations.append("command \(count): a response larger than the TPM's buffer") }
        }
        return violations
    }

    /// A volatile state blob from the hypervisor (CMD_SET_STATEBLOB type 2, applied at CMD_INIT).
    /// Invariants: nothing traps; a refused blob changes nothing; an accepted one leaves a TPM
    /// that answers commands with well-formed responses and exports a blob that parses again.
    public static func volatileState(_ data: [UInt8]) -> [String] {
        let tpm = VirtualTPM.ephemeral()
        let before = tpm.exportVolatileState()
        do {
            try tpm.resumeVolatileState(data)
        } catch {
            // Time moves on between the two exports: compare what a refusal could have changed.
            var b = (try? VolatileState(tpmBytes: before)), a = (try? VolatileState(tpmBytes: tpm.exportVolatileState()))
            b?.time = 0; a?.time = 0
            return a == b ? [] : ["a refused blob changed the TPM's volatile state"]
        }
        var violations: [String] = []
        if (try? VolatileState(tpmBytes: tpm.exportVolatileState())) == nil { violations.append("the resumed TPM's volatile state does "
                                                                                              + "not parse again") }
        // The resumed TPM itself must answer: PCR_Read and GetRandom through the same dispatcher.
        for command: [UInt8] in [[0x80, 0x01, 0, 0, 0, 0x14, 0, 0, 0x01, 0x7E, 0, 0, 0, 1, 0, 0x0B, 3, 0xFF, 0xFF, 0xFF],
                                 [0x80, 0x01, 0, 0, 0, 0x0C, 0, 0, 0x01, 0x7B, 0, 8]] {
            let r = tpm.handle(command)
            if r.count < 10 || Int(r[2]) << 24 | Int(r[3]) << 16 | Int(r[4]) << 8 | Int(r[5]) != r.count {
                violations.append("a resumed TPM answered a malformed response")
            }
        }
        return violations
    }
}

