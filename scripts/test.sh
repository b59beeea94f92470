#!/usr/bin/env bash
# Runs the whole test suite: installs what the tests need, builds with warnings as errors,
# replays the fuzz corpora, and runs unit and interop tests (swtpm, tpm2-tools).
# Interop tests fail rather than skip when TLAUNCH_REQUIRE_INTEROP=1 (CI sets it).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
swift build --build-tests
swift test --skip-build --parallel "$@"
