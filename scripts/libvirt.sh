#!/usr/bin/env bash
# Starts libvirt's daemons (Debian's libvirt-daemon-system: virtlogd, then libvirtd) when they are
# not answering, as root, on machines without systemd; waits until virsh reaches qemu:///system.
# Safe to run repeatedly (a daemon already running keeps its pid file locked and a second one
# exits). The libvirt tests restart libvirtd themselves when they need our swtpm drop-ins first on
# its PATH, and put it back afterwards.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then echo "scripts/libvirt.sh: libvirt's system daemon needs root" >&2; exit 1; fi
if [ ! -x /usr/sbin/libvirtd ]; then echo "scripts/libvirt.sh: libvirt is not installed (scripts/deps.sh installs it)" >&2; exit 1; fi
/usr/sbin/virtlogd -d </dev/null >/dev/null 2>&1 || true
if ! virsh -q -c qemu:///system version >/dev/null 2>&1; then
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /usr/sbin/libvirtd -d </dev/null >/dev/null 2>&1 || true
fi
for _ in $(seq 1 50); do virsh -q -c qemu:///system version >/dev/null 2>&1 && exit 0; sleep 0.2; done
echo "scripts/libvirt.sh: libvirtd does not answer on qemu:///system" >&2
exit 1
