import ArgumentParser
import Foundation
import SwiftASN1
import TLaunchTestSupport
import Testing

@testable import tlaunch

/// `tlaunch secureboot verify` and `tlaunch eventlog replay` read plain command lines without ArgumentParser.
/// Every line the fast path takes must mean what ArgumentParser reads in it; every other line must be left to
/// ArgumentParser (help, errors, unusual spellings).
@Suite("CLI: the offline commands' fast path reads what ArgumentParser reads")
struct OfflineFastPathTests {
    /// ArgumentParser's reading of a command line, as the fast path's words say it.
    static func parsed(_ argv: [String]) throws -> OfflineFastPath.Line? {
        switch try TLaunch.parseAsRoot(argv) {
        case let v as SecureBootCommand.Verify: .verify(image: v.image, vars: v.vars, db: v.db, dbx: v.dbx, json: v.json)
        case let r as EventLogCommand.Replay: .replay(file: r.file, pcrs: r.pcrs, json: r.json)
        default: nil
        }
    }

    static let takenVerify: [[String]] = [
        ["shim.efi", "--db", "db.esl"],
        ["--db", "db.esl", "shim.efi"],
        ["shim.efi", "--db=db.esl", "--dbx", "dbx.esl", "--json"],
        ["--json", "--vars", "OVMF_VARS.fd", "grub.efi"],
        ["a b.efi", "--vars=with=equals.fd"],
        ["--dbx", "x.esl", "--db", "d.esl", "k", "--json"],
    ]

    static let leftVerify: [[String]] = [
        [], ["shim.efi"], ["--db", "db.esl"],                       // nothing to decide against, or no image
        ["--help"], ["-h"], ["shim.efi", "--db", "d", "--help"], ["help"],
        ["shim.efi", "--db"], ["shim.efi", "--db", "--json"],        // a missing value
        ["shim.efi", "--db", "a", "--db", "b"], ["s", "--db", "d", "--json", "--json"],
        ["s", "--db", "d", "--jsonx"], ["s", "--db", "d", "--json=yes"], ["s", "--db", "d", "-x"],
        ["s", "--db", "d", "--", "t"], ["-", "--db", "d"], ["a", "b", "--db", "d"],
        ["s", "--DB", "d"], ["s", "--db", "-d"], ["s", "--db="], ["s", "--db=", "--vars", "v"],
    ]

    @Test func everyPlainVerifyLineIsTakenAndMeansWhatArgumentParserReads() throws {
        for line in Self.takenVerify {
            let argv = ["secureboot", "verify"] + line
            let fast = try #require(OfflineFastPath.line(for: argv), "\(line)")
            #expect(try Self.parsed(argv) == fast, "\(line)")
        }
    }

    @Test func everyOtherVerifyLineIsLeftToArgumentParser() {
        for line in Self.leftVerify {
            #expect(OfflineFastPath.line(for: ["secureboot", "verify"] + line) == nil, "\(line)")
        }
        // Other commands are never taken, whatever their arguments.
        for argv in [["secureboot", "digest", "x"], ["eventlog", "parse", "x"], ["serve"], ["verify", "secureboot", "x", "--db", "d"]] {
            #expect(OfflineFastPath.line(for: argv) == nil, "\(argv)")
        }
    }

    @Test func plainReplayLinesAreTakenAndOthersLeft() throws {
        for line in [["log.bin"], ["log.bin", "--json"], ["--pcrs", "p.json", "log.bin"], ["log.bin", "--pcrs=p.json", "--json"]] {
            let argv = ["eventlog", "replay"] + line
            let fast = try #require(OfflineFastPath.line(for: argv), "\(line)")
            #expect(try Self.parsed(argv) == fast, "\(line)")
        }
        for line in [[], ["--help"], ["a", "b"], ["log", "--pcrs"], ["log", "--from", "3"], ["log", "--pcrs", "a", "--pcrs", "b"]] {
            #expect(OfflineFastPath.line(for: ["eventlog", "replay"] + line) == nil, "\(line)")
        }
    }

    /// The lines the fast path leaves still reach ArgumentParser: help, and a usage error with its status.
    @Test func theBinaryStillHelpsAndRefusesThroughArgumentParser() async throws {
        let (hs, ho, _) = try await Interop.run(Built.tlaunch, ["secureboot", "verify", "--help"])
        #expect(hs == 0 && ho.contains("USAGE: tlaunch secureboot verify"))
        let (us, _, ue) = try await Interop.run(Built.tlaunch, ["secureboot", "verify", "x.efi", "--db"])
        #expect(us == 64 && ue.contains("Missing value for '--db <db>'"))
        // A run-time error from a fast-path line is reported as ArgumentParser reports it.
        let missing = "/nonexistent/\(UUID().uuidString).efi"
        let fast = try await Interop.run(Built.tlaunch, ["secureboot", "verify", missing, "--db", missing])
        let slow = try await Interop.run(Built.tlaunch, ["secureboot", "verify", "--db", missing, "--", missing])
        #expect(fast.0 == slow.0 && fast.1 == slow.1 && fast.2 == slow.2)
        #expect(fast.0 != 0 && fast.2.contains("cannot read \(missing)"))
    }

    /// The tag class's description (declared for speed) prints the words reflection printed.
    @Test func anASN1IdentifierStillReadsAsBefore() {
        #expect("\(ASN1Identifier.integer)" == "ASN1Identifier(tagNumber: 2, tagClass: universal)")
        #expect("\(ASN1Identifier(tagWithNumber: 3, tagClass: .contextSpecific))"
            == "ASN1Identifier(tagNumber: 3, tagClass: contextSpecific)")
    }
}
