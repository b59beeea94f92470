#!/usr/bin/env bash
# Runs a libFuzzer campaign: Fuzz/run.sh TARGET SECONDS
#   TARGET: tpm2-response | vtpm-commands | vtpm-volatile | eventlog | ima | pe | esl | varstore | esp | grubcfg | evidence | evidence-mutation | fleet-request | relay-frames
# New inputs that grow coverage are added to Fuzz/corpus/TARGET (commit the small ones; the
# test suite replays the corpus). Crashers are written to Fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")"
target="${1:-tpm2-response}"
seconds="${2:-600}"
case "$target" in
  tpm2-response) product=FuzzTPM2Response ;;
  vtpm-commands) product=FuzzVTPMCommands ;;
  vtpm-volatile) product=FuzzVTPMVolatile ;;
  eventlog) product=FuzzEventLog ;;
  ima) product=FuzzIMALog ;;
  pe) product=FuzzPEImage ;;
  esl) product=FuzzSignatureLists ;;
  varstore) product=FuzzVariableStore ;;
  esp) product=FuzzESPImage ;;
  grubcfg) product=FuzzGrubConfig ;;
  evidence) product=FuzzEvidence ;;
  evidence-mutation) product=FuzzEvidenceMutation ;;
  fleet-request) product=FuzzFleetRequest ;;
  relay-frames) product=FuzzRelayFrames ;;
  *) echo "unknown target $target" >&2; exit 2 ;;
esac
swift build -c debug --scratch-path .build \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library --product "$product"
mkdir -p "corpus/$target" artifacts
# Real logs from ../shared/testdata seed the log parsers (read-only corpus; only permissively
# licensed sources, so that inputs derived from them may be committed).
seeds=()
shared="../../shared/testdata"
if [ -d "$shared" ] && { [ "$target" = eventlog ] || [ "$target" = ima ] || [ "$target" = pe ] || [ "$target" = esl ] || [ "$target" = varstore ]; }; then
  seeddir=$(mktemp -d)
  if [ "$target" = pe ]; then
    cp "$shared"/pe/*_go-uefi.efi "$seeddir/"
  elif [ "$target" = esl ]; then
    cp "$shared"/uefi/signed_var_updates_go-uefi/*.esl "$shared"/uefi/signed_var_updates_go-uefi/*.siglist "$seeddir/"
  elif [ "$target" = varstore ]; then
    cp "$shared"/uefi/ovmf_vars_go-uefi.fd "$seeddir/"
  elif [ "$target" = eventlog ]; then
    for f in "$shared"/eventlogs/*.bin; do
      case "$f" in *_fwupd.bin|*_secboot*.bin|*_tcglog-parser.bin) continue ;; esac
      cp "$f" "$seeddir/"
    done
  else
    cp "$shared"/ima/*runtime_measurements* "$shared"/ima/ima_log_* "$seeddir/"
  fi
  seeds=("$seeddir")
fi
maxlen=4096
[ "$target" = esp ] && maxlen=262144
[ "$target" = eventlog ] && maxlen=131072
[ "$target" = ima ] && maxlen=16384
[ "$target" = pe ] && maxlen=65536
[ "$target" = varstore ] && maxlen=131072
maxlen="${FUZZ_MAX_LEN:-$maxlen}"   # e.g. FUZZ_MAX_LEN=4096 for a faster, deeper run on small inputs
# The mutation target builds its fixture once, in a static: LeakSanitizer counts that as a leak at exit.
extra=()
[ "$target" = evidence-mutation ] && extra=(-detect_leaks=0)
exec ".build/debug/$product" "corpus/$target" "${seeds[@]}" -max_total_time="$seconds" -max_len="$maxlen" \
  -artifact_prefix=artifacts/ -print_final_stats=1 "${extra[@]}"
