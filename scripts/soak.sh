#!/usr/bin/env bash
# The flake check: runs the whole suite (scripts/test.sh, interop required) N times in a row
# while a CPU hog (stress-ng, one worker per core) competes for the machine, and prints one
# line per run. A suite that depends on timing fails here long before it fails in CI.
#   scripts/soak.sh [runs]      (default 5; log in .build/soak/)
set -uo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
command -v stress-ng >/dev/null || { apt-get update -qq >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq stress-ng >/dev/null; }
mkdir -p .build/soak
stress-ng --cpu "$(nproc)" --quiet &
hog=$!
trap 'kill $hog 2>/dev/null' EXIT
passed=0
for i in $(seq 1 "$runs"); do
  start=$(date +%s)
  TLAUNCH_REQUIRE_INTEROP=1 scripts/test.sh > ".build/soak/run-$i.log" 2>&1
  status=$?
  summary=$(grep -E '^. Test run with [0-9]+ tests' ".build/soak/run-$i.log" | tail -1)
  echo "run $i: exit $status after $(( $(date +%s) - start )) s — ${summary:-no summary (see .build/soak/run-$i.log)}"
  [ "$status" = 0 ] && passed=$((passed + 1))
done
echo "$passed of $runs runs passed under stress-ng --cpu $(nproc)"
[ "$passed" = "$runs" ]
