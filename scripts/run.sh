#!/usr/bin/env bash
# The main job: installs what TrustedLaunch needs and runs `tlaunch up` (the platform with its dashboard on
# https://127.0.0.1:8080; Ctrl-C stops it). `scripts/run.sh demo` runs the same story non-interactively.
set -euo pipefail
cd "$(dirname "$0")/.."

# TLBigNum optimized in this project's debug builds too (Package.swift says why it is asked for here).
export TLAUNCH_OPTIMIZE_BIGNUM=1
scripts/deps.sh
swift build --product tlaunch
swift build --product tlaunch-agent   # the guest agent real VMs run in their initramfs
if [ $# -eq 0 ]; then set -- up; fi
exec .build/debug/tlaunch "$@"
