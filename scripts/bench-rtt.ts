/**
 * `sudo npm run bench:rtt`: ping RTT through keymesh and through wireguard-go, both tunnels up at
 * the same time between the same two namespaces, measured in alternating blocks so that both see
 * the same machine (CPU frequency, neighbours, cache state) — a fairer comparison than two runs
 * one after the other.
 *
 *     ns a                                       ns b
 *   ┌─────────────────────────┐  veth  ┌─────────────────────────┐
 *   │ eth0 192.0.2.1          ├────────┤ eth0 192.0.2.2          │
 *   │ keymesh  10.0.0.1 :51820│        │ keymesh  10.0.0.2 :51820│
 *   │ wg-go    10.9.0.1 :51821│        │ wg-go    10.9.0.2 :51821│
 *   └─────────────────────────┘        └─────────────────────────┘
 *
 * Phases: "just started" (the first pings after the handshake: keymesh's JavaScript has not been
 * optimized by V8 yet), then "steady" (after a few seconds of bulk traffic through each tunnel).
 * Each phase: RTT_ROUNDS (6) rounds of RTT_PINGS (25) pings, 20 ms apart, keymesh and
 * wireguard-go taking turns (which goes first alternates). Prints p50 / avg / p90 per
 * implementation and the ratio; RTT_RUNS repeats the whole thing with fresh nodes; RTT_ENV
 * ("K=V,K=V") sets environment for the keymesh processes. `npm run bench` runs it once.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { Lab, startKeymesh, startWireguardGo, wgGenKeypair, type NodeSpec } from '../netns/lib.js';
import { twoHosts, TUNNEL, UNDERLAY } from '../netns/two-hosts.js';

import { pathToFileURL } from 'node:url';

const WG = { a: '10.9.0.1', b: '10.9.0.2' };

export interface RttStats {
  p50: number;
  avg: number;
  p90: number;
  min: number;
  n: number;
}
export interface RttPhase {
  keymesh: RttStats;
  wireguardGo: RttStats;
}

function pings(lab: Lab, ns: string, addr: string, count: number): number[] {
  const out = lab.exec(ns, ['ping', '-c', String(count), '-i', '0.02', '-W', '1', addr]);
  return [...out.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
}

function stats(xs: number[]): RttStats {
  const s = [...xs].sort((x, y) => x - y);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return { p50: q(0.5), avg: s.reduce((a, b) => a + b, 0) / s.length, p90: q(0.9), min: s[0], n: s.length };
}

/** ROUNDS rounds of PINGS pings 20 ms apart through each tunnel, taking turns (who goes first alternates). */
function phase(lab: Lab, a: NodeSpec, rounds: number, count: number): RttPhase {
  const km: number[] = [];
  const wg: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? ['km', 'wg'] : ['wg', 'km'];
    for (const who of order) {
      if (who === 'km') km.push(...pings(lab, a.ns, TUNNEL.b, count));
      else wg.push(...pings(lab, a.ns, WG.b, count));
    }
  }
  return { keymesh: stats(km), wireguardGo: stats(wg) };
}

/**
 * Both tunnels up between the same two namespaces; RTT right after start, then after a few
 * seconds of bulk traffic through each. `env`: extra environment for the keymesh processes.
 */
export async function measureRtt(rounds = 6, count = 25, env?: Record<string, string>): Promise<{ justStarted: RttPhase; steady: RttPhase }> {
  const lab = new Lab();
  try {
    const { a, b } = twoHosts(lab);
    const ka = wgGenKeypair();
    const kb = wgGenKeypair();
    const wa: NodeSpec = {
      ns: a.ns, ifname: lab.name('wa'), privateKey: ka.privateKey, listenPort: 51821, addresses: [`${WG.a}/24`],
      peers: [{ publicKey: kb.publicKey, allowedIps: [`${WG.b}/32`], endpoint: `${UNDERLAY.b}:51821` }],
    };
    const wb: NodeSpec = {
      ns: b.ns, ifname: lab.name('wb'), privateKey: kb.privateKey, listenPort: 51821, addresses: [`${WG.b}/24`],
      peers: [{ publicKey: ka.publicKey, allowedIps: [`${WG.a}/32`] }],
    };
    if (env) a.env = b.env = env;
    await startKeymesh(lab, b);
    await startKeymesh(lab, a);
    await startWireguardGo(lab, wb);
    await startWireguardGo(lab, wa);
    lab.exec(a.ns, ['ping', '-c', '2', '-i', '0.2', TUNNEL.b]); // handshakes
    lab.exec(a.ns, ['ping', '-c', '2', '-i', '0.2', WG.b]);
    const justStarted = phase(lab, a, rounds, count);
    for (const dst of [TUNNEL.b, WG.b]) {
      lab.spawn(b.ns, ['iperf3', '-s', '-1', '-B', dst], 'iperf3 server');
      await new Promise((r) => setTimeout(r, 300));
      lab.exec(a.ns, ['iperf3', '-c', dst, '-t', '3']);
    }
    const steady = phase(lab, a, rounds, count);
    return { justStarted, steady };
  } finally {
    await lab.cleanup();
  }
}

export function formatPhase(label: string, p: RttPhase): string {
  const f = (x: number) => x.toFixed(3).padStart(7);
  const k = p.keymesh;
  const w = p.wireguardGo;
  return `${label.padEnd(14)} keymesh p50 ${f(k.p50)} avg ${f(k.avg)} p90 ${f(k.p90)} | wireguard-go p50 ${f(w.p50)} avg ${f(w.avg)} p90 ${f(w.p90)} | ratio p50 ${(k.p50 / w.p50).toFixed(2)}× avg ${(k.avg / w.avg).toFixed(2)}× (n=${k.n}/${w.n})`;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.getuid?.() !== 0) {
    console.error('bench:rtt: needs root (network namespaces): sudo npm run bench:rtt');
    process.exit(1);
  }
  const rounds = Number(process.env.RTT_ROUNDS ?? 6);
  const count = Number(process.env.RTT_PINGS ?? 25);
  const env = process.env.RTT_ENV ? Object.fromEntries(process.env.RTT_ENV.split(',').map((kv) => { const i = kv.indexOf('='); return [kv.slice(0, i), kv.slice(i + 1)]; })) : undefined;
  const runs = Number(process.env.RTT_RUNS ?? 1);
  console.log(`ping RTT (ms), keymesh and wireguard-go up side by side, ${rounds} × ${count} pings each per phase, taking turns\n`);
  const all = [];
  for (let i = 0; i < runs; i++) {
    const r = await measureRtt(rounds, count, env);
    console.log(formatPhase('just started', r.justStarted));
    console.log(formatPhase('steady', r.steady));
    all.push(r);
  }
  mkdirSync('bench-results', { recursive: true });
  writeFileSync('bench-results/rtt.json', JSON.stringify({ date: new Date().toISOString(), rounds, count, runs: all }, null, 2));
  console.log('\nwritten to bench-results/rtt.json');
}
