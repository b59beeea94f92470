import X509

extension DistinguishedName {
    /// The name as swift-certificates' `description` writes it (RFC 4514 order: the last RDN first,
    /// RDNs joined by ",", an RDN's attributes by "+", each attribute's own description), built with
    /// plain loops. The library's version goes through `reversed().lazy.map(String.init(describing:))`:
    /// generic types whose first use in a process scans every protocol conformance record, about a
    /// tenth of a fresh `tlaunch secureboot verify` (which names every signer, issuer and chain link).
    /// `DecisionTests` compares both for every certificate in the shared test data.
    var text: String {
        var rdns: [String] = []
        for rdn in self {
            var part = ""
            var first = true
            for attribute in rdn {
                if !first { part += "+" }
                part += attribute.description
                first = false
            }
            rdns.append(part)
        }
        var out = ""
        var i = rdns.count - 1
        while i >= 0 {
            out += rdns[i]
            if i > 0 { out += "," }
            i -= 1
        }
        return out
    }
}
