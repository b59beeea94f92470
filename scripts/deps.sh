#!/usr/bin/env bash
# Installs the Debian packages TrustedLaunch's main job and tests use, when run as root
# (or with sudo available) and when they are missing. Safe to run repeatedly.
set -euo pipefail

PACKAGES=(libsqlite3-dev swtpm swtpm-tools tpm2-tools openssl qemu-system-x86 ovmf shim-signed grub-efi-amd64-signed linux-image-amd64 sbsigntool pesign efitools busybox-static dosfstools mtools fdisk python3-jwt python3-cryptography postgresql chromium libvirt-daemon-system libvirt-clients)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
else
  echo "scripts/deps.sh: missing Debian packages (${missing[*]}) and not root; install them and run again." >&2
  exit 1
fi
echo "==> Installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
