#!/usr/bin/env bash
# The whole keymesh test suite: unit tests and network-namespace integration tests.
# Installs what it needs (Debian packages, npm dependencies, the native addon), builds, runs
# vitest, and ends with one line: `tests: N passed, N failed, N skipped`.
# Usage: sudo ./scripts/test.sh      (without root the integration tests are skipped, and say why)
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then
  need=()
  for spec in ip:iproute2 wg:wireguard-tools wireguard-go:wireguard-go iperf3:iperf3 nft:nftables \
              iptables:iptables ping:iputils-ping tcpdump:tcpdump conntrack:conntrack ss:iproute2 \
              make:make g++:g++ python3:python3; do
    command -v "${spec%%:*}" >/dev/null 2>&1 || need+=("${spec##*:}")
  done
  # the native fuzz targets (fuzz/run.sh): clang with libFuzzer and the sanitizer runtimes, OpenSSL's headers
  for pkg in clang libfuzzer-14-dev libclang-rt-14-dev libssl-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
  done
  if [ ${#need[@]} -gt 0 ]; then
    echo "test: installing ${need[*]}"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
      || { echo "test: apt-get install failed"; exit 1; }
  fi
  # the real UPnP IGD for the port mapping netns test (netns/miniupnpd.ts); that test is skipped without it
  if [ ! -x /usr/sbin/miniupnpd ]; then
    echo "test: installing miniupnpd-nftables"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends miniupnpd-nftables >/dev/null \
      || echo "test: miniupnpd-nftables not installed; the UPnP netns test will be skipped"
  fi
  modprobe tun 2>/dev/null || true
else
  echo "test: not root — integration tests (network namespaces, TUN) will be skipped"
fi

if [ "${CI:-}" = "true" ] || [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund || { echo "test: npm ci failed"; exit 1; }
fi
# (again when a C file or binding.gyp is newer than the built addon: a checkout that moved on)
addon=build/Release/keymesh_native.node
if [ ! -f $addon ] || [ -n "$(find native binding.gyp -newer $addon 2>/dev/null | head -1)" ]; then
  npm run -s build:native || { echo "test: native addon build failed"; exit 1; }
fi
npm run -s build || { echo "test: TypeScript build failed"; exit 1; }

report=$(mktemp)
trap 'rm -f "$report"' EXIT
npx vitest run --reporter=default --reporter=json --outputFile.json="$report"
status=$?

# The native parsers under libFuzzer (native-notes/fuzzing.md): each target replays its corpus and
# regressions, then fuzzes for FUZZ_SECONDS (20 here); each counts as a test, a crash as a failure.
fuzz_passed=0 fuzz_failed=0
if command -v clang >/dev/null 2>&1; then
  fuzz_log=$(mktemp)
  trap 'rm -f "$report" "$fuzz_log"' EXIT
  FUZZ_SECONDS=${FUZZ_SECONDS:-20} ./fuzz/run.sh 2>&1 | tee "$fuzz_log"
  fuzz_status=${PIPESTATUS[0]}
  fuzz_passed=$(grep -c '^fuzz: [a-z_]* clean' "$fuzz_log")
  fuzz_failed=$(grep -c '^fuzz: [a-z_]* FAILED' "$fuzz_log")
  [ "$fuzz_status" -ne 0 ] && [ "$fuzz_failed" -eq 0 ] && fuzz_failed=1 # did not build, or no such target
else
  echo "test: clang not found — native fuzz targets skipped"
fi
node -e '
  const fs = require("fs");
  let r = {};
  try { r = JSON.parse(fs.readFileSync(process.argv[1], "utf8")); } catch {}
  const passed = (r.numPassedTests ?? 0) + Number(process.argv[2]), failed = (r.numFailedTests ?? 0) + Number(process.argv[3]);
  const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
  process.exit(passed > 0 && failed === 0 ? 0 : 1);
' "$report" "$fuzz_passed" "$fuzz_failed"
summary=$?
[ $status -eq 0 ] && [ $summary -eq 0 ]
