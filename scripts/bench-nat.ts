/**
 * `sudo npm run bench:nat`: NAT traversal through lighthouses.
 *
 * 1. The NAT matrix (netns/nat-matrix.ts, the cases the tests assert): per NAT pair, the time to
 *    the first ping answer when A pings the moment every node is up, the same when B comes up
 *    while A is already pinging, the time until both sides are on a direct path, direct or relay,
 *    and the lighthouse's share of the bytes of a 10 MB transfer. Every case runs twice in the
 *    same lab: as shipped, and with the NAT openers off (KEYMESH_PUNCH_OPENERS=0: punching as it
 *    was before src/core/punch.ts), side by side.
 * 2. Moves (topology netns/nat.ts), for members behind port-preserving ("cone") and behind
 *    symmetric NATs:
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
import { MATRIX, natMatrix, runMatrixCase, type MatrixResult } from '../netns/nat-matrix.js';
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
// 1. the matrix, with and without openers, one lab
const matrix: Array<{ openers: MatrixResult; without: MatrixResult }> = [];
{
  const lab = new Lab();
  try {
    const t = natMatrix(lab);
    for (let i = 0; i < RUNS; i++) {
      for (const c of MATRIX) {
        delete process.env.KEYMESH_PUNCH_OPENERS;
        const openers = await runMatrixCase(lab, t, c);
        process.env.KEYMESH_PUNCH_OPENERS = '0';
        const without = await runMatrixCase(lab, t, c);
        delete process.env.KEYMESH_PUNCH_OPENERS;
        matrix.push({ openers, without });
        process.stderr.write(`  ${c.name}: done\n`);
      }
    }
  } finally {
    await lab.cleanup();
  }
}
const ms = (v: number | null) => (v === null ? '—' : `${v}`);
const share = (v: number | null) => (v === null ? '—' : `${(v * 100).toFixed(v < 0.01 ? 2 : 0)} %`);
console.log('NAT matrix (netns/nat-matrix.ts; ms; "without" = the same run with the NAT openers off)\n');
console.log(
  `${'NAT pair'.padEnd(44)} ${'1st answer'.padStart(10)} ${'late peer'.padStart(9)} ${'direct after'.padStart(12)} ${'path'.padStart(6)} ${'LH share'.padStart(8)}   ${'without: path'.padStart(13)} ${'LH share'.padStart(8)}`,
);
for (const { openers: r, without: w } of matrix) {
  console.log(
    `${r.name.padEnd(44)} ${ms(r.firstAnswerMs).padStart(10)} ${ms(r.lateAnswerMs).padStart(9)} ${ms(r.directAfterMs).padStart(12)} ${r.path.padStart(6)} ${share(r.lighthouseShare).padStart(8)}   ${w.path.padStart(13)} ${share(w.lighthouseShare).padStart(8)}`,
  );
}
console.log('');

// 2. moves
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
writeFileSync('bench-results/nat.json', JSON.stringify({ matrix, moves: results }, (_k, v) => (v === Infinity ? 'never' : v), 2));
process.exit(0);
