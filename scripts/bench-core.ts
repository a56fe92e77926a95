/**
 * `npm run bench:core`: the core's per-packet and per-handshake costs, in-process.
 *   - transport seal/open through each TransportAead backend at 64/512/1420-byte payloads,
 *     in batches of 64 (µs per packet);
 *   - a full engine round (TUN batch → seal → datagram batch → open → TUN) per packet;
 *   - complete handshakes per second (initiation + response + key derivation, both sides).
 * Prints a table and writes bench-results/core.json.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { nobleCrypto, type Crypto } from '../src/core/crypto.js';
import { Engine, type Sink } from '../src/core/engine.js';
import type { Path } from '../src/core/endpoint.js';
import { createNobleTransportAead, type TransportAead } from '../src/core/transport-aead.js';
import { createNodeTransportAead } from '../src/io/node-aead.js';
import { createNativeCrypto, createNativeTransportAead, nativeX25519Backend } from '../src/io/native-crypto.js';
import { randomPool } from '../src/io/random-pool.js';

const random = (n: number) => new Uint8Array(randomBytes(n));
/** The random source the runtime gives the engine (handshakes draw ephemeral keys and indexes from it). */
const runtimeRandom = randomPool();
const BATCH = 64;

function benchAead(aead: TransportAead, size: number): { seal: number; open: number } {
  const key = random(32);
  const slot = size + 64;
  const buf = new Uint8Array(BATCH * slot);
  const offs = new Uint32Array(BATCH).map((_, i) => i * slot);
  const lens = new Uint32Array(BATCH).fill(size);
  const olens = new Uint32Array(BATCH).fill(size + 16);
  const his = new Uint32Array(BATCH);
  const los = new Uint32Array(BATCH).map((_, i) => i);
  const ok = new Uint8Array(BATCH);
  const target = 300; // ms per measurement
  let n = 0;
  let t0 = performance.now();
  while (performance.now() - t0 < target) {
    aead.sealBatch(key, 0, 0, buf, offs, lens, BATCH);
    aead.openBatch(key, his, los, buf, offs, olens, BATCH, ok);
    n += BATCH;
  }
  // separate timings
  let sealN = 0;
  t0 = performance.now();
  while (performance.now() - t0 < target) {
    aead.sealBatch(key, 0, 0, buf, offs, lens, BATCH);
    sealN += BATCH;
  }
  const seal = ((performance.now() - t0) * 1000) / sealN;
  aead.sealBatch(key, 0, 0, buf, offs, lens, BATCH);
  const sealed = buf.slice();
  let openN = 0;
  t0 = performance.now();
  while (performance.now() - t0 < target) {
    buf.set(sealed);
    aead.openBatch(key, his, los, buf, offs, olens, BATCH, ok);
    openN += BATCH;
  }
  const open = ((performance.now() - t0) * 1000) / openN;
  if (!ok.every((x) => x === 1)) throw new Error(`${aead.name}: open failed`);
  void n;
  return { seal, open };
}

/**
 * A full engine round (A seals a TUN batch, B opens the datagrams) in µs per packet. With
 * `evictBytes`, that much memory is written between rounds and only the rounds are timed: the
 * caches and TLBs are cold as they are for a lone packet after an idle gap (a ping every 20 ms).
 */
function benchEngine(aead: TransportAead, size: number, batch = BATCH, evictBytes = 0): number {
  const mk = (name: string): Path => ({ id: name, hostId: name, cookieBytes: new TextEncoder().encode(name) });
  const pa = mk('a');
  const pb = mk('b');
  const ka = nobleCrypto.generatePrivateKey(random);
  const kb = nobleCrypto.generatePrivateKey(random);
  const toB: Uint8Array[] = [];
  const toA: Uint8Array[] = [];
  let delivered = 0;
  const sa: Sink = { send: (_p, b, o, n) => toB.push(b.slice(o, o + n)), writeTun: () => undefined, event: () => undefined };
  const sb: Sink = { send: (_p, b, o, n) => toA.push(b.slice(o, o + n)), writeTun: () => void delivered++, event: () => undefined };
  const A = new Engine(sa, { privateKey: ka, random, aead });
  const B = new Engine(sb, { privateKey: kb, random, aead });
  const now = 1000;
  A.upsertPeer({ publicKey: nobleCrypto.publicKey(kb), endpoint: pb, allowedIps: [{ addr: new Uint8Array([10, 0, 0, 2]), cidr: 32 }] }, now);
  B.upsertPeer({ publicKey: nobleCrypto.publicKey(ka), endpoint: pa, allowedIps: [{ addr: new Uint8Array([10, 0, 0, 1]), cidr: 32 }] }, now);
  const pkt = new Uint8Array(size);
  pkt[0] = 0x45;
  pkt[2] = size >> 8;
  pkt[3] = size & 0xff;
  pkt.set([10, 0, 0, 1], 12);
  pkt.set([10, 0, 0, 2], 16);
  A.handleTunPacket(pkt, now);
  for (let i = 0; i < 4; i++) {
    while (toB.length) B.handleDatagram(toB.shift()!, pa, now);
    while (toA.length) A.handleDatagram(toA.shift()!, pb, now);
  }
  const slot = 2048;
  const tunBuf = new Uint8Array(batch * slot);
  const offs = new Uint32Array(batch).map((_, i) => i * slot + 16); // TRANSPORT_HEADROOM before each packet
  const lens = new Uint32Array(batch).fill(size);
  const roffs = new Uint32Array(batch).map((_, i) => i * slot);
  const rx = new Uint8Array(batch * slot);
  const rlens = new Uint32Array(batch);
  const paths = new Array<Path>(batch).fill(pa);
  let n = 0;
  const t0 = performance.now();
  const evict = evictBytes > 0 ? new Uint8Array(evictBytes) : null;
  let inRound = 0;
  while (performance.now() - t0 < 500) {
    if (evict) for (let j = 0; j < evict.length; j += 64) evict[j]++;
    const r0 = performance.now();
    toB.length = 0;
    for (let i = 0; i < batch; i++) tunBuf.set(pkt, offs[i]); // sealing happens in place
    A.handleTunBatch(tunBuf, offs, lens, batch, now);
    for (let i = 0; i < toB.length; i++) {
      rx.set(toB[i], i * slot);
      rlens[i] = toB[i].length;
    }
    B.handleDatagramBatch(rx, roffs, rlens, paths, toB.length, now);
    n += batch;
    inRound += performance.now() - r0;
  }
  const us = ((evict ? inRound : performance.now() - t0) * 1000) / n;
  if (delivered < n) throw new Error(`engine bench: delivered ${delivered} of ${n}`);
  return us;
}

function benchHandshakes(crypto: Crypto): { complete: number; responder: number; initiator: number } {
  const mk = (name: string): Path => ({ id: name, hostId: name, cookieBytes: new TextEncoder().encode(name) });
  const pa = mk('a');
  const pb = mk('b');
  const ka = nobleCrypto.generatePrivateKey(random);
  const kb = nobleCrypto.generatePrivateKey(random);
  const toB: Uint8Array[] = [];
  const toA: Uint8Array[] = [];
  let done = 0;
  const A = new Engine({ send: (_p, b, o, n) => toB.push(b.slice(o, o + n)), writeTun: () => undefined, event: (e) => void (e.type === 'handshake-complete' && done++) }, { privateKey: ka, random: runtimeRandom, crypto });
  const B = new Engine({ send: (_p, b, o, n) => toA.push(b.slice(o, o + n)), writeTun: () => undefined, event: () => undefined }, { privateKey: kb, random: runtimeRandom, crypto, underLoadThreshold: 1e9 });
  let now = 1000;
  const peer = A.upsertPeer({ publicKey: nobleCrypto.publicKey(kb), endpoint: pb }, now);
  B.upsertPeer({ publicKey: nobleCrypto.publicKey(ka), endpoint: pa }, now);
  const t0 = performance.now();
  let n = 0;
  let inB = 0; // ms spent in the responder (consume initiation, create response)
  while (performance.now() - t0 < 1500) {
    now += 6000; // past REKEY_TIMEOUT and the initiation rate limit
    A.initiateHandshake(peer, now);
    const t1 = performance.now();
    B.handleDatagram(toB.shift()!, pa, now);
    inB += performance.now() - t1;
    A.handleDatagram(toA.shift()!, pb, now);
    toB.length = 0;
    toA.length = 0;
    n++;
  }
  const ms = performance.now() - t0;
  if (done !== n) throw new Error(`handshake bench: ${done} of ${n} completed`);
  return { complete: (n * 1000) / ms, responder: (n * 1000) / inB, initiator: (n * 1000) / (ms - inB) };
}

const results: Record<string, unknown> = {};
console.log('keymesh core benchmark (one core, in-process; µs per packet, batches of 64)\n');
console.log('backend                     size   seal µs   open µs   engine round µs');
const nativeAead = createNativeTransportAead();
for (const aead of [createNobleTransportAead(), createNodeTransportAead(), ...(nativeAead ? [nativeAead] : [])]) {
  for (const size of [64, 512, 1420]) {
    const { seal, open } = benchAead(aead, size);
    const round = benchEngine(aead, size);
    results[`${aead.name}/${size}`] = { seal, open, engineRound: round };
    console.log(`${aead.name.padEnd(26)} ${String(size).padStart(5)} ${seal.toFixed(2).padStart(9)} ${open.toFixed(2).padStart(9)} ${round.toFixed(2).padStart(17)}`);
  }
}
if (nativeAead) {
  // The latency case: one lone 84-byte ping per batch, as the engine sees it with caches warm
  // (pings back to back) and cold (8 MB of other memory touched in between, as after an idle gap).
  const hot = benchEngine(nativeAead, 84, 1);
  const cold = benchEngine(nativeAead, 84, 1, 8 << 20);
  results['native/84/one-packet-batches'] = { engineRoundHot: hot, engineRoundCold: cold };
  console.log(`\nengine round, one 84-byte packet per batch (a ping), native AEAD: ${hot.toFixed(2)} µs with warm caches, ${cold.toFixed(2)} µs after evicting 8 MB`);
}
console.log('\nhandshakes per second on one core   complete (both sides)   responder side   initiator side');
const nativeCrypto = createNativeCrypto();
const backends: Array<[string, Crypto]> = [['noble X25519', nobleCrypto]];
if (nativeCrypto) backends.push([`native X25519 (${nativeX25519Backend()})`, nativeCrypto]);
const hsResults: Record<string, unknown> = {};
for (const [name, c] of backends) {
  const hs = benchHandshakes(c);
  hsResults[name] = hs;
  console.log(`${name.padEnd(36)} ${hs.complete.toFixed(0).padStart(20)} ${hs.responder.toFixed(0).padStart(16)} ${hs.initiator.toFixed(0).padStart(16)}`);
}
results.handshakesPerSecond = hsResults;
mkdirSync('bench-results', { recursive: true });
writeFileSync('bench-results/core.json', JSON.stringify(results, null, 2));
console.log('written to bench-results/core.json');
