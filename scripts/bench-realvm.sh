#!/usr/bin/env bash
# Real VMs, measured (release build): boot to attested under the platform, and the same VM's boot
# with swtpm and with `tlaunch vtpm socket` as its TPM process, side by side in one run.
# Usage: scripts/bench-realvm.sh [--runs N]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
swift build -c release --product tlaunch
swift build -c release --product tlaunch-agent
exec python3 scripts/bench-realvm.py --bin .build/release "$@"
