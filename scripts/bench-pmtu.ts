/**
 * `sudo npm run bench:pmtu`: the path MTU shrinking under a steady transfer (topology
 * netns/pmtu-lab.ts: A — R — B, R dropping ICMP frag-needed / packet-too-big). A sends to B over
 * TCP through the tunnel for PMTU_SECONDS (12); PMTU_SWITCH_AT (3) s in, R's link towards B goes
 * from 1500 to 1280 bytes. Per implementation (both ends the same: keymesh, keymesh with
 * KEYMESH_PMTU=0, Debian's wireguard-go, and a modern one when WG_GO_MODERN=/path/to/wireguard-go):
 *   - when the receiver's bytes stopped after the switch, and when they flowed again (the time to
 *     detect the black hole and recover); a transfer that gets no byte for PMTU_STALL (8) s is
 *     given up and printed as "stalled (no bytes for N s)";
 *   - when A's `keymesh show --json` first showed the active path's pmtu at ≤ 1280 (detection);
 *   - throughput before and after the switch;
 *   - the probes' overhead: `keymesh show --json`'s stats.pmtu.probes / probeBytes (IP level) at
 *     both ends, during the run and per minute while idle (PMTU_IDLE, 10 s); "n/a" for the others;
 *   - outer fragments during the run (R's counters on its ports, FragCreates of A, B and R).
 * PMTU_UNDERLAY=6 runs over the IPv6 underlay. Writes bench-results/pmtu.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { Lab, sleep } from '../netns/lib.js';
import { fragDelta, fragTotal, longestGap, pmtuLab, PMTU_TUNNEL, transfer, tunnelUp, type Pair } from '../netns/pmtu-lab.js';

const SECONDS = Number(process.env.PMTU_SECONDS ?? 12);
const SWITCH_AT = Number(process.env.PMTU_SWITCH_AT ?? 3);
const STALL = Number(process.env.PMTU_STALL ?? 8);
const IDLE = Number(process.env.PMTU_IDLE ?? 10);
const UNDERLAY = (process.env.PMTU_UNDERLAY === '6' ? 6 : 4) as 4 | 6;
const SMALL = 1280;

interface Impl {
  label: string;
  impl: string;
  env?: Record<string, string>;
}

interface Probes {
  probes: number;
  bytes: number;
}

interface Result {
  impl: string;
  /** ms after the switch when the receiver's longest silence began, and how long it lasted (for a stalled transfer: until given up). */
  stallFromMs: number | null;
  stallMs: number | null;
  /** ms from the switch until bytes flowed again (null: stalled). */
  recoveredMs: number | null;
  stalled: string | null;
  /** ms from the switch until A's show --json had the active path's pmtu ≤ 1280 (null: never). */
  detectedMs: number | null;
  /** Whether A's show --json has a pmtu per path at all. */
  pmtuReported: boolean;
  mbitBefore: number | null;
  mbitAfter: number | null;
  receivedMB: number;
  ok: boolean;
  /** Probe counters per end over the run, and while idle (per minute); null: not reported. */
  probesRun: Record<'a' | 'b', Probes | null>;
  probesIdlePerMinute: Record<'a' | 'b', Probes | null>;
  pmtuAtEnd: unknown;
  tunnelMtuAtEnd: number | null;
  outerFragments: number;
}

function probeCounters(status: any): Probes | null {
  const c = status?.stats?.pmtu;
  if (!c || typeof c.probes !== 'number') return null;
  return { probes: c.probes, bytes: typeof c.probeBytes === 'number' ? c.probeBytes : NaN };
}

const minus = (x: Probes | null, y: Probes | null): Probes | null => (x && y ? { probes: x.probes - y.probes, bytes: x.bytes - y.bytes } : null);

async function status(pair: Pair, side: 'a' | 'b'): Promise<any> {
  try {
    return await pair.show(side);
  } catch {
    return null;
  }
}

const activePmtu = (s: any) => s?.peers?.[0]?.paths?.find((p: any) => p.active)?.pmtu;

/** Mbit/s the receiver saw between two wall-clock times. */
function rate(r: { t0: number; buckets: number[] }, from: number, to: number): number | null {
  if (to <= from) return null;
  let bytes = 0;
  for (let i = 0; i < r.buckets.length; i++) {
    const at = r.t0 + i * 50;
    if (at >= from && at < to) bytes += r.buckets[i];
  }
  return (bytes * 8) / ((to - from) / 1000) / 1e6;
}

async function run(x: Impl): Promise<Result> {
  const lab = new Lab();
  try {
    const t = pmtuLab(lab);
    t.setLinkMtu(1500);
    t.dropIcmp(true);
    const pair = await t.start({ a: x.impl, b: x.impl, underlay: UNDERLAY, env: x.env });
    await tunnelUp(lab, t.nsA, PMTU_TUNNEL.b, 15_000);
    const keymesh = x.impl === 'keymesh';
    const p0 = { a: probeCounters(await status(pair, 'a')), b: probeCounters(await status(pair, 'b')) };
    const f0 = t.fragments();
    let switchAt = 0;
    let detectedMs: number | null = null;
    let pmtuReported = keymesh;
    const r = await transfer(lab, t.nsA, t.nsB, PMTU_TUNNEL.b, {
      seconds: SECONDS,
      stallMs: STALL * 1000,
      deadlineMs: (SECONDS + STALL + 20) * 1000,
      during: async (startedAt) => {
        await sleep(Math.max(0, startedAt + SWITCH_AT * 1000 - Date.now()));
        switchAt = Date.now();
        t.setLinkMtu(SMALL);
        // detection, as A reports it: the active path's pmtu at or below the new link MTU
        while (keymesh && Date.now() - switchAt < (SECONDS - SWITCH_AT + STALL) * 1000) {
          const m = activePmtu(await status(pair, 'a'));
          if (m === undefined) {
            pmtuReported = false;
            break;
          }
          if (m && typeof m.mtu === 'number' && m.mtu <= SMALL) {
            detectedMs = Date.now() - switchAt;
            break;
          }
          await sleep(50);
        }
      },
    });
    const outerFragments = fragTotal(fragDelta(f0, t.fragments()));
    const sA = await status(pair, 'a');
    const p1 = { a: probeCounters(sA), b: probeCounters(await status(pair, 'b')) };
    await sleep(IDLE * 1000);
    const p2 = { a: probeCounters(await status(pair, 'a')), b: probeCounters(await status(pair, 'b')) };
    const perMinute = (d: Probes | null) => (d ? { probes: (d.probes * 60) / IDLE, bytes: (d.bytes * 60) / IDLE } : null);
    const gap = r.received && r.received.t0 > 0 ? longestGap(r.received, switchAt) : null;
    const recovered = r.ok && gap !== null;
    const end = r.received ? r.received.t0 + r.received.buckets.length * 50 : 0;
    const result: Result = {
      impl: x.label,
      stallFromMs: gap ? gap.endWall - gap.gapMs - switchAt : null,
      stallMs: gap ? gap.gapMs : null,
      recoveredMs: recovered ? (gap!.gapMs === 0 ? 0 : gap!.endWall - switchAt) : null,
      stalled: r.stalled,
      detectedMs,
      pmtuReported,
      mbitBefore: r.received ? rate(r.received, r.received.t0 + 500, switchAt) : null,
      mbitAfter: recovered ? rate(r.received!, gap!.endWall, end) : null,
      receivedMB: r.progress / 1e6,
      ok: r.ok,
      probesRun: { a: minus(p1.a, p0.a), b: minus(p1.b, p0.b) },
      probesIdlePerMinute: { a: perMinute(minus(p2.a, p1.a)), b: perMinute(minus(p2.b, p1.b)) },
      pmtuAtEnd: keymesh ? (activePmtu(sA) ?? null) : null,
      tunnelMtuAtEnd: keymesh ? (sA?.peers?.[0]?.tunnelMtu ?? null) : null,
      outerFragments,
    };
    await pair.stop();
    return result;
  } finally {
    await lab.cleanup();
  }
}

if (process.getuid?.() !== 0) {
  console.error('bench:pmtu: needs root (network namespaces): sudo npm run bench:pmtu');
  process.exit(1);
}
const impls: Impl[] = [
  { label: 'keymesh', impl: 'keymesh' },
  { label: 'keymesh (KEYMESH_PMTU=0)', impl: 'keymesh', env: { KEYMESH_PMTU: '0' } },
  { label: 'wireguard-go', impl: 'wireguard-go' },
  ...(process.env.WG_GO_MODERN ? [{ label: `wireguard-go (${process.env.WG_GO_MODERN})`, impl: process.env.WG_GO_MODERN }] : []),
];
const only = process.env.PMTU_ONLY;
const results: Result[] = [];
for (const x of impls) if (!only || x.label.includes(only)) results.push(await run(x));

const ms = (v: number | null) => (v === null ? '—' : String(Math.round(v)));
const mbit = (v: number | null) => (v === null ? '—' : v.toFixed(0));
const probes = (p: Probes | null) => (p === null ? 'n/a' : `${p.probes} / ${Number.isNaN(p.bytes) ? 'n/a' : Math.round(p.bytes)} B`);
console.log(
  `Path MTU black hole: A → B over TCP for ${SECONDS} s, R's link towards B 1500 → ${SMALL} at ${SWITCH_AT} s, R drops ICMP frag-needed / packet-too-big; IPv${UNDERLAY} underlay (netns/pmtu-lab.ts)\n`,
);
console.log(
  `${'implementation (both ends)'.padEnd(36)} ${'recovered'.padStart(34)} ${'stall from/len (ms)'.padStart(20)} ${'detected (ms)'.padStart(14)} ${'Mbit/s before/after'.padStart(20)} ${'outer frags'.padStart(12)} ${'probes run A | B'.padStart(26)} ${'probes idle/min A | B'.padStart(26)}`,
);
for (const r of results) {
  const rec = r.recoveredMs !== null ? `${ms(r.recoveredMs)} ms after the switch` : r.stalled ? `stalled (${r.stalled.replace(/ \(.*$/, '')})` : 'failed (hash mismatch)';
  console.log(
    `${r.impl.padEnd(36)} ${rec.padStart(34)} ${`${ms(r.stallFromMs)} / ${r.stalled ? '≥' : ''}${ms(r.stallMs)}`.padStart(20)} ${(r.pmtuReported ? ms(r.detectedMs) : 'n/a').padStart(14)} ${`${mbit(r.mbitBefore)} / ${mbit(r.mbitAfter)}`.padStart(20)} ${String(r.outerFragments).padStart(12)} ${`${probes(r.probesRun.a)} | ${probes(r.probesRun.b)}`.padStart(26)} ${`${probes(r.probesIdlePerMinute.a)} | ${probes(r.probesIdlePerMinute.b)}`.padStart(26)}`,
  );
}
const km = results.find((r) => r.impl === 'keymesh');
const wg = results.find((r) => r.impl === 'wireguard-go');
if (km && wg) {
  const kmText = km.recoveredMs !== null ? `recovered ${ms(km.recoveredMs)} ms after the switch` : `did not recover (${km.stalled ?? 'hash mismatch'})`;
  const wgText = wg.recoveredMs !== null ? `recovered ${ms(wg.recoveredMs)} ms after the switch` : `stalled (no bytes for ${STALL} s, given up)`;
  const ratio = km.recoveredMs !== null && wg.recoveredMs !== null && km.recoveredMs > 0 ? ` — ${(wg.recoveredMs / km.recoveredMs).toFixed(1)}× faster` : km.recoveredMs !== null && wg.recoveredMs === null ? ' — keymesh recovers where wireguard-go does not' : '';
  console.log(`\nkeymesh ${kmText}; wireguard-go ${wgText}${ratio}.`);
  console.log(`keymesh tunnelMtu at the end ${km.tunnelMtuAtEnd ?? 'n/a'}, active path pmtu ${JSON.stringify(km.pmtuAtEnd ?? 'n/a')}`);
}
mkdirSync('bench-results', { recursive: true });
writeFileSync('bench-results/pmtu.json', JSON.stringify(results, null, 2));
process.exit(0);
