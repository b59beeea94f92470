import Crypto
import MeasuredBoot
import Synchronization
import SecureBoot
import TPM2
import VirtualTPM
import X509

/// A VM's firmware settings: what the firmware enforces and measures into. Plain switches: the
/// fleet's security types (TrustedLaunch, Standard) are the fleet's words, and it derives these
/// from them (`VMRecord.firmwareSecureBoot`, `firmwareVTPM` in FleetCore).
public struct FirmwareSettings: Sendable {
    /// Enforce Secure Boot (it is enforced only when the store also has a PK, as in UEFI).
    public var secureBoot: Bool
    /// Measure into a vTPM (without one nothing is measured: the log holds its header only).
    public var vTPM: Bool
    /// The VM's variable store (PK/KEK/db/dbx, boot entries). Nil: an empty store.
    public var variables: VariableStore?
    /// The PCR banks the vTPM has active (and the event log carries).
    public var banks: [TPMAlgID]

    public init(secureBoot: Bool = true, vTPM: Bool = true, variables: VariableStore? = nil, banks: [TPMAlgID] = [.sha1, .sha256]) {
        self.secureBoot = secureBoot; self.vTPM = vTPM
        self.variables = variables; self.banks = banks
    }
}

/// One image the boot ran (or refused), in order.
public struct BootStage: Sendable, Codable, Hashable {
    public var kind: BootImageKind
    public var path: String
    public var loadedBy: String
    public var authenticodeSHA256: String
    /// What verified it ("db", "MokListRT", …) when Secure Boot was enforced.
    public var verifiedBy: String?
    public var authority: String?
}

/// The outcome of a launch: the event log as written, the stages, the kernel it reached, and
/// why it failed when it did (the log then ends where the real firmware would have stopped).
public struct LaunchReport: Sendable {
    public var log: EventLog
    public var stages: [BootStage]
    public var secureBootEnforced: Bool
    public var kernel: String?
    public var kernelCommandLine: String?
    public var initrds: [String]
    public var failure: FirmwareError?
    public var pcrs: PCRValues { log.replay() }
    public var succeeded: Bool { failure == nil }
}

/// TrustedLaunch's virtual UEFI firmware: it boots a VM's ESP the way OVMF does — measuring
/// into the VM's vTPM with OVMF's event types, order and data, enforcing Secure Boot with the
/// firmware's decision — and simulates the Linux boot chain after it (shim, grub, the kernel's
/// EFI stub) as those components measure. The same code predicts a VM's event log and PCRs
/// without booting it.
public struct VirtualFirmware: Sendable {
    public static let version = "1.0.0"
    public static let vendor = "TrustedLaunch"

    /// Whose firmware measurements (PCRs 0–3, 5, 6) the log holds.
    public enum Model: Sendable {
        /// This firmware's own (published by `tlaunch firmware reference-values`).
        case tlaunch
        /// OVMF's, copied from the event log of a recorded reference boot (nil: left out).
        case ovmf(reference: EventLog?)
    }

    public var settings: FirmwareSettings { didSet { databases = Self.databases(settings) } }
    public var model: Model
    /// db and dbx parsed once for all launches of these settings, with their digest.
    var databases: (db: SignatureDatabase, dbx: SignatureDatabase, key: [UInt8])?
    /// Secure Boot decisions shared between launches (a host boots the same images again and again).
    public var cache: DecisionCache?

    public init(settings: FirmwareSettings, model: Model = .tlaunch, cache: DecisionCache? = nil) {
        self.settings = settings; self.model = model; self.cache = cache
        databases = Self.databases(settings)
    }

    static func databases(_ settings: FirmwareSettings) -> (db: SignatureDatabase, dbx: SignatureDatabase, key: [UInt8])? {
        guard let store = settings.variables else { return nil }
        let db = store.db, dbx = store.dbx
        return (db, dbx, [0] + Array(SHA256.hash(data: db.encoded + [0xFF] + dbx.encoded)))
    }

    /// Boots `esp`: every measurement goes to the event log and, when `tpm` is given, is
    /// extended into it (after TPM2_Startup, as firmware does at power-on).
    public func launch(esp: ESP, tpm: (any FirmwareTPM)? = nil) throws(FirmwareError) -> LaunchReport {
        var run = try Run(settings: settings, model: model, esp: esp, tpm: tpm, databases: databases, cache: cache)
        run.boot()
        return run.report
    }

    /// The PCR values and log a VM will have, without a vTPM.
    public func predict(esp: ESP) throws(FirmwareError) -> LaunchReport { try launch(esp: esp, tpm: nil) }
}

/// The TPM as the firmware sees it: a device that powers on (a TPM reset) and answers one command
/// at a time, synchronously, as a CRB interface does. Any TPM engine in this process can serve a
/// boot; the platform's vTPM is one.
public protocol FirmwareTPM: Sendable {
    /// Platform reset: PCRs back to their reset values, sessions and transient objects gone.
    func powerOn()
    /// One command at locality 0, one response.
    func handle(_ command: [UInt8], locality: UInt8) -> [UInt8]
}

extension FirmwareTPM {
    func handle(_ command: [UInt8]) -> [UInt8] { handle(command, locality: 0) }
}

extension VirtualTPM: FirmwareTPM {}

/// One boot in progress.
struct Run {
    let settings: FirmwareSettings
    let model: VirtualFirmware.Model
    let esp: ESP
    let tpm: (any FirmwareTPM)?
    let store: VariableStore?
    var builder: EventLogBuilder
    var report: LaunchReport
    var measuredAuthorities: [(guid: EFIGUID, name: String, data: [UInt8])] = []
    var tpmFailure: FirmwareError?
    /// shim's state once it runs (its verification protocol for grub's linux loader).
    var shim: BootImage?
    let cache: DecisionCache?
    /// db and dbx as the firmware parsed them (once for all its launches), with the cache's key.
    let databases: (db: SignatureDatabase, dbx: SignatureDatabase, key: [UInt8])?
    var digests: [String: [TPMAlgID: [UInt8]]] = [:]
    var preparedImages: [String: PreparedImage] = [:]
    var mok: (SignatureDatabase, [UInt8])?

    init(settings: FirmwareSettings, model: VirtualFirmware.Model, esp: ESP, tpm: (any FirmwareTPM)?,
         databases: (db: SignatureDatabase, dbx: SignatureDatabase, key: [UInt8])?, cache: DecisionCache?) throws(FirmwareError) {
        guard !settings.banks.isEmpty else {
            throw FirmwareError(.invalidSettings, stage: "settings", "the vTPM needs at least one PCR bank")
        }
        self.settings = settings; self.model = model; self.esp = esp
        self.databases = databases; self.cache = cache
        self.tpm = settings.vTPM ? tpm : nil
        self.store = settings.variables
        do { builder = try EventLogBuilder(banks: settings.banks) } catch {
            throw FirmwareError(.invalidSettings, stage: "settings", "\(error)")
        }
        let enforced = settings.secureBoot && (settings.variables?.secureBootWillBeEnabled ?? false)
        report = LaunchReport(log: builder.log, stages: [], secureBootEnforced: enforced, kernel: nil, kernelCommandLine: nil, initrds: [],
                              failure: nil)
        if let tpm = self.tpm {
            tpm.powerOn()
            let r = tpm.handle([0x80, 0x01, 0, 0, 0, 0x0C, 0, 0, 0x01, 0x44, 0, 0])
            guard r.count >= 10, r[6..<10].allSatisfy({ $0 == 0 }) else {
                throw FirmwareError(.tpm, stage: "power-on",
                                    "the vTPM refused TPM2_Startup(CLEAR): response code 0x\(hexString(r.dropFirst(6).prefix(4)))")
            }
        }
    }

    // MARK: measurement

    mutating func extendLast() {
        guard let tpm, let e = builder.log.events.last, e.type != .noAction else { return }
        var cmd = TPM2PCRExtend()
        cmd.pcrHandle = TPMHandle(e.pcrIndex)
        cmd.digests = TPMLDigestValues(e.digests.map { TPMTHA(hashAlg: $0.algorithm, digest: Array($0.digest)) })
        guard let params = try? cmd.parameterBytes(),
              let bytes = try? TPMCommandPacket(code: .pcrExtend, handles: [TPMHandle(e.pcrIndex)], sessions: [TPMSAuthCommand()],
                                                parameters: params).encode() else { return }
        let r = tpm.handle(bytes)
        if !(r.count >= 10 && r[6..<10].allSatisfy { $0 == 0 }), tpmFailure == nil {
            tpmFailure = FirmwareError(.tpm, stage: "measurement", "the vTPM refused PCR_Extend of PCR \(e.pcrIndex): response code "
                                                                 + "0x\(hexString(r.dropFirst(6).prefix(4)))")
        }
    }

    mutating func measure(_ pcr: UInt32, _ type: EventType, data: [UInt8], measured: [UInt8]? = nil) {
        guard settings.vTPM else { return }
        builder.measure(pcr: pcr, type: type, data: data, measured: measured)
        extendLast()
    }

    mutating func measureVariable(_ pcr: UInt32, _ type: EventType, _ guid: EFIGUID, _ name: String, _ data: [UInt8]) {
        measure(pcr, type, data: UEFIVariableData(vendorGUID: guid, name: name, data: data).encoded)
    }

    mutating func action(_ pcr: UInt32, _ text: String) { measure(pcr, .efiAction, data: Array(text.utf8)) }

    /// EV_EFI_BOOT_SERVICES_APPLICATION: the image's Authenticode digest in every bank.
    mutating func measureImage(_ image: BootImage, devicePath: DevicePath) {
        guard settings.vTPM else { return }
        var data: [UInt8] = []
        let dp = devicePath.nodes.isEmpty ? [] : devicePath.encoded
        data.le64(0x1000_0000); data.le64(UInt64(image.pe.bytes.count)); data.le64(0); data.le64(UInt64(dp.count))
        data += dp
        let digests = builder.banks.map { TaggedDigest($0.algorithm, authenticode(image, $0.algorithm)[...]) }
        builder.append(pcr: 4, type: .efiBootServicesApplication, digests: digests, data: data)
        extendLast()
    }

    /// EV_EFI_VARIABLE_AUTHORITY, once per distinct authority (as firmware and shim do).
    /// Measures an authority (its EFI_SIGNATURE_DATA) once per boot. A boot has a handful: a
    /// list compared entry by entry, not a set that hashes kilobytes of certificate per lookup.
    mutating func measureAuthority(_ guid: EFIGUID, _ name: String, _ signatureData: [UInt8]) {
        guard !measuredAuthorities.contains(where: { $0.guid == guid && $0.name == name && $0.data == signatureData }) else { return }
        measuredAuthorities.append((guid, name, signatureData))
        measure(7, .efiVariableAuthority, data: UEFIVariableData(vendorGUID: guid, name: name, data: signatureData).encoded)
    }

    func variable(_ name: String, _ guid: EFIGUID) -> [UInt8] { store?.variable(name, guid)?.data ?? [] }

    /// An image's Authenticode digest, computed once per launch and bank.
    mutating func authenticode(_ image: BootImage, _ alg: TPMAlgID) -> [UInt8] {
        if let d = digests[image.path]?[alg] { return d }
        let d = (try? image.pe.authenticodeDigest(alg)) ?? []
        digests[image.path, default: [:]][alg] = d
        return d
    }

    /// The firmware's decision, from the cache when the same file was decided against the same
    /// databases before (the key covers the whole file, signatures included).
    mutating func decide(_ image: BootImage, db: SignatureDatabase, dbx: SignatureDatabase, key: [UInt8]) -> BootDecision {
        if let cache {
            return cache.decision(file: image.pe.bytes, databases: key) { ImageVerifier.decide(prepared(image), db: db, dbx: dbx) }
        }
        return ImageVerifier.decide(prepared(image), db: db, dbx: dbx)
    }

    /// The image's digest and signatures, parsed and checked once per launch.
    mutating func prepared(_ image: BootImage) -> PreparedImage {
        if let p = preparedImages[image.path], p.image.bytes.count == image.pe.bytes.count { return p }
        let p = PreparedImage(image.pe)
        preparedImages[image.path] = p
        return p
    }

    /// shim's MokList: its built-in certificate, then the MokList variable (once per launch).
    mutating func mokDatabase(_ shim: BootImage) -> (SignatureDatabase, [UInt8]) {
        if let m = mok { return m }
        let vendor = shim.shimVendorCertificate
        let mokList = variable("MokList", .shimLock)
        func build() -> (SignatureDatabase, [UInt8]) {
            var lists: [SignatureList] = []
            if let der = vendor {
                lists.append(SignatureList(type: .certX509, signatureSize: 16 + der.count,
                                           entries: [SignatureEntry(owner: .shimLock, type: .certX509, data: der)]))
            }
            if let user = try? SignatureDatabase(esl: mokList) { lists += user.lists }
            let db = SignatureDatabase(lists: lists)
            return (db, [2] + Array(SHA256.hash(data: db.encoded)))
        }
        // With a decision cache, the database (its certificates parsed) is built once per source:
        // the shim's vendor certificate and the MokList variable, both in the key.
        let m = cache?.mokDatabase(vendor: vendor, mokList: mokList, build) ?? build()
        mok = m
        return m
    }

    // MARK: the boot

    mutating func boot() {
        do {
            try firmware()
        } catch {
            report.failure = error
        }
        if let f = tpmFailure, report.failure == nil { report.failure = f }
        report.log = builder.log
    }

    mutating func firmware() throws(FirmwareError) {
        let enforced = report.secureBootEnforced
        // PCR 0: the platform firmware (ours, or OVMF's from its reference boot).
        var reference: [Event] = []
        switch model {
        case .tlaunch:
            measure(0, .sCRTMVersion, data: FirmwareReference.crtmVersion)
            measure(0, .efiPlatformFirmwareBlob2, data: FirmwareReference.blobEvent, measured: FirmwareReference.manifest)
        case .ovmf(let ref):
            // PCR 5 (the GPT, ExitBootServices) depends on the disk and the boot, not on OVMF's build: predicted.
            reference = (ref?.events ?? []).filter { [0, 1, 2, 3, 6].contains($0.pcrIndex) && $0.type != .noAction }
            let banks = Set(builder.banks.map(\.algorithm))
            for e in reference where e.pcrIndex == 0 && e.type != .separator {
                builder.append(pcr: 0, type: e.type, digests: e.digests.filter { banks.contains($0.algorithm) }, data: Array(e.data))
                extendLast()
            }
        }
        // PCR 7: the Secure Boot policy, then its separator.
        measureVariable(7, .efiVariableDriverConfig, .globalVariable, "SecureBoot", [enforced ? 1 : 0])
        measureVariable(7, .efiVariableDriverConfig, .globalVariable, "PK", variable("PK", .globalVariable))
        measureVariable(7, .efiVariableDriverConfig, .globalVariable, "KEK", variable("KEK", .globalVariable))
        measureVariable(7, .efiVariableDriverConfig, .imageSecurityDatabase, "db", variable("db", .imageSecurityDatabase))
        measureVariable(7, .efiVariableDriverConfig, .imageSecurityDatabase, "dbx", variable("dbx", .imageSecurityDatabase))
        measure(7, .separator, data: [0, 0, 0, 0])

        // PCR 1: the boot entries; the first whose file is on the ESP boots.
        let (entries, order) = try bootEntries()
        if case .tlaunch = model {
            measureVariable(1, .efiVariableBoot, .globalVariable, "BootOrder", order.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] })
            for n in order { if let e = entries[n] { measureVariable(1, .efiVariableBoot, .globalVariable, Self.bootName(n), e.encoded) } }
        }
        let disk = esp
        guard let (number, option, path) = order.compactMap({ n -> (UInt16, LoadOption, String)? in
            guard let o = entries[n], o.isActive, let p = o.filePathList.first?.filePath, disk.file(p) != nil else { return nil }
            return (n, o, p)
        }).first else {
            throw FirmwareError(.notFound, stage: "boot manager",
                                "no boot entry names a file on the ESP (tried \(order.map { Self.bootName($0) }.joined(separator: ", ")); "
                              + "the default is \\EFI\\BOOT\\BOOTX64.EFI)")
        }

        // PCR 4 and the separators, as OVMF's boot manager does before it calls the entry.
        action(4, "Calling EFI Application from Boot Option")
        switch model {
        case .tlaunch:
            for p: UInt32 in 0...6 { measure(p, .separator, data: [0, 0, 0, 0]) }
        case .ovmf:
            measure(4, .separator, data: [0, 0, 0, 0])
            measure(5, .separator, data: [0, 0, 0, 0])
            let banks = Set(builder.banks.map(\.algorithm))
            for e in reference where e.pcrIndex != 0 || e.type == .separator {
                builder.append(pcr: e.pcrIndex, type: e.type, digests: e.digests.filter { banks.contains($0.algorithm) },
                               data: Array(e.data))
                extendLast()
            }
        }
        if case .gpt(let event, _) = esp.partitioning { measure(5, .efiGPTEvent, data: event) }

        let image = try load(path, by: "firmware (\(Self.bootName(number)))")
        try firmwareVerify(image)
        var nodes = [DevicePath.Node(type: 2, subType: 1, data: [0xD0, 0x41, 0x03, 0x0A, 0, 0, 0, 0]),   // PciRoot(0x0)
                     DevicePath.Node(type: 1, subType: 1, data: [0x00, 0x02])]                            // Pci(0x2,0x0)
        nodes.append(DevicePath.filePathNode(path))
        measureImage(image, devicePath: DevicePath(nodes: nodes))
        try start(image, loadOptions: option.optionalData)
    }

    static func bootName(_ n: UInt16) -> String {
        let h = String(n, radix: 16, uppercase: true)
        return "Boot" + String(repeating: "0", count: 4 - h.count) + h
    }

    static func utf16(_ b: [UInt8]) -> [UInt16] {
        var u: [UInt16] = []
        var i = 0
        while i + 1 < b.count { u.append(UInt16(b[i]) | UInt16(b[i + 1]) << 8); i += 2 }
        while u.last == 0 { u.removeLast() }
        return u
    }

    /// The store's BootOrder and Boot#### entries, or the firmware's default (the removable-media path).
    func bootEntries() throws(FirmwareError) -> ([UInt16: LoadOption], [UInt16]) {
        let orderBytes = variable("BootOrder", .globalVariable)
        if !orderBytes.isEmpty {
            guard orderBytes.count % 2 == 0, orderBytes.count <= 256 else {
                throw FirmwareError(.invalidVariableStore, stage: "boot manager",
                                    "BootOrder has \(orderBytes.count) bytes; it must be a list of 16-bit entry numbers (at most 128)")
            }
            let order = stride(from: 0, to: orderBytes.count, by: 2).map { UInt16(orderBytes[$0]) | UInt16(orderBytes[$0 + 1]) << 8 }
            var entries: [UInt16: LoadOption] = [:]
            for n in order {
                let raw = variable(Self.bootName(n), .globalVariable)
                if raw.isEmpty { continue }
                do { entries[n] = try LoadOption(parsing: raw) } catch {
                    throw FirmwareError(.invalidVariableStore, stage: "boot manager",
                                        "\(Self.bootName(n)) is not a valid EFI_LOAD_OPTION: \(error)")
                }
            }
            return (entries, order)
        }
        return ([0: FirmwareReference.defaultBootOption], [0])
    }

    mutating func load(_ path: String, by: String) throws(FirmwareError) -> BootImage {
        guard let bytes = esp.file(path) else {
            throw FirmwareError(.notFound, stage: by, "\(path) is not on the ESP", path: path)
        }
        // The path as the loader asked for it (FAT is case-insensitive; shim and firmware measure the requested name).
        let image = try BootImage(path: String(path.map { $0 == "\\" ? "/" : $0 }), bytes: bytes)
        report.stages.append(BootStage(kind: image.kind, path: image.path, loadedBy: by,
                                       authenticodeSHA256: hexString(authenticode(image, .sha256)), verifiedBy: nil, authority: nil))
        return image
    }

    /// UEFI image verification against db/dbx; the authority goes to PCR 7 before the image goes to PCR 4.
    mutating func firmwareVerify(_ image: BootImage) throws(FirmwareError) {
        // Enforced implies a store, hence its parsed databases.
        guard report.secureBootEnforced, let (db, dbx, key) = databases else { return }
        let decision = decide(image, db: db, dbx: dbx, key: key)
        guard decision.verdict == .allowed, let a = decision.authority else {
            throw FirmwareError(.securityViolation, stage: "firmware",
                                "Security Violation: the firmware refused \(image.path): \(decision.reason)", path: image.path)
        }
        report.stages[report.stages.count - 1].verifiedBy = "db"
        report.stages[report.stages.count - 1].authority = a.subject ?? a.hash
        measureAuthority(.imageSecurityDatabase, "db", a.signatureBytes)
    }

    mutating func start(_ image: BootImage, loadOptions: [UInt8]) throws(FirmwareError) {
        switch image.kind {
        case .shim: try runShim(image)
        case .grub: try runGrub(image, cmdpathDir: Self.directory(image.path))
        case .linux: try startKernel(image, loadOptions: loadOptions)
        case .application:
            throw FirmwareError(.unsupported, stage: "firmware", "\(image.path) is an EFI application the simulation does not model (not "
                                                               + "shim, grub or a Linux kernel)", path: image.path)
        }
    }

    static func directory(_ path: String) -> String {
        let p = String(path.map { $0 == "\\" ? "/" : $0 })
        guard let i = p.lastIndex(of: "/") else { return "" }
        return String(p[..<i])
    }

    // MARK: shim

    mutating func runShim(_ shimImage: BootImage) throws(FirmwareError) {
        shim = shimImage
        let vendorESL: [UInt8] = shimImage.shimVendorCertificate.map {
            SignatureList(type: .certX509, signatureSize: 16 + $0.count,
                          entries: [SignatureEntry(owner: .shimLock, type: .certX509, data: $0)]).encoded
        } ?? []
        // PCR 14: the MOK lists shim mirrors to runtime variables (its built-in certificate and
        // revocations first), and MokListTrusted; SbatLevel into PCR 7 between them.
        measure(14, .ipl, data: Array("MokList".utf8) + [0], measured: vendorESL + variable("MokList", .shimLock))
        measure(14, .ipl, data: Array("MokListX".utf8) + [0], measured: (shimImage.shimVendorDbx ?? []) + variable("MokListX", .shimLock))
        // SbatLevel: with Secure Boot off shim resets it to the original level; with it on, shim
        // keeps a stored level or writes its built-in "previous" level (what a fresh VM gets).
        let stored = variable("SbatLevel", .shimLock)
        let sbat: [UInt8] = !report.secureBootEnforced ? Array("sbat,1,2021030218\n".utf8)
            : stored.isEmpty ? Array((shimImage.shimSbatLevel ?? "").utf8) : stored
        if !sbat.isEmpty { measureVariable(7, .efiVariableAuthority, .shimLock, "SbatLevel", sbat) }
        measure(14, .ipl, data: Array("MokListTrusted".utf8) + [0], measured: [1])

        let dir = Self.directory(shimImage.path)
        let next = dir + "/grubx64.efi"
        let grub = try load(next, by: "shim")
        try shimVerify(grub)
        measureImage(grub, devicePath: DevicePath(nodes: [DevicePath.filePathNode(grub.path)]))
        guard grub.kind == .grub else {
            try start(grub, loadOptions: [])
            return
        }
        try runGrub(grub, cmdpathDir: dir)
    }

    /// shim's verification of the next stage: dbx and its own revocations, then db, then its
    /// built-in certificate and MokList.
    mutating func shimVerify(_ image: BootImage) throws(FirmwareError) {
        guard report.secureBootEnforced, let (db, dbx, key) = databases, let shim else { return }
        func refuse(_ why: String) -> FirmwareError {
            FirmwareError(.securityViolation, stage: "shim", "Verification failed: (0x1A) Security Violation — \(image.path): \(why)",
                          path: image.path)
        }
        let firmware = decide(image, db: db, dbx: dbx, key: key)
        if firmware.code == .deniedHashInDbx || firmware.code == .deniedSignerInDbx { throw refuse(firmware.reason) }
        if let vdbx = shim.shimVendorDbx, let list = try? SignatureDatabase(esl: vdbx) {
            let d = decide(image, db: SignatureDatabase(), dbx: list, key: [1] + Array(SHA256.hash(data: vdbx)))
            if d.code == .deniedHashInDbx || d.code == .deniedSignerInDbx { throw refuse("revoked by shim's built-in dbx: \(d.reason)") }
        }
        if firmware.verdict == .allowed, let a = firmware.authority {
            report.stages[report.stages.count - 1].verifiedBy = "db"
            report.stages[report.stages.count - 1].authority = a.subject ?? a.hash
            measureAuthority(.imageSecurityDatabase, "db", a.signatureBytes)
            return
        }
        let (mokDB, mokKey) = mokDatabase(shim)
        let d = decide(image, db: mokDB, dbx: SignatureDatabase(), key: mokKey)
        guard d.verdict == .allowed, let a = d.authority else {
            throw refuse("not signed by a certificate in db, shim's built-in certificate or MokList, and its digest is in none of them")
        }
        report.stages[report.stages.count - 1].verifiedBy = "MokListRT"
        report.stages[report.stages.count - 1].authority = a.subject ?? a.hash
        measureAuthority(.shimLock, "MokListRT", a.signatureBytes)
    }

    // MARK: grub

    mutating func runGrub(_ grub: BootImage, cmdpathDir: String) throws(FirmwareError) {
        var g = GrubRun(device: esp.grubDevice)
        g.env["cmdpath"] = "(\(esp.grubDevice))\(cmdpathDir)"
        g.env["root"] = esp.grubDevice
        g.env["prefix"] = "(\(esp.grubDevice))\(grub.grubPrefix ?? cmdpathDir)"
        // What grub's normal mode sets before it reads a configuration.
        for f in ["feature_chainloader_bpb", "feature_ntldr", "feature_platform_search_hint", "feature_default_font_path",
                  "feature_all_video_module", "feature_menuentry_id", "feature_menuentry_options", "feature_200_final",
                  "feature_nativedisk_cmd", "feature_timeout_style"] { g.env[f] = "y" }
        g.env["grub_platform"] = "efi"
        g.env["grub_cpu"] = "x86_64"
        if let config = grub.grubEmbeddedConfig {
            try grubExecute(&g, config, source: "grub's embedded configuration")
        } else {
            // Without an embedded config, normal mode reads $prefix/grub.cfg.
            let cfg = (g.env["prefix"] ?? "") + "/grub.cfg"
            guard let bytes = try grubOpen(&g, cfg) else {
                throw FirmwareError(.notFound, stage: "grub", "grub has no embedded configuration and \(cfg) is not on the ESP", path: cfg)
            }
            try grubExecute(&g, String(decoding: bytes, as: UTF8.self), source: cfg)
        }
        if !g.booted, !g.entries.isEmpty {
            // The menu's default entry runs: setparams (its title and extra arguments), its commands, then boot.
            let d = g.env["default"] ?? "0"
            let entry = Int(d).flatMap { g.entries.indices.contains($0) ? g.entries[$0] : nil }
                ?? g.entries.first { $0.title == d || $0.id == d } ?? g.entries[0]
            _ = try grubCommand(&g, ["setparams", entry.title] + entry.extras, source: "menu", line: entry.line)
            try grubExecute(&g, entry.body, source: "menuentry '\(entry.title)'")
            if g.kernel != nil { g.booted = true }
        }
        guard g.booted else {
            throw FirmwareError(.grubScript, stage: "grub",
                                "grub's configuration finished without `boot` and without a menu entry (grub would wait at its prompt)")
        }
        guard let kernel = g.kernel else {
            throw FirmwareError(.grubScript, stage: "grub", "`boot` ran without a kernel: no `linux` command succeeded")
        }
        report.kernelCommandLine = g.kernelCommandLine
        report.initrds = g.initrds
        try startKernel(kernel, loadOptions: nil)
    }

    struct GrubRun {
        let device: String
        var env: [String: String] = [:]
        var depth = 0
        var booted = false
        var kernel: BootImage?
        var kernelCommandLine: String?
        var initrds: [String] = []
        var functions: [String: String] = [:]
        var entries: [(title: String, id: String?, extras: [String], body: String, line: Int)] = []
        init(device: String) { self.device = device }
    }

    /// A grub path ("(hd0,msdos1)/EFI/debian/grub.cfg", or "/vmlinuz" on $root) as an ESP path; nil: another device.
    func grubPath(_ g: GrubRun, _ path: String) -> String? {
        if path.hasPrefix("(") {
            guard let close = path.firstIndex(of: ")") else { return nil }
            let dev = path[path.index(after: path.startIndex)..<close]
            guard dev == g.device else { return nil }
            let rest = String(path[path.index(after: close)...])
            return rest.isEmpty ? "/" : rest
        }
        guard (g.env["root"] ?? g.device) == g.device else { return nil }
        return path
    }

    /// Opens a file as grub's verifiers do: its contents are measured into PCR 9 under the path as given.
    mutating func grubOpen(_ g: inout GrubRun, _ path: String) throws(FirmwareError) -> [UInt8]? {
        guard let p = grubPath(g, path), let bytes = esp.file(p) else { return nil }
        measure(9, .ipl, data: Array(path.utf8) + [0], measured: bytes)
        return bytes
    }

    mutating func grubExecute(_ g: inout GrubRun, _ text: String, source: String) throws(FirmwareError) {
        g.depth += 1
        defer { g.depth -= 1 }
        guard g.depth <= 16 else {
            throw FirmwareError(.grubScript, stage: "grub", "`source` nests deeper than 16 (a loop?)", path: source)
        }
        let nodes: [GrubScript.Node]
        do { nodes = try GrubScript.parse(text) } catch {
            throw FirmwareError(error.unsupported ? .unsupported : .grubScript, stage: "grub",
                                "\(source), line \(error.line): \(error.reason)", path: source)
        }
        _ = try grubRun(&g, nodes, source: source)
    }

    /// Runs nodes; returns the status of the last command.
    mutating func grubRun(_ g: inout GrubRun, _ nodes: [GrubScript.Node], source: String) throws(FirmwareError) -> Bool {
        var status = true
        for node in nodes {
            if g.booted { return true }
            switch node {
            case .command(let words, let negated, let line):
                status = try grubCommand(&g, expand(g, words), source: source, line: line)
                if negated { status.toggle() }
            case .function(let name, let body, _):
                g.functions[name] = body
                status = true
            case .menu(let keyword, let words, let body, let line):
                // grub measures the definition: the keyword, the expanded arguments, the block as written.
                let args = expand(g, words)
                measure(8, .ipl, data: Array("grub_cmd: \(([keyword] + args).joined(separator: " ")) {\(body)}".utf8) + [0],
                        measured: Array("\(([keyword] + args).joined(separator: " ")) {\(body)}".utf8))
                if keyword == "menuentry" {
                    var title: String?, id: String?, extras: [String] = []
                    var k = 0
                    while k < args.count {
                        let a = args[k]
                        if ["--class", "--users", "--hotkey", "--id", "--source"].contains(a) {
                            if a == "--id", k + 1 < args.count { id = args[k + 1] }
                            k += 2
                            continue
                        }
                        if a.hasPrefix("--") { if a.hasPrefix("--id=") { id = String(a.dropFirst(5)) }; k += 1; continue }
                        if title == nil { title = a } else { extras.append(a) }
                        k += 1
                    }
                    g.entries.append((title ?? "", id, extras, body, line))
                }
                status = true
            case .conditional(let branches, let otherwise):
                var taken = false
                for b in branches {
                    if try grubRun(&g, b.condition, source: source) {
                        status = try grubRun(&g, b.body, source: source)
                        taken = true
                        break
                    }
                }
                if !taken, let o = otherwise { status = try grubRun(&g, o, source: source) }
            }
        }
        return status
    }

    /// Expands words as grub does: variables substituted; an unquoted word that expands to nothing is dropped.
    func expand(_ g: GrubRun, _ words: [GrubScript.Word]) -> [String] {
        words.compactMap { w in
            let text = w.parts.map { p -> String in
                switch p {
                case .literal(let s): return s
                case .variable(let v): return g.env[v] ?? ""
                case .block(let b): return "{\(b)}"
                }
            }.joined()
            return text.isEmpty && !w.quoted ? nil : text
        }
    }

    mutating func grubCommand(_ g: inout GrubRun, _ args: [String], source: String, line: Int) throws(FirmwareError) -> Bool {
        guard let name = args.first else { return true }
        // grub measures every command line it runs, expanded, into PCR 8.
        measure(8, .ipl, data: Array("grub_cmd: \(args.joined(separator: " "))".utf8) + [0],
                measured: Array(args.joined(separator: " ").utf8))
        let rest = Array(args.dropFirst())
        func fail(_ why: String) -> FirmwareError {
            FirmwareError(.grubScript, stage: "grub", "\(source), line \(line): \(name): \(why)", path: source)
        }
        switch name {
        case "[", "test":
            var a = rest
            if name == "[" {
                guard a.last == "]" else { throw fail("missing ]") }
                a.removeLast()
            }
            return grubTest(g, a)
        case "set":
            for a in rest {
                if let eq = a.firstIndex(of: "=") { g.env[String(a[..<eq])] = String(a[a.index(after: eq)...]) }
            }
            return true
        case "unset":
            for a in rest { g.env[a] = nil }
            return true
        case "source", "configfile":
            guard let p = rest.first else { throw fail("needs a file") }
            guard let bytes = try grubOpen(&g, p) else {
                throw FirmwareError(.notFound, stage: "grub", "\(source), line \(line): file \(p) not found", path: p)
            }
            try grubExecute(&g, String(decoding: bytes, as: UTF8.self), source: p)
            return true
        case "search", "search.file", "search.fs_uuid", "search.fs_label":
            // Only the ESP's disk exists: a file search finds it there, other searches find nothing.
            // `search [--file|-f] [--set=VAR] NAME…`: --file is a flag, the names are the operands.
            var setVar = "root", byFile = name == "search.file", names: [String] = []
            for a in rest {
                if a.hasPrefix("--set=") { setVar = String(a.dropFirst(6)) }
                else if a == "--file" || a == "-f" { byFile = true }
                else if !a.hasPrefix("-") { names.append(a) }
            }
            guard byFile, names.contains(where: { esp.file($0) != nil }) else { return false }
            g.env[setVar] = g.device
            return true
        case "linux", "linuxefi":
            guard let p = rest.first else { throw fail("needs a kernel") }
            guard let bytes = try grubOpen(&g, p) else {
                throw FirmwareError(.notFound, stage: "grub", "\(source), line \(line): file \(p) not found", path: p)
            }
            let kernel: BootImage
            do { kernel = try BootImage(path: p, bytes: bytes) } catch {
                throw FirmwareError(.invalidImage, stage: "grub", "\(p) is not a kernel grub can boot: \(error.reason)", path: p)
            }
            report.stages.append(BootStage(kind: kernel.kind, path: p, loadedBy: "grub",
                                           authenticodeSHA256: hexString(authenticode(kernel, .sha256)), verifiedBy: nil, authority: nil))
            if shim != nil {
                // With Secure Boot on, grub verifies the kernel through shim's protocol, which
                // measures it, and boots it through shim's image loader, which measures it again:
                // two PCR 4 events without a device path. With Secure Boot off grub boots the
                // kernel itself and nothing goes to PCR 4 (as Debian 12's shim and grub do).
                if report.secureBootEnforced {
                    try shimVerify(kernel)
                    measureImage(kernel, devicePath: DevicePath(nodes: []))
                    measureImage(kernel, devicePath: DevicePath(nodes: []))
                }
            } else {
                try firmwareVerify(kernel)
                measureImage(kernel, devicePath: DevicePath(nodes: []))
            }
            let cmdline = rest.joined(separator: " ")
            measure(8, .ipl, data: Array("kernel_cmdline: \(cmdline)".utf8) + [0], measured: Array(cmdline.utf8))
            g.kernel = kernel
            g.kernelCommandLine = rest.dropFirst().joined(separator: " ")
            report.kernel = p
            return true
        case "initrd", "initrdefi":
            guard g.kernel != nil else { throw fail("you need to load the kernel first") }
            g.initrds = []
            for p in rest {
                guard try grubOpen(&g, p) != nil else {
                    throw FirmwareError(.notFound, stage: "grub", "\(source), line \(line): file \(p) not found", path: p)
                }
                g.initrds.append(p)
            }
            return true
        case "boot":
            g.booted = true
            return true
        case "true", "echo", "insmod", "terminal_output", "terminal_input", "serial", "font", "loadfont",
             "gfxmode", "set_gfxpayload", "sleep", "clear":
            return true
        case "false":
            return false
        case "setparams", "load_env", "save_env", "recordfail", "gfxpayload", "export", "terminal", "play", "background_image":
            return true
        case "normal", "chainloader", "reboot", "halt", "exit", "configfile_menu":
            throw FirmwareError(.unsupported, stage: "grub", "\(source), line \(line): `\(name)` is not modelled", path: source)
        default:
            if let body = g.functions[name] {
                try grubExecute(&g, body, source: "function \(name)")
                return true
            }
            if let eq = name.firstIndex(of: "="), eq != name.startIndex,
               name[..<eq].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) {
                g.env[String(name[..<eq])] = String(name[name.index(after: eq)...])
                return true
            }
            // grub reports "can't find command" and goes on.
            return false
        }
    }

    func grubTest(_ g: GrubRun, _ a: [String]) -> Bool {
        // or-separated groups of and-separated terms
        var groups: [[String]] = [[]]
        for t in a { if t == "-o" { groups.append([]) } else { groups[groups.count - 1].append(t) } }
        return groups.contains { group in
            var terms: [[String]] = [[]]
            for t in group { if t == "-a" { terms.append([]) } else { terms[terms.count - 1].append(t) } }
            return terms.allSatisfy { term in
                var t = term, negate = false
                while t.first == "!" { negate.toggle(); t.removeFirst() }
                let r: Bool
                switch t.count {
                case 0: r = false
                case 1: r = !t[0].isEmpty
                case 2:
                    switch t[0] {
                    case "-z": r = t[1].isEmpty
                    case "-n": r = !t[1].isEmpty
                    case "-e", "-d", "-f", "-s":
                        if let p = grubPath(g, t[1]) {
                            if t[0] == "-f" || t[0] == "-s" {
                                r = esp.file(p).map { t[0] == "-f" || !$0.isEmpty } ?? false
                            } else {
                                r = esp.exists(p)
                            }
                        } else { r = false }
                    default: r = false
                    }
                case 3:
                    switch t[1] {
                    case "=", "==": r = t[0] == t[2]
                    case "!=": r = t[0] != t[2]
                    default: r = false
                    }
                default: r = false
                }
                return negate ? !r : r
            }
        }
    }

    // MARK: the kernel

    /// The kernel's EFI stub runs (`loadOptions` when firmware started it directly; nil when grub
    /// booted it, passing the command line in boot_params).
    mutating func startKernel(_ kernel: BootImage, loadOptions: [UInt8]?) throws(FirmwareError) {
        guard kernel.kind == .linux else {
            throw FirmwareError(.invalidImage, stage: "kernel",
                                "\(kernel.path) is not a Linux kernel with an EFI stub (no \"HdrS\" setup header)", path: kernel.path)
        }
        if let options = loadOptions {
            report.kernel = kernel.path
            report.kernelCommandLine = String(decoding: Self.utf16(options), as: UTF16.self)
            // The stub (Linux ≥ 5.19) measures its LoadOptions, as given, into PCR 9 as a tagged
            // event "LOADED_IMAGE::LoadOptions" (id 0x8F3B22ED).
            if !options.isEmpty {
                let tag = Array("LOADED_IMAGE::LoadOptions".utf8) + [0]
                var data: [UInt8] = []
                data.le32(0x8F3B_22ED); data.le32(UInt32(tag.count)); data += tag
                measure(9, .eventTag, data: data, measured: options)
            }
        }
        // The stub of Debian 12's kernel (6.1) measures nothing else (an initrd it loads through
        // initrd= is not measured); firmware measures ExitBootServices into PCR 5.
        action(5, "Exit Boot Services Invocation")
        action(5, "Exit Boot Services Returned with Success")
    }
}

extension Array where Element == UInt8 {
    mutating func le32(_ v: UInt32) { for i in 0..<4 { append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) } }
    mutating func le64(_ v: UInt64) { for i in 0..<8 { append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
}

/// Secure Boot decisions by (the whole image file, the databases): shared by launches on a host.
public final class DecisionCache: Sendable {
    struct Key: Hashable { var file: [UInt8]; var databases: [UInt8] }
    let entries = Mutex<[Key: BootDecision]>([:])
    public let capacity: Int

    public init(capacity: Int = 4096) { self.capacity = capacity }

    func decision(file: [UInt8], databases: [UInt8], _ compute: () -> BootDecision) -> BootDecision {
        Self.remember(Key(file: Array(SHA256.hash(data: file)), databases: databases), in: entries, capacity: capacity, compute)
    }

    /// `table[key]`, computed and kept when absent; a full table starts over (a value dropped is
    /// only computed again).
    static func remember<K: Hashable & Sendable, V: Sendable>(
        _ key: K, in table: borrowing Mutex<[K: V]>, capacity: Int, _ compute: () -> V
    ) -> V {
        if let v = table.withLock({ $0[key] }) { return v }
        let v = compute()
        table.withLock { t in
            if t.count >= capacity { t.removeAll(keepingCapacity: true) }
            t[key] = v
        }
        return v
    }

    public var count: Int { entries.withLock { $0.count } }

    /// Shim's MOK databases by source: SHA-256 over the vendor certificate's presence, length and
    /// bytes, then the MokList variable's bytes.
    let mokDatabases = Mutex<[[UInt8]: (SignatureDatabase, [UInt8])]>([:])

    func mokDatabase(vendor: [UInt8]?, mokList: [UInt8], _ build: () -> (SignatureDatabase, [UInt8])) -> (SignatureDatabase, [UInt8]) {
        var h = SHA256()
        let n = UInt64(vendor?.count ?? 0)
        h.update(bytes: [vendor == nil ? 0 : 1] + (0..<8).map { UInt8(truncatingIfNeeded: n >> (8 * $0)) })
        if let vendor { h.update(bytes: vendor) }
        h.update(bytes: mokList)
        return Self.remember(h.finalize().byteArray, in: mokDatabases, capacity: 64, build)
    }
}
