/**
 * An attacker for the flood test and `npm run bench:flood`: run with node inside the attacker's
 * namespace,
 *
 *   node dist/netns/flood.js --target ADDR:PORT --kind initiations|junk|shaped
 *        [--key BASE64 (the responder's public key; for initiations)] [--sources A.B.C.D/N,COUNT]
 *        [--seconds S] [--count N] [--rate PER_SECOND]
 *
 *   initiations  handshake initiations with a valid mac1 for the responder's public key — which
 *                every peer of it knows, so any of them (or anyone who saw a config) can do this —
 *                and random everything else, so the responder must do the work before it can tell
 *                them from real ones (or, under load, send a cookie reply);
 *   junk         random bytes of random sizes (1–1500);
 *   shaped       random bodies with WireGuard's type bytes and sizes (initiation, response, cookie
 *                reply, transport).
 * Source addresses: COUNT addresses from A.B.C.D up (they must be on the attacker's interface;
 * the datagrams leave with each in turn, IP_PKTINFO), default the host's own. Sends as fast as it
 * can (batches of 64, sendmmsg) or at --rate, for --seconds or until --count datagrams.
 *
 * Prints one JSON line at the end: sent, seconds, per second, and the datagrams that came back
 * (cookie replies, anything else).
 */
import { randomBytes } from 'node:crypto';
import { mac1Key } from '../src/core/cookie.js';
import { nobleCrypto } from '../src/core/crypto.js';
import { INITIATION_MAC1_OFFSET } from '../src/core/messages.js';
import { decodeKey } from '../src/config/keys.js';
import * as native from '../src/io/native.js';
import { addressTo16 } from '../src/io/udp-path.js';

function fail(why: string): never {
  process.stderr.write(`flood: ${why}\n`);
  process.exit(2);
}

const args = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i < 0 ? undefined : (args[i + 1] ?? fail(`${name} needs a value`));
};
const target = opt('--target') ?? fail('--target ADDR:PORT is required');
const kind = opt('--kind') ?? 'initiations';
if (!['initiations', 'junk', 'shaped'].includes(kind)) fail(`--kind: "${kind}"`);
const seconds = Number(opt('--seconds') ?? '10');
const count = Number(opt('--count') ?? 'Infinity');
const rate = Number(opt('--rate') ?? 'Infinity');
const [tAddr, tPort] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];

const BATCH = 64;
const SLOT = 1536;
/** Distinct messages cycled through (initiations are prepared up front: mac1 costs the attacker too). */
const VARIANTS = 1024;

function message(i: number): Uint8Array {
  if (kind === 'junk') return new Uint8Array(randomBytes(1 + (i * 7919) % 1500));
  if (kind === 'shaped') {
    const sizes = [148, 92, 64, 32 + ((i * 16) % 1440)];
    const t = i % 4;
    const m = new Uint8Array(randomBytes(sizes[t]));
    m[0] = t + 1;
    m[1] = m[2] = m[3] = 0;
    return m;
  }
  const key = opt('--key') ?? fail('--key BASE64 is required for initiations');
  const m = new Uint8Array(randomBytes(148));
  m.set([1, 0, 0, 0], 0);
  m.set(nobleCrypto.mac(mac1Key(nobleCrypto, decodeKey(key) ?? fail('--key: not a key')), m.subarray(0, INITIATION_MAC1_OFFSET)), INITIATION_MAC1_OFFSET);
  m.fill(0, INITIATION_MAC1_OFFSET + 16); // no mac2
  return m;
}

const messages = Array.from({ length: VARIANTS }, (_, i) => message(i));
const sources: Uint8Array[] = [];
const src = opt('--sources');
if (src) {
  const [first, n] = src.split(',');
  const base = first.split('/')[0].split('.').map(Number);
  for (let k = 0; k < Number(n); k++) {
    const v = ((base[0] << 24) | (base[1] << 16) | (base[2] << 8) | base[3]) + k;
    sources.push(addressTo16(`${(v >>> 24) & 255}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`) ?? fail('--sources: ' + src));
  }
}

const udp = native.udpOpen(0);
const buf = new Uint8Array(BATCH * SLOT);
const offs = new Uint32Array(BATCH);
const lens = new Uint32Array(BATCH);
const addrs = new Uint8Array(BATCH * 16);
const ports = new Uint16Array(BATCH);
const locals = new Uint8Array(BATCH * 16);
const ifindexes = new Uint32Array(BATCH);
const dst = addressTo16(tAddr) ?? fail('--target: ' + target);
for (let i = 0; i < BATCH; i++) {
  offs[i] = i * SLOT;
  addrs.set(dst, i * 16);
  ports[i] = tPort;
}
const rx = new Uint8Array(BATCH * SLOT);
const rxLens = new Uint32Array(BATCH);
const rxAddrs = new Uint8Array(BATCH * 16);
const rxPorts = new Uint16Array(BATCH);
const back = { cookieReplies: 0, other: 0 };
function drain(): void {
  for (;;) {
    const n = native.udpRecvBatch(udp.fd, rx, SLOT, rxLens, rxAddrs, rxPorts, BATCH);
    for (let i = 0; i < n; i++) {
      if (rx[i * SLOT] === 3 && rxLens[i] === 64) back.cookieReplies++;
      else back.other++;
    }
    if (n < BATCH) return;
  }
}

let sent = 0;
let next = 0;
const t0 = performance.now();
function burst(): void {
  const elapsed = (performance.now() - t0) / 1000;
  if (elapsed >= seconds || sent >= count) return finish();
  const allowed = Math.min(rate === Infinity ? Infinity : rate * elapsed - sent, count - sent);
  for (let round = 0; round < 32 && allowed - (round * BATCH) >= BATCH; round++) {
    for (let i = 0; i < BATCH; i++) {
      const m = messages[next++ % messages.length];
      buf.set(m, i * SLOT);
      lens[i] = m.length;
      if (sources.length > 0) locals.set(sources[(sent + i) % sources.length], i * 16);
    }
    sent += native.udpSendBatch(udp.fd, buf, offs, lens, addrs, ports, BATCH, sources.length > 0 ? locals : undefined, sources.length > 0 ? ifindexes : undefined);
  }
  drain();
  if (rate === Infinity) setImmediate(burst);
  else setTimeout(burst, 1);
}

function finish(): void {
  drain();
  const s = (performance.now() - t0) / 1000;
  process.stdout.write(JSON.stringify({ kind, sent, seconds: Math.round(s * 100) / 100, perSecond: Math.round(sent / s), ...back }) + '\n');
  process.exit(0);
}

process.on('SIGTERM', finish);
process.stdout.write(JSON.stringify({ event: 'flooding', kind, target, sources: sources.length }) + '\n');
burst();
