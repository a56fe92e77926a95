#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, AddressSanitizer + UndefinedBehaviorSanitizer) and runs each
# for N seconds over its checked-in corpus (fuzz/corpus/T) and regressions (fuzz/regress/T), which
# are replayed first every time. See native-notes/fuzzing.md.
# Usage: fuzz/run.sh [seconds per target] [target…]   seconds: $FUZZ_SECONDS, else 60
#        fuzz/run.sh --replay [target…]               only replay the corpus and the regressions
# Exits non-zero if any target crashes (or hangs), naming the reproducer. Needs clang,
# libfuzzer-14-dev, libclang-rt-14-dev and libssl-dev.
set -uo pipefail
cd "$(dirname "$0")/.."

out=fuzz/out # git-ignored: the binaries, the corpora they grow, crash reproducers
all=(tun_read tun_write udp_recv errqueue aead)
seconds=${FUZZ_SECONDS:-60}
replay=0
if [ "${1:-}" = --replay ]; then replay=1; shift
elif [[ "${1:-}" =~ ^[0-9]+$ ]]; then seconds=$1; shift
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

command -v clang >/dev/null || { echo "fuzz: clang not found (apt-get install clang libfuzzer-14-dev libclang-rt-14-dev)"; exit 1; }
mkdir -p "$out/bin" "$out/crashes"
cflags=(-g -O1 -std=gnu11 -Wall -Wextra -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Inative)

failed=0
for t in "${targets[@]}"; do
  case $t in
    aead) srcs=(native/aead_batch.c -lcrypto) ;;
    tun_read | tun_write | udp_recv | errqueue) srcs=(native/packet.c) ;;
    *) echo "fuzz: no target $t (${all[*]})"; exit 1 ;;
  esac
  case $t in
    tun_read | tun_write | udp_recv) max_len=70000 ;; # a 64 KiB super-packet or GRO receive, and some
    *) max_len=4096 ;;
  esac
  clang "${cflags[@]}" -o "$out/bin/$t" "fuzz/$t.c" "${srcs[@]}" || { echo "fuzz: $t does not build"; exit 1; }
  mkdir -p "$out/corpus/$t" "fuzz/corpus/$t" "fuzz/regress/$t"
  log="$out/$t.log"
  if [ $replay = 1 ]; then
    run=(-runs=0 "fuzz/corpus/$t" "fuzz/regress/$t")
  else
    run=(-max_total_time="$seconds" "$out/corpus/$t" "fuzz/corpus/$t" "fuzz/regress/$t")
  fi
  start=$SECONDS
  "$out/bin/$t" "${run[@]}" -max_len=$max_len -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$out/crashes/$t-" >"$log" 2>&1
  status=$?
  if [ $replay = 1 ]; then runs="$(find "fuzz/corpus/$t" "fuzz/regress/$t" -type f | wc -l) files"
  else runs="$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#') inputs"
  fi
  if [ $status -ne 0 ]; then
    failed=1
    reproducer=$(grep -oE "Test unit written to [^ ]+" "$log" | tail -1 | cut -d' ' -f5)
    grep -E "ERROR: |SUMMARY: |^fuzz/[a-z_]+\.c:[0-9]+: " "$log" | head -5
    echo "fuzz: $t FAILED (exit $status) after $((SECONDS - start)) s; reproducer: ${reproducer:-none, see $log}"
    [ -n "$reproducer" ] && echo "fuzz:   replay with $out/bin/$t $reproducer; keep it as fuzz/regress/$t/<what it found>"
  else
    echo "fuzz: $t clean: $runs in $((SECONDS - start)) s"
  fi
done
exit $failed
