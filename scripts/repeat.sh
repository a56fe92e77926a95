#!/usr/bin/env bash
# Run a vitest selection N times back to back and stop at the first failure, keeping its output:
# a test that fails one run in N is a bug until shown otherwise.
#   sudo ./scripts/repeat.sh 50 test/integration/mobility.test.ts -t "client moves|server moves"
#   REPEAT_LOAD=2 sudo ./scripts/repeat.sh 20 test/integration/nat.test.ts   # with 2 busy CPU hogs beside it
# Prints one line per run and a last line `repeat: P passed, F failed of N`.
set -uo pipefail
cd "$(dirname "$0")/.."
n=${1:?usage: repeat.sh N vitest-args...}
shift
hogs=()
cleanup() { for p in "${hogs[@]}"; do kill "$p" 2>/dev/null; done; }
trap cleanup EXIT
for _ in $(seq 1 "${REPEAT_LOAD:-0}"); do
  node -e 'for(;;){}' &
  hogs+=($!)
done
[ -f build/Release/keymesh_native.node ] || npm run -s build:native >/dev/null || exit 1
npm run -s build || exit 1
log=$(mktemp -t keymesh-repeat.XXXXXX)
passed=0
failed=0
for i in $(seq 1 "$n"); do
  start=$(date +%s)
  if npx vitest run "$@" >"$log" 2>&1; then
    passed=$((passed + 1))
    echo "run $i: passed ($(( $(date +%s) - start )) s)"
  else
    failed=$((failed + 1))
    keep="${log}.run$i"
    cp "$log" "$keep"
    echo "run $i: FAILED ($(( $(date +%s) - start )) s); output kept in $keep"
    break
  fi
done
rm -f "$log"
echo "repeat: $passed passed, $failed failed of $n"
[ "$failed" -eq 0 ]
