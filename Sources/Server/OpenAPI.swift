import AttestationAPI
import Foundation
import Attestation

/// The API's OpenAPI 3.1 document (`/openapi.json`), built from one table of operations.
enum OpenAPIDocument {
    struct Op {
        var method: String; var path: String; var summary: String; var roles: String; var body: String?; var response: String;
        var errors: [Int]
    }

    static let operations: [Op] = [
        Op(
            method: "post", path: "/v1/vms/{vm}/nonce",
            summary: "Issue a single-use nonce for the VM's next evidence ({audience}: the token's aud); says what the quote must cover",
            roles: "admin, agent (own VM)", body: "NonceRequest", response: "NonceGrant", errors: [400, 401, 403]),
        Op(
            method: "post", path: "/v1/vms/{vm}/enrolment/rebind",
            summary: "Allow the VM's next enrolment to bind another TPM (its vTPM was replaced); resets the baseline, raises an alert",
            roles: "admin", body: nil, response: "Rebind", errors: [401, 403, 404]),
        Op(
            method: "delete", path: "/v1/vms/{vm}/enrolment",
            summary:
                "Forget a VM the service alone knows: nonces, enrolments, TPM binding, baseline, agent tokens; its history is archived",
            roles: "admin", body: nil, response: "Empty", errors: [401, 403, 409]),
        Op(
            method: "get", path: "/v1/vms/{vm}/baseline/mode",
            summary: "How the VM's first baseline is set: learn (trust on first use), approve, predicted",
            roles: "admin, reader, agent (own VM)", body: nil, response: "BaselineMode", errors: [401, 403]),
        Op(method: "put", path: "/v1/vms/{vm}/baseline/mode", summary: "Set how the VM's first baseline is set ({mode})", roles: "admin",
           body: "BaselineMode", response: "BaselineMode", errors: [400, 401, 403]),
        Op(
            method: "post", path: "/v1/vms/{vm}/enrolments",
            summary: "Begin enrolment: validate the EK certificate, MakeCredential to the AK's Name", roles: "admin, agent (own VM)",
            body: "EnrolmentRequest", response: "EnrolmentChallenge", errors: [400, 401, 403, 413, 415]),
        Op(
            method: "post", path: "/v1/vms/{vm}/enrolments/{id}/activation",
            summary: "Finish enrolment with the ActivateCredential secret; returns the AK certificate", roles: "admin, agent (own VM)",
            body: "ActivationAnswer", response: "EnrolmentReceipt", errors: [400, 401, 403, 404, 410]),
        Op(
            method: "post", path: "/v1/vms/{vm}/attestations",
            summary: "Verify evidence (quote, PCRs, event log, IMA log) and return the result and token", roles: "admin, agent (own VM)",
            body: "Evidence", response: "AttestationOutcome", errors: [400, 401, 403, 404, 413, 415]),
        Op(method: "get", path: "/v1/vms/{vm}/attestations", summary: "The VM's attestation history, newest first (?limit=N)",
           roles: "admin, reader, agent (own VM)", body: nil, response: "AttestationHistory", errors: [401, 403]),
        Op(method: "get", path: "/v1/agents", summary: "Enrolled agents (VMs whose vTPM has an AK certificate)", roles: "admin, reader",
           body: nil, response: "AgentList", errors: [401, 403]),
        Op(method: "get", path: "/v1/vms/{vm}/enrolment", summary: "One enrolled VM: AK certificate, baseline, last attestation",
           roles: "admin, reader, agent (own VM)", body: nil, response: "Enrolment", errors: [401, 403, 404]),
        Op(method: "get", path: "/v1/vms", summary: """
            The fleet in the ARM shape (id, type, location, properties; securityProfile, uefiSettings, integrityMonitoring, alerts), by \
            name in pages (?limit=1..5000, default 1000; ?after=NAME; Link rel=next)
            """, roles: "admin, reader", body: nil, response: "VMList", errors: [401, 403]),
        Op(method: "post", path: "/v1/vms", summary: """
            Deploy a VM ({name, image, securityType, secureBoot, vTpm, integrityMonitoring, hypervisor, start}); with `Prefer: \
            respond-async`: 202 once the VM exists, its first boot followed at Location (its activity)
            """, roles: "admin", body: "DeployRequest", response: "VM", errors: [400, 401, 403, 404, 409, 413, 415]),
        Op(method: "get", path: "/v1/vms/{vm}", summary: "One VM in the ARM shape", roles: "admin, reader, agent (own VM)", body: nil,
           response: "VM", errors: [401, 403, 404]),
        Op(
            method: "get", path: "/v1/vms/{vm}/overview",
            summary: "The VM's overview: view, Secured-core checklist, recommendations, timeline, attestations", roles: "admin, reader",
            body: nil, response: "VMOverview", errors: [401, 403, 404]),
        Op(
            method: "patch", path: "/v1/vms/{vm}",
            summary:
                "Change settings ({secureBoot, vTpm, integrityMonitoring, guestAgent, attestationInterval, version}); If-Match: version",
            roles: "admin", body: "UpdateRequest", response: "VM", errors: [400, 401, 403, 404, 409]),
        Op(method: "delete", path: "/v1/vms/{vm}", summary: "Delete the VM and destroy its vTPM state", roles: "admin", body: nil,
           response: "Empty", errors: [401, 403, 404]),
        Op(method: "post", path: "/v1/vms/{vm}/start", summary: """
            Start (a new measured boot; with monitoring, an attestation); with `Prefer: respond-async`: 202, followed at Location (its \
            activity)
            """, roles: "admin", body: nil, response: "VM", errors: [401, 403, 404, 409]),
        Op(method: "post", path: "/v1/vms/{vm}/stop", summary: "Stop", roles: "admin", body: nil, response: "VM",
           errors: [401, 403, 404, 409]),
        Op(
            method: "post", path: "/v1/vms/{vm}/restart",
            summary: "Restart (power-cycle the vTPM, boot again); with `Prefer: respond-async`: 202, followed at Location (its activity)",
            roles: "admin", body: nil, response: "VM", errors: [401, 403, 404, 409]),
        Op(method: "post", path: "/v1/vms/{vm}/attest", summary: "Run the VM's guest attestation agent now", roles: "admin", body: nil,
           response: "AttestationOutcome", errors: [401, 403, 404, 409, 502]),
        Op(
            method: "post", path: "/v1/vms/{vm}/baseline/predict",
            summary: "Set the baseline from the PCRs the virtual firmware predicts for the VM's disk", roles: "admin", body: nil,
            response: "Baseline", errors: [400, 401, 403, 404, 409]),
        Op(method: "put", path: "/v1/vms/{vm}/disk", summary: "Write a file onto the VM's boot disk (?path=/EFI/…; body: the bytes)",
           roles: "admin", body: "Bytes", response: "VM", errors: [400, 401, 403, 404, 413]),
        Op(method: "get", path: "/v1/vms/{vm}/console", summary: "A real VM's serial console as text (?previous=true: the previous boot's)",
           roles: "admin, reader", body: nil, response: "Text", errors: [400, 401, 403, 404]),
        Op(
            method: "get", path: "/v1/vms/{vm}/activity",
            summary: "What the platform is doing to the VM, step by step (its current or last deploy, start, restart)",
            roles: "admin, reader", body: nil, response: "VMActivity", errors: [400, 401, 403, 404]),
        Op(
            method: "get", path: "/v1/vms/{vm}/guest",
            summary: "The guest's own view: Secure Boot state, TPM, measured boot log, last attestation", roles: "admin, reader", body: nil,
            response: "GuestStatus", errors: [401, 403, 404, 409]),
        Op(method: "get", path: "/v1/images", summary: "Images (generation, source)", roles: "admin, reader", body: nil,
           response: "ImageList", errors: [401, 403]),
        Op(method: "get", path: "/v1/images/{image}", summary: "One image: boot chain, signers, db authorities", roles: "admin, reader",
           body: nil, response: "ImageDetails", errors: [401, 403, 404]),
        Op(method: "post", path: "/v1/images", summary: "Import an ESP folder or BIOS boot sector ({name, path, generation, keys})",
           roles: "admin", body: "ImportImage", response: "Image", errors: [400, 401, 403, 409]),
        Op(
            method: "get", path: "/v1/hosts",
            summary: "The libvirt hosts VMs are placed on: URI, state (Reachable/Unreachable), memory, CPUs, capacity, the VMs on each",
            roles: "admin, reader", body: nil, response: "HostList", errors: [401, 403]),
        Op(
            method: "post", path: "/v1/hosts",
            summary: "Add a libvirt host ({name, uri, tpm: external|emulator, maxVMs}); refused unless virsh reaches it", roles: "admin",
            body: "AddHost", response: "Host", errors: [400, 401, 403, 409]),
        Op(method: "delete", path: "/v1/hosts/{host}", summary: "Remove a host that has no VMs", roles: "admin", body: nil,
           response: "Empty", errors: [400, 401, 403, 404, 409]),
        Op(method: "get", path: "/v1/alerts", summary: "Alerts, newest first (?vm=, ?status=active|resolved|dismissed)",
           roles: "admin, reader", body: nil, response: "AlertList", errors: [400, 401, 403]),
        Op(method: "get", path: "/v1/alerts/{id}", summary: "One alert: evidence, recommendations, mitigations", roles: "admin, reader",
           body: nil, response: "Alert", errors: [401, 403, 404]),
        Op(method: "post", path: "/v1/alerts/{id}/dismiss", summary: "Dismiss an active alert ({reason})", roles: "admin", body: "Dismiss",
           response: "Alert", errors: [401, 403, 404, 409]),
        Op(method: "get", path: "/v1/vms/{vm}/baseline", summary: "The VM's baseline", roles: "admin, reader, agent (own VM)", body: nil,
           response: "Baseline", errors: [401, 403, 404]),
        Op(
            method: "post", path: "/v1/vms/{vm}/baseline/approve",
            summary: "Approve a boot (latest by default, or {attestationId}) as the baseline", roles: "admin", body: "ApproveBaseline",
            response: "Baseline", errors: [401, 403, 404, 409]),
        Op(method: "put", path: "/v1/vms/{vm}/baseline", summary: "Set the baseline from predicted PCR values ({pcrs: {\"7\": hex}})",
           roles: "admin", body: "PredictedBaseline", response: "Baseline", errors: [400, 401, 403]),
        Op(method: "delete", path: "/v1/vms/{vm}/baseline", summary: "Forget the baseline; the next healthy boot is learned",
           roles: "admin", body: nil, response: "Empty", errors: [401, 403]),
        Op(method: "get", path: "/v1/policy", summary: "The policy in force", roles: "admin, reader", body: nil, response: "Policy",
           errors: [401, 403]),
        Op(method: "put", path: "/v1/policy", summary: "Store a new version of the policy", roles: "admin", body: "Policy",
           response: "Policy", errors: [400, 401, 403, 413, 415]),
        Op(method: "post", path: "/v1/what-if", summary: "Evaluate evidence against a draft policy; stores nothing, consumes no nonce",
           roles: "admin, reader", body: "WhatIf", response: "AttestationOutcome", errors: [400, 401, 403, 404]),
        Op(
            method: "post", path: "/v1/tokens",
            summary: "Create an API token ({role, vm, expiresIn: seconds}); the answer is the only time the token is shown", roles: "admin",
            body: "CreateToken", response: "Token", errors: [400, 401, 403]),
        Op(
            method: "get", path: "/v1/tokens",
            summary: "The API tokens: id (the start of the token's hash, never the token), role, VM, created, expires, revoked, state",
            roles: "admin", body: nil, response: "TokenList", errors: [401, 403]),
        Op(method: "delete", path: "/v1/tokens/{id}", summary: "Revoke a token by its id (6+ hex digits): refused everywhere from now on",
           roles: "admin", body: nil, response: "Empty", errors: [400, 401, 403, 404, 409]),
        Op(
            method: "post", path: "/v1/keys/rotate",
            summary: "Rotate the token signing key ({algorithm: ES256|RS256}); old keys stay published until their tokens expire",
            roles: "admin", body: "Rotate", response: "Kid", errors: [400, 401, 403]),
        Op(method: "get", path: "/.well-known/jwks.json", summary: "Token verification keys (JWK Set)", roles: "public", body: nil,
           response: "JWKS", errors: []),
        Op(method: "get", path: "/.well-known/openid-configuration", summary: "Issuer metadata", roles: "public", body: nil,
           response: "Discovery", errors: []),
        Op(method: "get", path: "/healthz", summary: "Liveness", roles: "public", body: nil, response: "Status", errors: []),
        Op(method: "get", path: "/readyz", summary: "Readiness (the database answers)", roles: "public", body: nil, response: "Status",
           errors: [503]),
        Op(method: "get", path: "/metrics", summary: "Prometheus metrics", roles: "public", body: nil, response: "Text", errors: []),
        Op(method: "get", path: "/openapi.json", summary: "This document", roles: "public", body: nil, response: "Text", errors: []),
    ]

    static var schemas: [String: Any] { [
        "Error": ["type": "object", "properties": ["error": ["type": "object", "required": ["status", "message"],
                                                              "properties": ["status": ["type": "integer"], "message": ["type": "string"],
                                                                             "field": ["type": "string"]]]]],
            "NonceRequest": [
                "type": "object",
                "properties": [
                    "audience": ["type": "string", "description": "the relying party the token is for (aud); default urn:tlaunch:platform"]
                ]
            ],
        "Rebind": ["type": "object", "properties": ["vm": ["type": "string"], "rebindAllowed": ["type": "boolean"]]],
        "BaselineMode": ["type": "object", "required": ["mode"],
                         "properties": ["vm": ["type": "string"], "mode": ["type": "string", "enum": ["learn", "approve", "predicted"]]]],
            "NonceGrant": [
                "type": "object", "required": ["nonce", "expires", "expiresIn"],
                "properties": [
                    "nonce": ["type": "string", "description": "32 bytes, hex"], "expires": ["type": "string", "format": "date-time"],
                    "expiresIn": ["type": "integer"]
                ]
            ],
            "EnrolmentRequest": [
                "type": "object", "required": ["ekPublic", "akPublic", "ekCertificate"],
                "properties": [
                    "ekPublic": ["type": "string", "description": "TPMT_PUBLIC, hex"],
                    "akPublic": ["type": "string", "description": "TPMT_PUBLIC, hex"],
                    "ekCertificate": ["type": "string", "description": "DER, base64"]
                ]
            ],
            "EnrolmentChallenge": [
                "type": "object",
                "properties": [
                    "id": ["type": "string"], "credentialBlob": ["type": "string", "description": "TPM2B_ID_OBJECT, hex"],
                    "encryptedSecret": ["type": "string", "description": "TPM2B_ENCRYPTED_SECRET, hex"], "expires": ["type": "string"]
                ]
            ],
        "ActivationAnswer": ["type": "object", "required": ["secret"], "properties": ["secret": ["type": "string", "description": "hex"]]],
            "EnrolmentReceipt": [
                "type": "object",
                "properties": [
                    "vm": ["type": "string"], "akName": ["type": "string"], "akCertificate": ["type": "string", "description": "PEM"],
                    "ekCertificateSubject": ["type": "string"]
                ]
            ],
        "Evidence": ["type": "object", "required": ["quote", "signature", "pcrs", "eventLog", "nonce"], "properties": [
                    "quote": ["type": "string", "description": "TPMS_ATTEST exactly as signed, hex"],
                    "signature": ["type": "string", "description": "TPMT_SIGNATURE, hex"],
            "pcrs": ["type": "object", "description": "bank → PCR index → hex",
                     "additionalProperties": ["type": "object", "additionalProperties": ["type": "string"]]],
                    "eventLog": ["type": "string", "description": "TCG event log, base64"],
                    "nonce": ["type": "string", "description": "the issued nonce, hex"],
            "imaLog": ["type": "string", "description": "IMA ascii_runtime_measurements"]]],
            "Check": [
                "type": "object", "required": ["name", "category", "outcome", "passed", "reason"],
                "properties": [
                    "name": ["type": "string"],
                    "category": ["type": "string", "enum": ["evidence", "executables", "configuration", "file-system", "baseline"]],
                    "outcome": ["type": "string", "enum": ["pass", "fail", "unknown"]], "passed": ["type": "boolean"],
                    "reason": ["type": "string"]
                ]
            ],
        "AttestationOutcome": ["type": "object", "properties": [
                    "id": ["type": "string"], "vm": ["type": "string"], "time": ["type": "string", "format": "date-time"],
                    "passed": ["type": "boolean"],
                    "status": ["type": "string", "enum": ["affirming", "contraindicated"]],
                    "checks": ["type": "array", "items": ["$ref": "#/components/schemas/Check"]],
                    "baseline": ["type": "string", "enum": BaselineStatus.allCases.map(\.rawValue)],
                    "changes": ["type": "array", "items": ["type": "object"]],
            "token": ["type": "string", "description": "EAR JWT (ES256/RS256), present when passed"], "tokenID": ["type": "string"]]],
        "Policy": ["type": "object", "properties": [
                    "id": ["type": "string"], "version": ["type": "integer"], "requireSecureBoot": ["type": "boolean"],
                    "requireVerifiedBootApplications": ["type": "boolean"],
            "forbidAnomalies": ["type": "boolean"], "requiredAuthorities": ["type": "array", "items": ["type": "string"]],
                    "expectedPCRs": ["type": "object", "additionalProperties": ["type": "string"]],
                    "forbiddenKernelArguments": ["type": "array", "items": ["type": "string"]],
                    "requiredKernelArguments": ["type": "array", "items": ["type": "string"]],
                    "allowedBootDigests": ["type": "array", "items": ["type": "string"]],
                    "dbxMustContain": ["type": "array", "items": ["type": "string"]],
                    "imaAllowlist": ["type": "object", "additionalProperties": ["type": "array", "items": ["type": "string"]]],
            "imaExcludes": ["type": "array", "items": ["type": "string"]]], "additionalProperties": false],
        "VMActivity": ["type": "object", "required": ["vm", "busy", "steps"], "properties": [
                    "vm": ["type": "string"], "operation": ["type": "string", "enum": ["deploy", "start", "restart", "resume"]],
                    "busy": ["type": "boolean", "description": "true while the operation runs"],
                    "steps": [
                        "type": "array",
                        "items": [
                            "type": "object", "required": ["time", "message"],
                            "properties": ["time": ["type": "string", "format": "date-time"], "message": ["type": "string"]]
                        ]
                    ]
                ]
            ]
    ] }

    static func text(serverURL: String) -> String {
        let schemas = Self.schemas
        var paths: [String: [String: Any]] = [:]
        for op in operations {
            var o: [String: Any] = ["summary": op.summary, "description": "Roles: \(op.roles).",
                                    "operationId": "\(op.method)\(op.path.replacingOccurrences(of: "/", with: "_"))"]
            let params = op.path.split(separator: "/").filter { $0.hasPrefix("{") }.map { p -> [String: Any] in
                ["name": String(p.dropFirst().dropLast()), "in": "path", "required": true, "schema": ["type": "string"]]
            }
            if !params.isEmpty { o["parameters"] = params }
            if let b = op.body {
                let ref: [String: Any] = schemas[b] != nil ? ["$ref": "#/components/schemas/\(b)"] : ["type": "object"]
                o["requestBody"] = ["required": !["ApproveBaseline", "Rotate"].contains(b),
                                    "content": ["application/json": ["schema": ref]]]
            }
            var responses: [String: Any] = [:]
            let creates: Set<String> = ["/v1/vms/{vm}/nonce", "/v1/vms/{vm}/enrolments", "/v1/tokens", "/v1/keys/rotate", "/v1/vms",
                                        "/v1/images"]
            let ok = op.method == "post" && creates.contains(op.path) ? "201" : (op.method == "delete" ? "204" : "200")
            responses[ok] = op.response == "Text"
                ? ["description": "text", "content": ["text/plain": ["schema": ["type": "string"]]]]
                : [
                    "description": op.response,
                    "content": [
                        "application/json": [
                            "schema": schemas[op.response] != nil ? ["$ref": "#/components/schemas/\(op.response)"] : ["type": "object"]
                        ]
                    ]
                ]
            for e in op.errors {
                responses[String(e)] = [
                    "description": "error", "content": ["application/json": ["schema": ["$ref": "#/components/schemas/Error"]]]
                ]
            }
            o["responses"] = responses
            if op.roles != "public" { o["security"] = [["bearer": [String]()]] }
            paths[op.path, default: [:]][op.method] = o
        }
        let doc: [String: Any] = [
            "openapi": "3.1.0",
            "info": ["title": "TrustedLaunch platform and attestation service", "version": "1.0.0",
                     "description": "Enrolment (EK certificate, MakeCredential/ActivateCredential, AK certificates), nonces, evidence "
                                  + "verification with policy and baselines, EAR tokens."],
            "servers": [["url": serverURL]],
            "paths": paths,
            "components": [
                "schemas": schemas,
                "securitySchemes": [
                    "bearer": ["type": "http", "scheme": "bearer", "description": "tlaunch token create --role admin|reader|agent"]
                ]
            ]
        ]
        let data = (try? JSONSerialization.data(withJSONObject: doc,
                                                options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
