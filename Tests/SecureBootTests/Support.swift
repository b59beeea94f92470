import Foundation
import Testing

/// Debian's signed boot chain (shim-signed, grub-efi-amd64-signed, linux-image-amd64; the test
/// command installs them).
enum DebianImages {
    static let shim = "/usr/lib/shim/shimx64.efi.signed"
    static let grub = "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"
    static var kernel: String? {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/boot")) ?? []
        return names.filter { $0.hasPrefix("vmlinuz-") }.sorted().last.map { "/boot/" + $0 }
    }
}
