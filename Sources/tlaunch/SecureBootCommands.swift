import ArgumentParser
import Foundation
import MeasuredBoot
import SecureBoot
import TPM2
import X509

extension SecureBootError: LocalizedError {
    public var errorDescription: String? { description }
}

struct SecureBootCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "secureboot",
        abstract: "UEFI Secure Boot: Authenticode digests, the firmware's boot decision, variable stores.",
        subcommands: [Keygen.self, Digest.self, Verify.self, Sign.self, Vars.self]
    )

    struct Digest: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "digest", abstract: "The Authenticode digest of a PE image (what "
                                                                                       + "db/dbx hashes and signatures hold).")
        @Argument(help: "The PE image (EFI application, driver, or kernel).") var image: String
        @Option(help: "sha1, sha256, sha384 or sha512.") var alg: String = "sha256"

        func run() throws {
            guard let a = PCRValues.bankNames[alg.lowercased()], a != .sm3_256 else {
                throw ValidationError("--alg must be sha1, sha256, sha384 or sha512")
            }
            print(hexString(try PEImage(readFile(image)).authenticodeDigest(a)))
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "verify",
            abstract: "Decide as UEFI firmware would whether an image may boot (exit status 0 only when allowed).")
        @Argument(help: "The PE image.") var image: String
        @Option(help: "An OVMF variable store (OVMF_VARS*.fd) whose db and dbx decide.") var vars: String?
        @Option(help: "db as EFI signature lists (.esl).") var db: String?
        @Option(help: "dbx as EFI signature lists (.esl).") var dbx: String?
        @Flag(help: "JSON output (see README).") var json = false

        func run() throws { try Self.run(image: image, vars: vars, db: db, dbx: dbx, json: json) }

        /// The command's work, for ArgumentParser's reading and `OfflineFastPath`'s alike.
        static func run(image: String, vars: String?, db: String?, dbx: String?, json: Bool) throws {
            let (dbValue, dbxValue): (SignatureDatabase, SignatureDatabase)
            if let vars {
                let store = try VariableStore(readFile(vars))
                (dbValue, dbxValue) = (store.db, store.dbx)
            } else if let db {
                dbValue = try SignatureDatabase(esl: readFile(db))
                dbxValue = try dbx.map { try SignatureDatabase(esl: readFile($0)) } ?? SignatureDatabase()
            } else {
                throw ValidationError("give --vars VARS.fd, or --db ESL [--dbx ESL]")
            }
            let decision = ImageVerifier.decide(try PEImage(readFile(image)), db: dbValue, dbx: dbxValue)
            if json {
                let enc = JSONEncoder()
                enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: try enc.encode(decision), as: UTF8.self))
            } else {
                print("\(decision.verdict.rawValue.uppercased()): \(decision.reason)")
                if let a = decision.authority {
                    print("authority: \(a.variable) \(a.type) \(a.subject ?? a.hash ?? "") (owner \(a.owner))")
                }
                print("image sha256 Authenticode digest: \(decision.imageDigestSHA256)")
                for s in decision.signatures {
                    print("signature (\(s.digestAlgorithm)) by \(s.signer ?? "?") issued by \(s.issuer ?? "?"): "
                        + "\(s.valid ? "valid" : "INVALID")\(s.problem.map { " — \($0)" } ?? "")")
                    if !s.chain.isEmpty { print("  chain: " + s.chain.joined(separator: " → ")) }
                }
            }
            if decision.verdict != .allowed { throw ExitCode(1) }
        }
    }

    struct Keygen: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "keygen", abstract: "Create a PK/KEK/db key set (RSA-2048, "
                                                                                       + "self-signed) with signature lists.")
        @Option(help: "Directory for PK/KEK/db .key, .pem and .esl files.") var output: String
        @Option(help: "Common name prefix of the certificates.") var name: String = "TrustedLaunch"
        @Option(help: "Owner GUID of the signature list entries.") var owner: String = "a0baa8a3-041d-48a8-bc87-c36d121b5e3d"

        func run() throws {
            guard let ownerGUID = EFIGUID(owner) else { throw ValidationError("--owner is not a GUID") }
            try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
            let set = try SecureBootKeySet.generate(commonName: name, owner: ownerGUID)
            let (pk, kek, db) = try set.databases()
            for (key, esl) in zip(set.keys, [pk, kek, db]) {
                let base = output + "/" + key.name
                guard FileManager.default.createFile(atPath: base + ".key", contents: Data(key.privateKeyPEM.utf8),
                                                     attributes: [.posixPermissions: 0o600]),
                      FileManager.default.createFile(atPath: base + ".pem", contents: Data(key.certificatePEM.utf8)),
                      FileManager.default.createFile(atPath: base + ".esl", contents: Data(esl.encoded)) else {
                    throw ValidationError("cannot write into \(output)")
                }
                print("\(key.name): \(key.certificate.subject) → \(base).key, .pem, .esl")
            }
        }
    }

    struct Sign: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "sign",
                                                        abstract: "Add an Authenticode signature to a PE image (like sbsign).")
        @Argument(help: "The PE image.") var image: String
        @Option(help: "The signer's private key (PEM, unencrypted: RSA, P-256 or P-384).") var key: String
        @Option(help: "The signer's certificate (PEM or DER).") var cert: String
        @Option(help: "Where to write the signed image.") var output: String

        func run() throws {
            let signer = try AuthenticodeSigner(keyPEM: String(decoding: readFile(key), as: UTF8.self), certificate: readFile(cert))
            let signed = try signer.sign(PEImage(readFile(image)))
            guard FileManager.default.createFile(atPath: output, contents: Data(signed)) else {
                throw ValidationError("cannot write \(output)")
            }
            print("signed \(image) → \(output) (\(signed.count) bytes; signer \(signer.certificate.subject))")
        }
    }

    struct Vars: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "vars", abstract: "OVMF variable stores.",
                                                        subcommands: [Show.self, Enroll.self, Update.self])

        struct Enroll: ParsableCommand {
            static let configuration = CommandConfiguration(
                commandName: "enroll",
                abstract: "Create a VM's variable store from a template with Secure Boot keys enrolled.",
                discussion: "Each of --pk/--kek/--db/--dbx takes certificates (PEM or DER) or signature lists (.esl); several may be "
                          + "given. --keys-from copies PK/KEK/db/dbx from another store (e.g. OVMF_VARS_4M.ms.fd for Microsoft's keys) "
                          + "before the options add to them.")
            @Argument(help: "The template store (e.g. /usr/share/OVMF/OVMF_VARS_4M.fd).") var template: String
            @Option(help: "Where to write the new store.") var output: String
            @Option(help: "Take PK, KEK, db and dbx from this store first.") var keysFrom: String?
            @Option(help: "Platform key certificate or ESL.") var pk: [String] = []
            @Option(help: "KEK certificate or ESL.") var kek: [String] = []
            @Option(help: "db certificate or ESL.") var db: [String] = []
            @Option(help: "dbx ESL.") var dbx: [String] = []
            @Option(help: "Owner GUID for the entries made from certificates.") var owner: String = "a0baa8a3-041d-48a8-bc87-c36d121b5e3d"

            func run() throws {
                guard let ownerGUID = EFIGUID(owner) else { throw ValidationError("--owner is not a GUID") }
                var store = try VariableStore(readFile(template))
                var sets: [SignatureDatabase] = [SignatureDatabase(), SignatureDatabase(), SignatureDatabase(), SignatureDatabase()]
                if let keysFrom {
                    let from = try VariableStore(readFile(keysFrom))
                    sets = [from.pk, from.kek, from.db, from.dbx]
                }
                for (i, files) in [pk, kek, db, dbx].enumerated() {
                    for f in files { sets[i].lists += try load(f, owner: ownerGUID).lists }
                }
                guard !sets[0].lists.isEmpty else { throw ValidationError("no PK: give --pk (or --keys-from); without a PK the firmware "
                                                                        + "stays in setup mode") }
                try store.enroll(pk: sets[0], kek: sets[1], db: sets[2], dbx: sets[3])
                guard FileManager.default.createFile(atPath: output,
                                                     contents: Data(store.bytes)) else { throw ValidationError("cannot write \(output)") }
                print("wrote \(output): PK \(sets[0].certificates.count), KEK \(sets[1].certificates.count), db "
                    + "\(sets[2].certificates.count) certificates, dbx \(sets[3].lists.reduce(0) { $0 + $1.entries.count }) entries")
            }

            func load(_ path: String, owner: EFIGUID) throws -> SignatureDatabase {
                let bytes = try readFile(path)
                if let text = String(bytes: bytes, encoding: .utf8), text.contains("BEGIN CERTIFICATE") {
                    return try SignatureDatabase(certificates: [try Certificate(pemEncoded: text)], owner: owner)
                }
                if bytes.first == 0x30, let c = try? Certificate(derEncoded: bytes) {
                    return try SignatureDatabase(certificates: [c], owner: owner)
                }
                return try SignatureDatabase(esl: bytes)
            }
        }

        struct Update: ParsableCommand {
            static let configuration = CommandConfiguration(
                commandName: "update",
                abstract: "Apply a signed update (e.g. a dbx update file) to a store, verified against its KEK or PK.")
            @Argument(help: "The variable store.") var file: String
            @Argument(help: "The signed update (EFI_VARIABLE_AUTHENTICATION_2 + signature lists).") var update: String
            @Option(help: "The variable: PK, KEK, db or dbx.") var variable: String = "dbx"
            @Option(help: "Where to write the updated store.") var output: String

            func run() throws {
                var store = try VariableStore(readFile(file))
                let before = (variable == "dbx" ? store.dbx : variable == "db" ? store.db : variable == "KEK" ? store.kek : store.pk).lists
                    .reduce(0) { $0 + $1.entries.count }
                let signer = try store.apply(AuthenticatedVariableUpdate(readFile(update)), to: variable)
                let after = (variable == "dbx" ? store.dbx : variable == "db" ? store.db : variable == "KEK" ? store.kek : store.pk).lists
                    .reduce(0) { $0 + $1.entries.count }
                guard FileManager.default.createFile(atPath: output,
                                                     contents: Data(store.bytes)) else { throw ValidationError("cannot write \(output)") }
                print("\(variable): \(before) → \(after) entries; authorised by \(signer.subject)")
            }
        }

        struct Show: ParsableCommand {
            static let configuration = CommandConfiguration(commandName: "show",
                                                            abstract: "PK, KEK, db, dbx, Secure Boot and boot entries of an OVMF_VARS*.fd.")
            @Argument(help: "The variable store.") var file: String
            @Flag(help: "JSON output (see README).") var json = false

            func run() throws {
                let store = try VariableStore(readFile(file))
                func certs(_ db: SignatureDatabase) -> [[String: Any]] {
                    db.certificates.map { ["subject": $0.certificate.subject.description, "owner": $0.entry.owner.description,
                                           "sha256Fingerprint": hexString(EventLogHash.hash(.sha256, $0.entry.data) ?? [])] }
                }
                func hashes(_ db: SignatureDatabase) -> Int { db.lists.filter { $0.type != .certX509 }.reduce(0) { $0 + $1.entries.count } }
                let live = store.variables.filter(\.isLive)
                if json {
                    var o: [String: Any] = ["authenticated": store.isAuthenticated,
                                            "secureBootWillBeEnabled": store.secureBootWillBeEnabled]
                    for (name, db) in [("PK", store.pk), ("KEK", store.kek), ("db", store.db), ("dbx", store.dbx)] {
                        o[name] = ["certificates": certs(db), "hashes": hashes(db)] as [String: Any]
                    }
                    o["variables"] = live.map { ["name": $0.name, "guid": $0.vendorGUID.description, "attributes": $0.attributes,
                                                 "size": $0.data.count] as [String: Any] }
                    print(jsonText(o))
                    return
                }
                print("\(store.isAuthenticated ? "authenticated" : "plain") variable store, \(live.count) live variables; Secure Boot "
                    + "\(store.secureBootWillBeEnabled ? "will be enabled (PK enrolled)" : "off (no PK: setup mode)")")
                for (name, db) in [("PK", store.pk), ("KEK", store.kek), ("db", store.db), ("dbx", store.dbx)] {
                    print("\(name): \(db.certificates.count) certificates, \(hashes(db)) hashes")
                    for c in certs(db) { print("  \(c["subject"] as? String ?? "")") }
                }
                for v in live where v.name.hasPrefix("Boot") || v.name == "SecureBootEnable" || v.name == "CustomMode" {
                    print("\(v.name) (\(v.vendorGUID)): \(v.data.count) bytes")
                }
            }
        }
    }
}
