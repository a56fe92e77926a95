/**
 * `npm run bench:dns`: the mesh's resolver (src/dns/, src/io/dns-server.ts). Prints each figure
 * beside its target, all measured in this run, and writes bench-results/dns.json.
 *
 *   resolver  Resolver.handle in-process (decode, zone, encode; no sockets): queries per second
 *             of one core and the per-query p50/p99, for A queries over 1,000 cached names (static
 *             `Name =` peers plus our own certificate's) and for PTR queries.
 *   udp       the real server (DnsServer) on 127.0.0.1, the per-source limit off, a load
 *             generator in a child process keeping DNS_WINDOW queries in flight for DNS_SECONDS:
 *             answers per second, the server process's CPU use (so: answers per second of one
 *             core), p50/p99 as the client saw them; and the same one query at a time (the
 *             latency without queueing). Target: ≥ 20,000 cached answers/s on one core.
 *   netns     (root) a lighthouse and two members made with the CLI: from m1's namespace, dig-like
 *             queries to m1's overlay address, sequentially: a cached name (m1.mesh) DNS_NETNS_N
 *             times; a name only the lighthouse knows (m2.mesh, the first query: the lookup sets
 *             up the path too); and DNS_NETNS_LOOKUPS distinct unknown names (each a lighthouse
 *             round trip ending in NXDOMAIN), paced under the lighthouse's per-asker budget.
 *
 * DNS_PARTS=resolver,udp,netns picks parts (default: all).
 */
import { fork } from 'node:child_process';
import dgram from 'node:dgram';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import * as dnsPacket from 'dns-packet';
import { createCa, signNodeCert, type IpPrefix } from '../src/core/cert.js';
import { nobleCrypto } from '../src/core/crypto.js';
import { Engine, type Sink } from '../src/core/engine.js';
import { CertAuthority } from '../src/core/mesh-authority.js';
import { Resolver, reverseName } from '../src/dns/resolver.js';
import { Zone } from '../src/dns/zone.js';
import { DnsServer, type DnsClient } from '../src/io/dns-server.js';
import { createNativeCrypto } from '../src/io/native-crypto.js';
import { canRunNetns, Lab, waitFor } from '../netns/lib.js';

const PARTS = new Set((process.env.DNS_PARTS ?? 'resolver,udp,netns').split(',').map((s) => s.trim()));
const SECONDS = Number(process.env.DNS_SECONDS ?? 5);
const WINDOW = Number(process.env.DNS_WINDOW ?? 64);
const NAMES = 1000;
const QPS_TARGET = 20_000;
const NETNS_N = Number(process.env.DNS_NETNS_N ?? 1000);
const NETNS_LOOKUPS = Number(process.env.DNS_NETNS_LOOKUPS ?? 100);

const random = (n: number) => new Uint8Array(randomBytes(n));
const results: Record<string, unknown> = {};

function row(what: string, value: string, target = '', verdict = ''): void {
  console.log(`  ${what.padEnd(60)} ${value.padStart(20)}  ${target.padEnd(10)} ${verdict}`);
}
const meets = (ok: boolean) => (ok ? 'meets target' : 'MISSES target');
const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
const us = (ms: number) => `${(ms * 1000).toFixed(1)} µs`;

function query(name: string, type: 'A' | 'AAAA' | 'PTR', id: number): Buffer {
  return dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name, class: 'IN' }] });
}

// ───────────────────────────── a node's zone, in-process ─────────────────────────────

/** An engine with a certificate of a bench CA and NAMES static peers named host0… (10.98.x.y/32). */
function benchZone(): Zone {
  const seed = random(32);
  const T0 = Math.floor(Date.now() / 1000);
  const p = (addr: number[], bits: number): IpPrefix => ({ family: addr.length === 4 ? 4 : 6, addr: new Uint8Array(addr), bits });
  const ca = createCa({ name: 'bench', networks: [p([10, 99, 0, 0], 16), p([10, 98, 0, 0], 16)], notBefore: T0 - 86400, notAfter: T0 + 86400 * 365 }, seed);
  const crypto = createNativeCrypto() ?? nobleCrypto;
  const priv = crypto.generatePrivateKey(random);
  const own = signNodeCert({ name: 'self', publicKey: crypto.publicKey(priv), addresses: [p([10, 99, 0, 1], 16)], notBefore: T0 - 86400, notAfter: T0 + 86400 }, seed, ca);
  const sink: Sink = { send: () => undefined, writeTun: () => undefined, event: () => undefined };
  const engine = new Engine(sink, { privateKey: priv, random, crypto, mesh: new CertAuthority(ca, own), wallClockOffset: Date.now() - performance.now() });
  for (let i = 0; i < NAMES; i++) {
    const k = crypto.publicKey(crypto.generatePrivateKey(random));
    engine.upsertPeer({ publicKey: k, allowedIps: [{ addr: new Uint8Array([10, 98, i >> 8, i & 255]), cidr: 32 }], name: `host${i}` }, performance.now());
  }
  return new Zone(engine);
}

function resolverPart(zone: Zone): void {
  const r = new Resolver<null>(zone, { forwarding: false, ask: () => false });
  const a = Array.from({ length: NAMES }, (_, i) => query(`host${i}.mesh`, 'A', i));
  const ptr = Array.from({ length: NAMES }, (_, i) => query(reverseName(new Uint8Array([10, 98, i >> 8, i & 255])), 'PTR', i));
  const run = (qs: Buffer[]) => {
    for (let i = 0; i < 20_000; i++) r.handle(qs[i % qs.length], false, null, 0); // warm-up
    const n = 200_000;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) r.handle(qs[i % qs.length], false, null, 0);
    const qps = n / ((performance.now() - t0) / 1000);
    const lat: number[] = [];
    for (let i = 0; i < 20_000; i++) {
      const t = performance.now();
      r.handle(qs[i % qs.length], false, null, 0);
      lat.push(performance.now() - t);
    }
    lat.sort((x, y) => x - y);
    return { qps, p50: pct(lat, 50), p99: pct(lat, 99) };
  };
  console.log(`resolver in-process (Resolver.handle: dns-packet decode, zone, encode; ${NAMES} names; one core)`);
  const ra = run(a);
  row('A, cached names: queries/s', ra.qps.toFixed(0), `≥ ${QPS_TARGET}`, meets(ra.qps >= QPS_TARGET));
  row('A, cached names: p50 / p99 per query', `${us(ra.p50)} / ${us(ra.p99)}`);
  const rp = run(ptr);
  row('PTR (linear scan of the peers): queries/s', rp.qps.toFixed(0));
  row('PTR: p50 / p99 per query', `${us(rp.p50)} / ${us(rp.p99)}`);
  if (r.counters.answered !== r.counters.queries) throw new Error(`only ${r.counters.answered} of ${r.counters.queries} answered`);
  // garbage: valid headers with the question's bytes mutated, so the codec itself must refuse most
  const junk = a.map((q, i) => {
    const m = Buffer.from(q);
    m[12 + (i % (m.length - 12))] ^= 0xa5;
    m[12 + ((i * 7) % (m.length - 12))] = 0xc0;
    return m;
  });
  const [q0, m0] = [r.counters.queries, r.counters.malformed];
  const rj = run(junk);
  const bad = (100 * (r.counters.malformed - m0)) / (r.counters.queries - q0);
  row(`mutated queries (${bad.toFixed(0)} % malformed and dropped, the rest replied to): handled/s`, rj.qps.toFixed(0));
  results.resolver = { names: NAMES, a: ra, ptr: rp, mutated: rj };
  console.log('');
}

// ───────────────────────────── the UDP server on loopback ─────────────────────────────

/** The load generator (a child process): WINDOW queries in flight for SECONDS; latencies of each. */
async function client(port: number, seconds: number, window: number): Promise<void> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const qs = Array.from({ length: NAMES }, (_, i) => query(`host${i}.mesh`, 'A', 0));
  const sentAt = new Float64Array(65536);
  const lat: number[] = [];
  let next = 0;
  let got = 0;
  let lost = 0;
  const end = performance.now() + seconds * 1000;
  const inFlight = new Set<number>();
  const send = () => {
    const id = next++ & 0xffff;
    const q = qs[id % NAMES];
    q.writeUInt16BE(id, 0);
    sentAt[id] = performance.now();
    inFlight.add(id);
    s.send(q, port, '127.0.0.1');
  };
  await new Promise<void>((resolve) => {
    s.on('message', (m) => {
      const id = m.readUInt16BE(0);
      if (!inFlight.delete(id)) return;
      lat.push(performance.now() - sentAt[id]);
      got++;
      if (performance.now() < end) send();
      else if (inFlight.size === 0) resolve();
    });
    // a query lost (the socket buffer overflowed) is replaced, so the window stays full
    const sweep = setInterval(() => {
      const now = performance.now();
      for (const id of inFlight) {
        if (now - sentAt[id] > 500) {
          inFlight.delete(id);
          lost++;
          if (now < end) send();
        }
      }
      if (now >= end + 600) {
        clearInterval(sweep);
        resolve();
      }
    }, 100);
    for (let i = 0; i < window; i++) send();
  });
  s.close();
  lat.sort((x, y) => x - y);
  await new Promise<void>((r) => process.send!({ got, lost, p50: pct(lat, 50), p99: pct(lat, 99), seconds }, () => r()));
}

async function udpPart(zone: Zone): Promise<void> {
  const resolver = new Resolver<DnsClient>(zone, { forwarding: false, ask: () => false });
  const port = 20000 + Math.floor(Math.random() * 30000);
  const server = await DnsServer.start({ addresses: ['127.0.0.1'], port, resolver, upstream: null, now: () => performance.now(), log: console.log, ratePerSecond: 0 });
  const load = async (window: number, seconds: number) => {
    const before = resolver.counters.answered;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const child = fork(new URL(import.meta.url).pathname, ['--client', String(port), String(seconds), String(window)]);
    const res = await new Promise<{ got: number; lost: number; p50: number; p99: number }>((r) => child.once('message', (m) => r(m as never)));
    await new Promise((r) => child.once('exit', r));
    const wall = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const cpuS = (cpu.user + cpu.system) / 1e6;
    const answered = resolver.counters.answered - before;
    return { ...res, answered, wall, cpuS, perCore: answered / cpuS, perSecond: res.got / seconds };
  };
  await load(WINDOW, 1); // warm-up
  console.log(`UDP server on 127.0.0.1 (DnsServer, per-source limit off; client in another process, ${WINDOW} in flight, ${SECONDS} s)`);
  const l = await load(WINDOW, SECONDS);
  row('cached names: answers per second (wall)', l.perSecond.toFixed(0));
  row('server CPU use (of one core)', `${((100 * l.cpuS) / l.wall).toFixed(0)} %`);
  row('cached names: answers per second of server CPU (one core)', l.perCore.toFixed(0), `≥ ${QPS_TARGET}`, meets(l.perCore >= QPS_TARGET));
  row(`p50 / p99 as the client saw them (${WINDOW} in flight)`, `${us(l.p50)} / ${us(l.p99)}`);
  row('queries lost (socket buffers)', String(l.lost));
  const one = await load(1, 2);
  row('one query at a time: p50 / p99', `${us(one.p50)} / ${us(one.p99)}`);
  results.udp = { window: WINDOW, seconds: SECONDS, loaded: l, oneAtATime: one };
  await server.stop();
  console.log('');
}

// ───────────────────────────── a real mesh, in network namespaces ─────────────────────────────

/** Run inside m1's namespace: sequential queries to `server`, latency of each (ms), as JSON on stdout. */
const PROBE = `
const dgram = require('dgram');
const [server, spec] = [process.argv[1], JSON.parse(process.argv[2])];
const s = dgram.createSocket('udp4');
function q(name, id) {
  const labels = name.split('.');
  const parts = [Buffer.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0])];
  for (const l of labels) parts.push(Buffer.from([l.length]), Buffer.from(l));
  parts.push(Buffer.from([0, 0, 1, 0, 1]));
  return Buffer.concat(parts);
}
function ask(name, id) {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const timer = setTimeout(() => { s.removeAllListeners('message'); resolve({ ms: null, rcode: null }); }, 3000);
    s.on('message', (m) => {
      if (m.readUInt16BE(0) !== id) return;
      clearTimeout(timer); s.removeAllListeners('message');
      resolve({ ms: Number(process.hrtime.bigint() - t0) / 1e6, rcode: m[3] & 15, answers: m.readUInt16BE(6) });
    });
    s.send(q(name, id), 53, server);
  });
}
(async () => {
  const out = [];
  let id = 1;
  for (const step of spec) {
    for (let i = 0; i < step.n; i++) {
      out.push({ kind: step.kind, ...(await ask(step.name.replace('#', String(i)), id++ & 0xffff)) });
      if (step.pauseMs) await new Promise((r) => setTimeout(r, step.pauseMs));
    }
  }
  console.log(JSON.stringify(out));
  s.close();
})();
`;

async function netnsPart(): Promise<void> {
  const why = canRunNetns();
  if (why) {
    console.log(`netns part skipped: ${why}\n`);
    return;
  }
  const { meshLab } = await import('../netns/mesh-lab.js');
  const lab = new Lab();
  try {
    const l = meshLab(lab);
    await l.up(l.lh);
    const m1 = l.member(1);
    const m2 = l.member(2);
    await l.up(m1);
    await l.up(m2);
    await waitFor('m1 resolver', () => /DNS: names/.test(m1.proc!.output), 10_000);
    const spec = [
      { kind: 'cached', name: 'm1.mesh', n: NETNS_N },
      { kind: 'lighthouse-found', name: 'm2.mesh', n: 1 },
      // distinct names: each a lighthouse round trip; 10/s stays under its per-asker budget (20/s)
      { kind: 'lighthouse-nx', name: 'nobody#.mesh', n: NETNS_LOOKUPS, pauseMs: 100 },
    ];
    const text = lab.exec(m1.ns, [process.execPath, '-e', PROBE, m1.v4, JSON.stringify(spec)]);
    const samples = JSON.parse(text) as Array<{ kind: string; ms: number | null; rcode: number | null; answers?: number }>;
    const stat = (kind: string) => {
      const s = samples.filter((x) => x.kind === kind);
      const ok = s.filter((x) => x.ms !== null).map((x) => x.ms!).sort((a, b) => a - b);
      return { n: s.length, answered: ok.length, p50: pct(ok, 50), p99: pct(ok, 99), rcodes: [...new Set(s.map((x) => x.rcode))] };
    };
    const cached = stat('cached');
    const found = stat('lighthouse-found');
    const nx = stat('lighthouse-nx');
    console.log('real nodes in network namespaces (lighthouse + 2 members behind NATs; queries from m1 to its own overlay address, one at a time)');
    row(`cached name (m1.mesh, ${cached.answered}/${cached.n}): p50 / p99`, `${us(cached.p50)} / ${us(cached.p99)}`);
    row(`name only the lighthouse knows (m2.mesh, first query, rcode ${found.rcodes})`, `${found.p50?.toFixed(2)} ms`);
    row(`lighthouse round trips (${nx.answered}/${nx.n} distinct unknown names → NXDOMAIN): p50 / p99`, `${nx.p50?.toFixed(2)} ms / ${nx.p99?.toFixed(2)} ms`);
    results.netns = { cached, lighthouseFound: found, lighthouseNx: nx, dnsCounters: l.show(m1).dns };
  } finally {
    await lab.cleanup();
  }
  console.log('');
}

async function main(): Promise<void> {
  if (process.argv[2] === '--client') return client(Number(process.argv[3]), Number(process.argv[4]), Number(process.argv[5]));
  console.log(`bench:dns — node ${process.version}, ${new Date().toISOString()}\n`);
  const zone = PARTS.has('resolver') || PARTS.has('udp') ? benchZone() : null;
  if (PARTS.has('resolver')) resolverPart(zone!);
  if (PARTS.has('udp')) await udpPart(zone!);
  if (PARTS.has('netns')) await netnsPart();
  mkdirSync('bench-results', { recursive: true });
  const file = 'bench-results/dns.json';
  const prev = existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : {};
  writeFileSync(file, JSON.stringify({ ...prev, ...results, at: new Date().toISOString() }, null, 2) + '\n');
  console.log(`written: ${file}`);
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
