/**
 * `sudo npm run bench:nat`: NAT traversal through lighthouses (topology netns/nat.ts), for
 * members behind port-preserving ("cone") and behind symmetric NATs:
 *   time to first packet  — A sends to B (no session, no known address) until the first echo
 *                           comes back through the tunnel;
 *   time to direct path   — from that first send until A's active path to B is a direct one
 *                           (never, for symmetric NATs: traffic stays on a relay);
 *   outage, both move     — longest silence of a 10 ms echo probe when both members move behind
 *                           other NATs of the same kind at the same moment.
 * RUNS=N repeats each (default 1) and prints every run. Writes bench-results/nat.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { Lab, sleep, startKeymesh, startProbe, waitFor } from '../netns/lib.js';
import { NAT_TUNNEL, natTopology } from '../netns/nat.js';
import { controlRequest } from '../src/io/control.js';

const RUNS = Number(process.env.RUNS ?? 1);

const ECHO = `
const s=require('dgram').createSocket('udp4');
s.on('message',(m,r)=>s.send(m,r.port,r.address));s.bind(Number(process.argv[2]),process.argv[1],()=>console.log('ECHOING'));`;

/** Sends every 5 ms; prints the wall-clock time of its first send and of the first echo, then exits. */
const FIRST = `
const s=require('dgram').createSocket('udp4');let t0=0;
s.on('message',()=>{console.log(JSON.stringify({start:t0,first:Date.now()}));process.exit(0)});
const go=()=>{if(!t0)t0=Date.now();s.send('x',Number(process.argv[2]),process.argv[1])};
go();setInterval(go,5);setTimeout(()=>{console.log(JSON.stringify({start:t0,first:null}));process.exit(0)},15000);`;

interface PathInfo {
  kind: string;
  active: boolean;
}

async function activeKind(ifname: string, key: string): Promise<string | undefined> {
  const r = await controlRequest(ifname, { op: 'status' });
  const p = (r.status.peers as Array<{ publicKey: string; paths: PathInfo[]; session: object | null }>).find((x) => x.publicKey === key);
  return p?.paths.find((x) => x.active)?.kind;
}

async function registered(ifname: string, keys: string[]): Promise<boolean> {
  const r = await controlRequest(ifname, { op: 'status' }).catch(() => null); // its control socket may not be up yet
  if (!r) return false;
  return keys.every((k) => (r.status.peers as Array<{ publicKey: string; session: object | null }>).find((p) => p.publicKey === k)?.session);
}

async function run(kind: 'cone' | 'symmetric'): Promise<{ firstMs: number | null; directMs: number | null; outageMs: number }> {
  const lab = new Lab();
  try {
    const [a0, b0, a1, b1] = kind === 'cone' ? ['c1', 'c2', 'c3', 'c4'] : ['s1', 's2', 's3', 's4'];
    const t = natTopology(lab, { aAt: a0, bAt: b0 });
    for (const n of [t.l1, t.l2, t.a.spec, t.b.spec]) await startKeymesh(lab, n);
    for (const m of [t.a.spec, t.b.spec]) await waitFor('registration', () => registered(m.ifname, [t.keys.l1, t.keys.l2]), 8000);
    const echo = lab.spawn(t.b.spec.ns, [process.execPath, '-e', ECHO, NAT_TUNNEL.b, '7000'], 'echo');
    await waitFor('echo', () => echo.output.includes('ECHOING'), 5000);
    const client = lab.spawn(t.a.spec.ns, [process.execPath, '-e', FIRST, NAT_TUNNEL.b, '7000'], 'first');
    // poll A's view of B until the active path is direct (10 s at most)
    let directAt: number | null = null;
    const end = Date.now() + 10_000;
    while (Date.now() < end) {
      if ((await activeKind(t.a.spec.ifname, t.keys.b)) === 'direct') {
        directAt = Date.now();
        break;
      }
      await sleep(5);
    }
    await client.exited;
    const first = JSON.parse(client.output.trim().split('\n').pop()!) as { start: number; first: number | null };
    const firstMs = first.first === null ? null : first.first - first.start;
    const directMs = directAt === null ? null : directAt - first.start;
    await sleep(1500);
    const probe = await startProbe(lab, t.a.spec.ns, t.b.spec.ns, NAT_TUNNEL.b);
    await sleep(1000);
    await t.move([
      [t.a, a1],
      [t.b, b1],
    ]);
    await sleep(4000);
    const p = await probe.stop();
    return { firstMs, directMs, outageMs: p.received === 0 ? Infinity : p.maxGapMs };
  } finally {
    await lab.cleanup();
  }
}

if (process.getuid?.() !== 0) {
  console.error('bench:nat: needs root (network namespaces): sudo npm run bench:nat');
  process.exit(1);
}
const results: Record<string, Array<Awaited<ReturnType<typeof run>>>> = { cone: [], symmetric: [] };
for (let i = 0; i < RUNS; i++) {
  for (const kind of ['cone', 'symmetric'] as const) results[kind].push(await run(kind));
}
const fmt = (v: number | null, none: string) => (v === null ? none : v === Infinity ? 'never' : String(Math.round(v)));
console.log('NAT traversal through lighthouses (ms; netns/nat.ts; one line per run)\n');
console.log(`${'members behind'.padEnd(16)} ${'first packet'.padStart(13)} ${'direct path'.padStart(12)} ${'outage, both move'.padStart(18)}`);
for (const kind of ['cone', 'symmetric'] as const) {
  for (const r of results[kind]) {
    console.log(`${`${kind} NATs`.padEnd(16)} ${fmt(r.firstMs, 'none').padStart(13)} ${fmt(r.directMs, 'relay').padStart(12)} ${fmt(r.outageMs, '').padStart(18)}`);
  }
}
mkdirSync('bench-results', { recursive: true });
writeFileSync('bench-results/nat.json', JSON.stringify(results, (_k, v) => (v === Infinity ? 'never' : v), 2));
process.exit(0);
