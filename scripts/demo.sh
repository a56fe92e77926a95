#!/usr/bin/env bash
# keymesh demo: a three-node mesh in network namespaces, and a TCP stream that survives one
# node changing its address.
#
#      ns km-demo-a            ns km-demo-b            ns km-demo-c
#   ┌───────────────┐       ┌───────────────┐       ┌───────────────┐
#   │ kmA 10.77.0.1 │       │ kmB 10.77.0.2 │       │ kmC 10.77.0.3 │   ← keymesh tunnel (TUN)
#   │ eth0 .77.1    │       │ eth0 .77.2    │       │ eth0 .77.3    │   ← underlay 192.168.77.0/24
#   └──────┬────────┘       └──────┬────────┘       └──────┬────────┘     (C moves to .77.33)
#          └────────────── br0 in ns km-demo-sw ───────────┘
#
# Usage: sudo ./scripts/demo.sh      (installs what it needs; cleans up on exit)
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "demo: needs root (network namespaces, TUN devices): run it with sudo" >&2; exit 1; }

need=()
for cmd in ip:iproute2 iperf3:iperf3 ping:iputils-ping wg:wireguard-tools; do
  command -v "${cmd%%:*}" >/dev/null 2>&1 || need+=("${cmd##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "demo: installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "demo: npm ci"; npm ci --no-audit --no-fund >/dev/null
fi
addon=build/Release/keymesh_native.node
if [ ! -f $addon ] || [ -n "$(find native binding.gyp -newer $addon 2>/dev/null | head -1)" ]; then
  npm run -s build:native >/dev/null
fi
npm run -s build

P=km-demo
NODES=(a b c)
pids=()
tmp=$(mktemp -d)
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  sleep 0.5
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  for n in "${NODES[@]}" sw; do ip netns del "$P-$n" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "building the underlay: three hosts on one switch"
ip netns add "$P-sw"
ip -n "$P-sw" link add br0 type bridge
ip -n "$P-sw" link set br0 up
i=1
for n in "${NODES[@]}"; do
  ip netns add "$P-$n"
  ip link add "eth0" netns "$P-$n" type veth peer name "port-$n" netns "$P-sw"
  ip -n "$P-sw" link set "port-$n" master br0 up
  ip -n "$P-$n" addr add "192.168.77.$i/24" dev eth0
  ip -n "$P-$n" link set eth0 up
  ip -n "$P-$n" link set lo up
  i=$((i + 1))
done

step "generating keys and wg-quick configs (a full mesh)"
for n in "${NODES[@]}"; do
  node bin/keymesh.js genkey > "$tmp/$n.key"
  node bin/keymesh.js pubkey < "$tmp/$n.key" > "$tmp/$n.pub"
done
i=1
for n in "${NODES[@]}"; do
  N=$(echo "$n" | tr a-z A-Z)
  {
    echo "[Interface]"
    echo "PrivateKey = $(cat "$tmp/$n.key")"
    echo "ListenPort = 51820"
    echo "Address = 10.77.0.$i/24, fd77::$i/64"
    j=1
    for m in "${NODES[@]}"; do
      if [ "$m" != "$n" ]; then
        echo
        echo "[Peer]"
        echo "PublicKey = $(cat "$tmp/$m.pub")"
        echo "AllowedIPs = 10.77.0.$j/32, fd77::$j/128"
        echo "Endpoint = 192.168.77.$j:51820"
      fi
      j=$((j + 1))
    done
  } > "$tmp/km$N.conf"
  chmod 600 "$tmp/km$N.conf"
  i=$((i + 1))
done
sed -n '1,3p;5,9p' "$tmp/kmA.conf" | sed 's/^PrivateKey = .*/PrivateKey = (hidden)/'

step "starting keymesh on each host"
for n in "${NODES[@]}"; do
  N=$(echo "$n" | tr a-z A-Z)
  ip netns exec "$P-$n" node bin/keymesh.js up "$tmp/km$N.conf" > "$tmp/$n.log" 2>&1 &
  pids+=($!)
done
for n in "${NODES[@]}"; do
  N=$(echo "$n" | tr a-z A-Z)
  for _ in $(seq 50); do [ -S "/var/run/wireguard/km$N.sock" ] && break; sleep 0.1; done
  [ -S "/var/run/wireguard/km$N.sock" ] || { echo "keymesh on $n did not come up:"; cat "$tmp/$n.log"; exit 1; }
done

step "every node pings every other through the tunnel (IPv4 and IPv6 inside)"
i=1
for n in "${NODES[@]}"; do
  j=1
  for m in "${NODES[@]}"; do
    if [ "$m" != "$n" ]; then
      ip netns exec "$P-$n" ping -c 1 -W 2 "10.77.0.$j" >/dev/null && r4=ok || r4=FAIL
      ip netns exec "$P-$n" ping -6 -c 1 -W 2 "fd77::$j" >/dev/null && r6=ok || r6=FAIL
      echo "  $n → $m: IPv4 $r4, IPv6 $r6"
    fi
    j=$((j + 1))
  done
  i=$((i + 1))
done

step "wg show kmA (the stock wg tool talking to keymesh)"
wg show kmA | sed 's/^/  /'

step "a 12 s TCP stream from A to C; after 4 s, C's underlay address changes .77.3 → .77.33"
ip netns exec "$P-c" iperf3 -s -1 -B 10.77.0.3 >/dev/null 2>&1 &
pids+=($!)
sleep 0.5
ip netns exec "$P-a" iperf3 -c 10.77.0.3 -t 12 -i 1 -f m > "$tmp/iperf.txt" 2>&1 &
ipid=$!
sleep 4
ip -n "$P-c" addr del 192.168.77.3/24 dev eth0
ip -n "$P-c" addr add 192.168.77.33/24 dev eth0
echo "  C is now at 192.168.77.33 (its peers were configured with .77.3)"
wait $ipid || true
sed 's/^/  /' "$tmp/iperf.txt" | grep -E 'sec|error|refused' || cat "$tmp/iperf.txt"

step "what A's keymesh logged"
sed 's/^/  /' "$tmp/a.log"

step "A now reaches C at its new address"
node bin/keymesh.js show kmA | sed 's/^/  /' | grep -A3 "$(cat "$tmp/c.pub")" || true
if grep -q 'receiver' "$tmp/iperf.txt" && ! grep -qi 'error' "$tmp/iperf.txt"; then
  echo; echo "demo: the TCP connection survived C's address change."
else
  echo; echo "demo: the TCP stream did not complete — see above"; exit 1
fi
