#!/usr/bin/env bash
# The main job: installs what TrustedLaunch needs and runs `tlaunch demo`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
swift build --product tlaunch
exec .build/debug/tlaunch demo "$@"
