import Foundation
import MeasuredBoot
import SecureBoot
import TLaunchTestSupport
import Testing
import X509

@Suite("Secure Boot: authenticated variable updates (dbx updates, enrolment files)")
struct AuthenticatedVariableTests {
    func microsoftKEK() throws -> SignatureDatabase {
        try SignatureDatabase(certificates: [Certificate(derEncoded: Corpus.bytes("uefi/certs/MicCorKEKCA2011_2011-06-24.der"))])
    }

    @Test(.corpus, arguments: ["ms_DBXUpdate2024_secureboot_objects.bin", "ms_DBXUpdate_amd64_secureboot_objects.bin",
                      "uefi_org_dbxupdate_x64_2021-04-29_go-tpm-tools.bin", "uefi_org_dbxupdate_x64_2020-10-12_go-tpm-tools.bin"])
    func microsoftDbxUpdatesVerifyAgainstTheirKEKAndApply(_ file: String) throws {
        guard Corpus.require() else { return }
        let update = try AuthenticatedVariableUpdate(Corpus.bytes("uefi/\(file)"))
        let result = update.verify(name: "dbx", guid: .imageSecurityDatabase, authorities: try microsoftKEK())
        guard case .success(let (anchor, _)) = result else { Issue.record("\(file): \(result)"); return }
        #expect(anchor.subject.description.contains("Microsoft Corporation KEK CA 2011"))
        // The payload is signature lists; applying it grows a dbx and is idempotent.
        let payload = try SignatureDatabase(esl: update.payload)
        #expect(payload.lists.reduce(0) { $0 + $1.entries.count } > 0)
        var dbx = SignatureDatabase()
        dbx.append(payload)
        let once = dbx.lists.reduce(0) { $0 + $1.entries.count }
        dbx.append(payload)
        #expect(dbx.lists.reduce(0) { $0 + $1.entries.count } == once)
        // Not for db, not with another authority, not tampered.
        if case .success = update.verify(name: "db", guid: .imageSecurityDatabase,
                                         authorities: try microsoftKEK()) { Issue.record("verified as db") }
        let other = try SignatureDatabase(certificates: [Certificate(derEncoded: Corpus.bytes("uefi/certs/PkKek-1-snakeoil.der"))])
        if case .success = update.verify(name: "dbx", guid: .imageSecurityDatabase,
                                         authorities: other) { Issue.record("verified with snakeoil") }
        var tampered = try Corpus.bytes("uefi/\(file)")
        tampered[tampered.count - 1] ^= 1
        if case .success = try AuthenticatedVariableUpdate(tampered).verify(name: "dbx", guid: .imageSecurityDatabase,
                                                                            authorities: try microsoftKEK()) {
            Issue.record("tampered payload verified")
        }
    }

    /// go-uefi's enrolment files: PK.auth self-signed by the PK, db.auth by the KEK. (Its KEK.auth
    /// comes from another key generation: it carries a different KEK certificate than KEK.der and
    /// its signer is not PK.der's key — so it must not verify against PK.der.)
    @Test(.corpus) func enrolmentChain() throws {
        guard Corpus.require() else { return }
        func cert(_ n: String) throws -> SignatureDatabase {
            try SignatureDatabase(certificates: [Certificate(derEncoded: Corpus.bytes("uefi/signed_var_updates_go-uefi/\(n).der"))])
        }
        let pk = try cert("PK"), kek = try cert("KEK")
        let kekAuth = try AuthenticatedVariableUpdate(Corpus.bytes("uefi/signed_var_updates_go-uefi/KEK.auth"))
        #expect(kekAuth.payload != (try Corpus.bytes("uefi/signed_var_updates_go-uefi/KEK.der.esl")))
        if case .success = kekAuth.verify(name: "KEK", guid: .globalVariable,
                                          authorities: pk) { Issue.record("KEK.auth verified against an unrelated PK") }
        for (name, file, authority, guid) in [("PK", "PK.auth", pk, EFIGUID.globalVariable),
                                              ("db", "db.auth", kek, .imageSecurityDatabase)] {
            let u = try AuthenticatedVariableUpdate(Corpus.bytes("uefi/signed_var_updates_go-uefi/\(file)"))
            if case .failure(let e) = u.verify(name: name, guid: guid, authorities: authority) { Issue.record("\(file): \(e)") }
            #expect(u.payload == (try Corpus.bytes("uefi/signed_var_updates_go-uefi/\(name).der.esl")), "\(file) payload")
        }
        // db.auth is not signed by the PK.
        let db = try AuthenticatedVariableUpdate(Corpus.bytes("uefi/signed_var_updates_go-uefi/db.auth"))
        if case .success = db.verify(name: "db", guid: .imageSecurityDatabase,
                                     authorities: pk) { Issue.record("db.auth verified with the PK") }
    }

    @Test func malformedUpdatesFailPrecisely() throws {
        let e1 = #expect(throws: SecureBootError.self) { try AuthenticatedVariableUpdate([UInt8](repeating: 0, count: 30)) }
        #expect(e1?.code == .truncated)
        var b = [UInt8](repeating: 0, count: 16) + [0xFF, 0xFF, 0, 0, 0, 2, 0xF1, 0x0E] + [UInt8](repeating: 0, count: 40)
        let e2 = #expect(throws: SecureBootError.self) { try AuthenticatedVariableUpdate(b) }
        #expect(e2?.field == "AuthInfo.Hdr.dwLength" && e2?.offset == 16)
        b[16] = 40; b[17] = 0
        let e3 = #expect(throws: SecureBootError.self) { try AuthenticatedVariableUpdate(b) }
        #expect(e3?.field == "AuthInfo.CertType")
    }
}

@Suite("Secure Boot: applying a dbx update to a real store")
struct ApplyUpdateTests {
    @Test(.corpus) func dbxUpdateOnTheMicrosoftStore() throws {
        guard Corpus.require(), FileManager.default.fileExists(atPath: DecisionTests.msVars) else { return }
        var store = try VariableStore(Array(try Data(contentsOf: URL(fileURLWithPath: DecisionTests.msVars))))
        let before = store.dbx.lists.reduce(0) { $0 + $1.entries.count }
        let update = try AuthenticatedVariableUpdate(Corpus.bytes("uefi/ms_DBXUpdate_amd64_secureboot_objects.bin"))
        let signer = try store.apply(update, to: "dbx")
        #expect(signer.subject.description.contains("Microsoft Corporation KEK CA 2011"))
        let after = store.dbx.lists.reduce(0) { $0 + $1.entries.count }
        #expect(after > before + 100)
        // The written store reads back the same; applying again adds nothing.
        var reread = try VariableStore(store.bytes)
        #expect(reread.dbx.lists.reduce(0) { $0 + $1.entries.count } == after)
        try reread.apply(update, to: "dbx")
        #expect(reread.dbx.lists.reduce(0) { $0 + $1.entries.count } == after)
        // A store whose KEK is not Microsoft's refuses it, and stays as it was.
        if FileManager.default.fileExists(atPath: "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd") {
            var snake = try VariableStore(Array(try Data(contentsOf: URL(fileURLWithPath: "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd"))))
            let original = snake.bytes
            #expect(throws: SecureBootError.self) { try snake.apply(update, to: "dbx") }
            #expect(snake.bytes == original)
        }
    }
}
