#!/usr/bin/env bash
# The HTTPS load test (release build): agents attesting over pinned TLS while the API is read and
# VMs are created and deleted; zero errors and flat memory, or exit 1.
# Usage: scripts/load-https.sh [--vms N] [--duration SECONDS] [--attesters N] [--readers N]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
swift build -c release --product tlaunch
exec python3 scripts/load-https.py --bin .build/release "$@"
