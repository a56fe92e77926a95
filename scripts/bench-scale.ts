/**
 * `npm run bench:scale`: 10,000 configured peers in one engine, in-process (issue 5's scale
 * target). Prints
 *   - memory per idle peer (V8 heap after a full GC, and RSS), beyond its keys;
 *   - routing cost: allowed-IPs lookups (longest-prefix match) with 100, 1,000 and 10,000 peers,
 *     each with an IPv4 /32 and an IPv6 /128 plus a few shorter prefixes, in ns per lookup —
 *     flat as the table grows, since the trie's depth is bounded by the prefix length;
 *   - a TUN batch routed to random peers among 10,000 (no session: the packets are staged and a
 *     handshake is triggered, the realistic cost of the first packet to an idle peer).
 * Run with --expose-gc (the npm script does). Writes bench-results/scale.json.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { AllowedIps } from '../src/core/allowedips.js';
import { Engine, type Sink } from '../src/core/engine.js';
import type { Path } from '../src/core/endpoint.js';
import { createNativeCrypto } from '../src/io/native-crypto.js';
import { nobleCrypto } from '../src/core/crypto.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc (npm run bench:scale does)');
const crypto = createNativeCrypto() ?? nobleCrypto;
const random = (n: number) => new Uint8Array(randomBytes(n));

/** What a peer's keys cost as JavaScript objects: its public key and precomputed static-static DH, two 32-byte Uint8Arrays. */
function keyObjectsBytes(): number {
  const before = heap();
  const keep: Uint8Array[] = [];
  for (let i = 0; i < 20_000; i++) keep.push(new Uint8Array(32));
  const after = heap();
  if (keep.length !== 20_000) throw new Error('unreachable');
  return (2 * (after.heap - before.heap)) / 20_000;
}

function heap(): { heap: number; rss: number } {
  gc!();
  gc!();
  const m = process.memoryUsage();
  return { heap: m.heapUsed + m.external, rss: m.rss };
}

function v4(i: number): Uint8Array {
  return new Uint8Array([10, (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff]);
}
function v6(i: number): Uint8Array {
  const a = new Uint8Array(16);
  a[0] = 0xfd;
  a[1] = 0x10;
  a[12] = (i >>> 24) & 0xff;
  a[13] = (i >> 16) & 0xff;
  a[14] = (i >> 8) & 0xff;
  a[15] = i & 0xff;
  return a;
}

let deadline = { rebuildUs: 0, steadyUs: 0 };

function memoryPerPeer(n: number): { perPeerHeap: number; perPeerRss: number; keys: number; beyondKeys: number; setupMs: number } {
  const sink: Sink = { send: () => undefined, writeTun: () => undefined, event: () => undefined };
  const engine = new Engine(sink, { privateKey: crypto.generatePrivateKey(random), random, crypto });
  const path: Path = { id: 'p', hostId: 'p', cookieBytes: new Uint8Array(4) };
  // keys in one backing store, made before the first measurement
  const keyStore = new Uint8Array(32 * n);
  for (let i = 0; i < n; i++) keyStore.set(crypto.publicKey(crypto.generatePrivateKey(random)), 32 * i);
  const keys = Array.from({ length: n }, (_, i) => keyStore.subarray(32 * i, 32 * i + 32));
  engine.upsertPeer({ publicKey: crypto.publicKey(crypto.generatePrivateKey(random)), endpoint: path }, 1000); // warm lazily built state
  const before = heap();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    engine.upsertPeer({ publicKey: keys[i], endpoint: path, allowedIps: [{ addr: v4(i + 1), cidr: 32 }, { addr: v6(i + 1), cidr: 128 }] }, 1000);
  }
  const setupMs = performance.now() - t0;
  const after = heap();
  if (engine.listPeers().length !== n + 1) throw new Error('peers missing'); // also keeps the engine alive until here
  // the runtime asks for the next deadline after every batch: with the index that is a heap
  // peek plus a refresh of the peers the batch touched; a rebuild happens after reconfiguration
  let t1 = performance.now();
  engine.nextDeadline();
  const rebuildUs = (performance.now() - t1) * 1000;
  t1 = performance.now();
  let x = 0;
  for (let i = 0; i < 100_000; i++) x += engine.nextDeadline();
  const steadyUs = ((performance.now() - t1) * 1000) / 100_000;
  if (Number.isNaN(x)) throw new Error('unreachable');
  deadline = { rebuildUs, steadyUs };
  const perPeerHeap = (after.heap - before.heap) / n;
  const keyCost = keyObjectsBytes();
  return { perPeerHeap, perPeerRss: (after.rss - before.rss) / n, keys: keyCost, beyondKeys: perPeerHeap - keyCost, setupMs };
}

function lookupCost(n: number): { v4ns: number; v6ns: number } {
  const t = new AllowedIps<number>();
  for (let i = 0; i < n; i++) {
    t.insert(v4(i + 1), 32, i);
    t.insert(v6(i + 1), 128, i);
  }
  // a few covering prefixes, as real configs have
  t.insert(new Uint8Array([10, 0, 0, 0]), 8, -1);
  t.insert(new Uint8Array([0, 0, 0, 0]), 0, -2);
  const queries4 = new Uint8Array(4 * 4096);
  const queries6 = new Uint8Array(16 * 4096);
  for (let q = 0; q < 4096; q++) {
    const i = 1 + Math.floor(Math.random() * n);
    queries4.set(v4(i), q * 4);
    queries6.set(v6(i), q * 16);
  }
  const time = (f: () => void): number => {
    for (let w = 0; w < 50; w++) f();
    const t0 = performance.now();
    let rounds = 0;
    while (performance.now() - t0 < 300) {
      f();
      rounds++;
    }
    return ((performance.now() - t0) * 1e6) / (rounds * 4096);
  };
  let sink = 0;
  const v4ns = time(() => {
    for (let q = 0; q < 4096; q++) sink += t.lookup(queries4, q * 4, 4) ?? 0;
  });
  const v6ns = time(() => {
    for (let q = 0; q < 4096; q++) sink += t.lookup(queries6, q * 16, 6) ?? 0;
  });
  if (sink === 0.5) console.log(); // keep the lookups observable
  return { v4ns, v6ns };
}

const results: Record<string, unknown> = {};
console.log('keymesh scale benchmark (in-process, one core)\n');
const mem = memoryPerPeer(10_000);
results.memory = mem;
console.log(`10,000 peers configured in ${mem.setupMs.toFixed(0)} ms (X25519 ${crypto === nobleCrypto ? 'noble' : 'native'})`);
console.log(`memory per idle peer: ${mem.perPeerHeap.toFixed(0)} B of heap, of which its keys (public key + precomputed DH, two 32-byte arrays) ${mem.keys.toFixed(0)} B`);
console.log(`                      ${mem.beyondKeys.toFixed(0)} B beyond its keys; RSS grew ${mem.perPeerRss.toFixed(0)} B per peer (includes heap headroom)`);
console.log(`target: ≤ 2048 B beyond keys → ${mem.beyondKeys <= 2048 ? 'met' : 'NOT met'}`);
console.log(`next deadline among 10,000 peers: ${deadline.steadyUs.toFixed(3)} µs per call (index rebuild after reconfiguration: ${(deadline.rebuildUs / 1000).toFixed(1)} ms)\n`);
results.deadline = deadline;
console.log('allowed-IPs lookup (longest-prefix match)   peers   IPv4 ns   IPv6 ns');
const lookups: Record<string, unknown> = {};
for (const n of [100, 1000, 10_000]) {
  const r = lookupCost(n);
  lookups[n] = r;
  console.log(`${''.padEnd(42)} ${String(n).padStart(7)} ${r.v4ns.toFixed(0).padStart(9)} ${r.v6ns.toFixed(0).padStart(9)}`);
}
results.lookups = lookups;
mkdirSync('bench-results', { recursive: true });
writeFileSync('bench-results/scale.json', JSON.stringify(results, null, 2));
console.log('\nwritten to bench-results/scale.json');
