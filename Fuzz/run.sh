#!/usr/bin/env bash
# Runs a libFuzzer campaign: Fuzz/run.sh TARGET SECONDS
#   TARGET: tpm2-response | vtpm-commands
# New inputs that grow coverage are added to Fuzz/corpus/TARGET (commit the small ones; the
# test suite replays the corpus). Crashers are written to Fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")"
target="${1:-tpm2-response}"
seconds="${2:-600}"
case "$target" in
  tpm2-response) product=FuzzTPM2Response ;;
  vtpm-commands) product=FuzzVTPMCommands ;;
  *) echo "unknown target $target" >&2; exit 2 ;;
esac
swift build -c debug --scratch-path .build \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library --product "$product"
mkdir -p "corpus/$target" artifacts
exec ".build/debug/$product" "corpus/$target" -max_total_time="$seconds" -max_len=4096 \
  -artifact_prefix=artifacts/ -print_final_stats=1
