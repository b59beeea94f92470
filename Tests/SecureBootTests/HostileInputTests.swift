import Foundation
import MeasuredBoot
import SecureBoot
import TLaunchTestSupport
import Testing

@Suite("Secure Boot: hostile images, signatures and stores give typed errors")
struct SecureBootHostileInputTests {
    func image() throws -> [UInt8] { try Corpus.bytes("pe/test_pecoff_signed_go-uefi.efi") }
    func le32(_ b: inout [UInt8], _ at: Int, _ v: UInt32) { for i in 0..<4 { b[at + i] = UInt8(v >> (8 * UInt32(i)) & 0xFF) } }
    func le16(_ b: inout [UInt8], _ at: Int, _ v: UInt16) { b[at] = UInt8(v & 0xFF); b[at + 1] = UInt8(v >> 8) }

    @Test(.corpus) func malformedHeaders() throws {
        guard Corpus.require() else { return }
        let good = try image()
        let pe = Int(UInt32(good[0x3C]) | UInt32(good[0x3D]) << 8)
        func fails(_ mutate: (inout [UInt8]) -> Void) -> SecureBootError? {
            var b = good
            mutate(&b)
            return #expect(throws: SecureBootError.self) { try PEImage(b) }
        }
        #expect(fails { $0[0] = 0 }?.field == "IMAGE_DOS_HEADER.e_magic")
        #expect(fails { self.le32(&$0, 0x3C, 0x7FFF_FFF0) }?.code == .truncated)
        #expect(fails { $0[pe] = 0 }?.field == "IMAGE_NT_HEADERS.Signature")
        #expect(fails { self.le16(&$0, pe + 6, 5000) }?.field == "IMAGE_FILE_HEADER.NumberOfSections")
        #expect(fails { self.le16(&$0, pe + 24, 0x999) }?.field == "IMAGE_OPTIONAL_HEADER.Magic")
        // A section beyond the end of the file, and two overlapping sections.
        let optSize = Int(UInt16(good[pe + 20]) | UInt16(good[pe + 21]) << 8)
        let sections = pe + 24 + optSize
        #expect(fails { self.le32(&$0, sections + 16, 0x7000_0000) }?.reason.contains("beyond the end") == true)
        let count = Int(UInt16(good[pe + 6]) | UInt16(good[pe + 7]) << 8)
        if count >= 2 {
            let second = UInt32(good[sections + 40 + 20]) | UInt32(good[sections + 40 + 21]) << 8 | UInt32(good[sections + 40 + 22]) << 16
            #expect(fails { self.le32(&$0, sections + 20, second) }?.reason.contains("overlap") == true)
        }
        // The certificate table out of the file, misaligned, or not at its end.
        let isPlus = good[pe + 24] == 0x0B && good[pe + 25] == 0x02
        let certEntry = pe + 24 + (isPlus ? 112 : 96) + 32
        #expect(fails { self.le32(&$0, certEntry + 4, 0x7000_0000) }?.field == "DataDirectory[SECURITY]")
        #expect(fails { $0.append(0) }?.reason.contains("does not end the file") == true)
    }

    @Test(.corpus) func everyTruncationIsAnError() throws {
        guard Corpus.require() else { return }
        let good = try image()
        var failures = 0
        for cut in stride(from: 0, to: good.count, by: 37) {
            do { _ = try PEImage(Array(good.prefix(cut))) } catch { failures += 1 }
        }
        #expect(failures > 0)
    }

    @Test(.corpus) func malformedSignatures() throws {
        #expect(throws: SecureBootError.self) { try AuthenticodeSignature(pkcs7: []) }
        #expect(throws: SecureBootError.self) { try AuthenticodeSignature(pkcs7: [0x30, 0x84, 0x7F, 0xFF, 0xFF, 0xFF, 0x02]) }
        let e = #expect(throws: SecureBootError.self) { try AuthenticodeSignature(pkcs7: [0x30, 0x03, 0x02, 0x01, 0x01]) }
        #expect(e?.code == .invalidSignature)
        // A real signature with one byte of its certificate changed still parses or fails typed.
        guard Corpus.require() else { return }
        let img = try PEImage(try image())
        let sig = try img.certificates()[0].data
        for i in stride(from: 0, to: sig.count, by: 97) {
            var b = sig
            b[i] ^= 0x5A
            _ = try? AuthenticodeSignature(pkcs7: b)
        }
    }

    @Test func malformedVariableStores() throws {
        #expect(throws: SecureBootError.self) { try VariableStore([UInt8](repeating: 0, count: 100)) }
        guard let blank = FileManager.default.contents(atPath: "/usr/share/OVMF/OVMF_VARS_4M.fd") else { return }
        var b = Array(blank)
        b[0x48] ^= 0xFF  // the variable store signature
        let e = #expect(throws: SecureBootError.self) { try VariableStore(b) }
        #expect(e?.field == "VARIABLE_STORE_HEADER.Signature")
    }
}
