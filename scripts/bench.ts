/**
 * `sudo npm run bench`: keymesh against wireguard-go on the same machine, in the same run.
 *
 * Topology: netns/two-hosts.ts (two namespaces, one veth). For each implementation in turn:
 * bring up both ends, warm the tunnel, then measure
 *   - TCP throughput with iperf3, one stream and four streams (A → B);
 *   - ping RTT through the tunnel (bench-rtt.ts): keymesh and wireguard-go up side by side
 *     between the same namespaces, pinged in alternating blocks (150 pings each, 20 ms apart),
 *     right after start and again after bulk traffic — the two see the same machine state,
 *     which two separate runs minutes apart do not;
 *   - CPU per packet: CPU seconds of both tunnel processes divided by the packets their tunnel
 *     interfaces carried during the single-stream run (µs per packet per direction). With TUN
 *     offloads an interface counts a 64 KB super-packet as one packet, so the row that compares
 *     fairly is the second one: the same CPU divided by the bytes carried / 1420 (µs per
 *     1420-byte packet equivalent).
 * keymesh runs twice: with its segmentation offloads (the default) and with KEYMESH_OFFLOAD=0.
 * Prints a table with keymesh/wireguard-go ratios and writes bench-results/bench.json.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { Lab, startKeymesh, startWireguardGo, type NodeSpec, type Proc } from '../netns/lib.js';
import { TUNNEL, twoHosts } from '../netns/two-hosts.js';
import { measureRtt } from './bench-rtt.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CLK_TCK = 100;

function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK; // utime + stime
}

/** Busy and total jiffies of the whole machine (all CPUs), from /proc/stat. */
function machineJiffies(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3] + f[4]; // idle + iowait
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

function ifPackets(lab: Lab, n: NodeSpec): number {
  const j = JSON.parse(lab.exec(n.ns, ['ip', '-s', '-j', 'link', 'show', n.ifname]))[0];
  return j.stats64.rx.packets + j.stats64.tx.packets;
}

function ifBytes(lab: Lab, n: NodeSpec): number {
  const j = JSON.parse(lab.exec(n.ns, ['ip', '-s', '-j', 'link', 'show', n.ifname]))[0];
  return j.stats64.rx.bytes + j.stats64.tx.bytes;
}

function iperf(lab: Lab, a: NodeSpec, b: NodeSpec, streams: number): { mbps: number; retransmits: number } {
  const server = lab.spawn(b.ns, ['iperf3', '-s', '-1', '-B', TUNNEL.b], 'iperf3 server');
  void server;
  execWait(300);
  const out = lab.exec(a.ns, ['iperf3', '-c', TUNNEL.b, '-t', String(SECONDS), '-P', String(streams), '-J', '-O', '1']);
  const j = JSON.parse(out);
  return { mbps: j.end.sum_received.bits_per_second / 1e6, retransmits: j.end.sum_sent.retransmits ?? 0 };
}

function execWait(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

interface Result {
  mbps1: number;
  retr1: number;
  mbps4: number;
  retr4: number;
  usPerPacket: number;
  usPer1420: number;
  /** CPU of the busier tunnel process during the 1-stream run, in % of one core. */
  busiestCore: number;
  /** The whole machine's CPU use during the 1-stream run, % of all its cores. */
  machineBusy: number;
}

async function run(impl: 'keymesh' | 'wireguard-go', env?: Record<string, string>): Promise<Result> {
  const lab = new Lab();
  try {
    const { a, b } = twoHosts(lab);
    if (env) a.env = b.env = env;
    const start = impl === 'keymesh' ? startKeymesh : startWireguardGo;
    const pb: Proc = await start(lab, b);
    const pa: Proc = await start(lab, a);
    lab.exec(a.ns, ['ping', '-c', '3', '-i', '0.2', TUNNEL.b]); // handshake
    const ca0 = cpuSeconds(pa.child.pid!);
    const cb0 = cpuSeconds(pb.child.pid!);
    const cpu0 = ca0 + cb0;
    const t0 = performance.now();
    const m0 = machineJiffies();
    const pk0 = ifPackets(lab, a) + ifPackets(lab, b);
    const by0 = ifBytes(lab, a) + ifBytes(lab, b);
    const one = iperf(lab, a, b, 1);
    const wall = (performance.now() - t0) / 1000;
    const m1 = machineJiffies();
    const ca1 = cpuSeconds(pa.child.pid!);
    const cb1 = cpuSeconds(pb.child.pid!);
    const cpu1 = ca1 + cb1;
    const pk1 = ifPackets(lab, a) + ifPackets(lab, b);
    const by1 = ifBytes(lab, a) + ifBytes(lab, b);
    execWait(500);
    const four = iperf(lab, a, b, 4);
    return {
      mbps1: one.mbps,
      retr1: one.retransmits,
      mbps4: four.mbps,
      retr4: four.retransmits,
      usPerPacket: ((cpu1 - cpu0) * 1e6) / (pk1 - pk0),
      usPer1420: ((cpu1 - cpu0) * 1e6) / ((by1 - by0) / 1420),
      busiestCore: (Math.max(ca1 - ca0, cb1 - cb0) / wall) * 100,
      machineBusy: ((m1.busy - m0.busy) / (m1.total - m0.total)) * 100,
    };
  } finally {
    await lab.cleanup();
  }
}

if (process.getuid?.() !== 0) {
  console.error('bench: needs root (network namespaces): sudo npm run bench');
  process.exit(1);
}
console.log(`keymesh vs wireguard-go: two namespaces over veth, iperf3 ${SECONDS} s per run, same machine, same run\n`);
const km = await run('keymesh');
const kmOff = await run('keymesh', { KEYMESH_OFFLOAD: '0' });
const wg = await run('wireguard-go');
const row = (name: string, k: number, ko: number, w: number, unit: string, digits = 1) =>
  console.log(
    `${name.padEnd(28)} ${k.toFixed(digits).padStart(10)} ${ko.toFixed(digits).padStart(12)} ${w.toFixed(digits).padStart(14)}  ${unit.padEnd(8)} ${(k / w).toFixed(2).padStart(6)}× ${(ko / w).toFixed(2).padStart(9)}×`,
  );
console.log(`${''.padEnd(28)} ${'keymesh'.padStart(10)} ${'no offload'.padStart(12)} ${'wireguard-go'.padStart(14)}  ${''.padEnd(8)} ${'ratio'.padStart(7)} ${'no offload'.padStart(10)}`);
row('TCP, 1 stream', km.mbps1, kmOff.mbps1, wg.mbps1, 'Mbit/s');
row('TCP, 4 streams', km.mbps4, kmOff.mbps4, wg.mbps4, 'Mbit/s');
row('retransmits, 1 stream', km.retr1, kmOff.retr1, wg.retr1, '', 0);
const rtt = await measureRtt();
const rttRow = (name: string, k: number, w: number) =>
  console.log(`${name.padEnd(28)} ${k.toFixed(3).padStart(10)} ${'—'.padStart(12)} ${w.toFixed(3).padStart(14)}  ${'ms'.padEnd(8)} ${(k / w).toFixed(2).padStart(6)}×`);
rttRow('ping RTT p50', rtt.steady.keymesh.p50, rtt.steady.wireguardGo.p50);
rttRow('ping RTT avg', rtt.steady.keymesh.avg, rtt.steady.wireguardGo.avg);
rttRow('ping RTT p90', rtt.steady.keymesh.p90, rtt.steady.wireguardGo.p90);
rttRow('ping RTT p50, just started', rtt.justStarted.keymesh.p50, rtt.justStarted.wireguardGo.p50);
row('CPU per packet (both ends)', km.usPerPacket, kmOff.usPerPacket, wg.usPerPacket, 'µs', 2);
row('CPU per 1420 B (both ends)', km.usPer1420, kmOff.usPer1420, wg.usPer1420, 'µs', 2);
row('busiest process, 1 stream', km.busiestCore, kmOff.busiestCore, wg.busiestCore, '% core', 0);
row('machine CPU busy, 1 stream', km.machineBusy, kmOff.machineBusy, wg.machineBusy, '% all', 0);

// In-process figures (keymesh only: wireguard-go has no in-process harness here), from the
// core and scale benchmarks run as child processes.
const here = path.dirname(fileURLToPath(import.meta.url));
execFileSync(process.execPath, [path.join(here, 'bench-core.js')], { stdio: 'ignore' });
execFileSync(process.execPath, ['--expose-gc', path.join(here, 'bench-scale.js')], { stdio: 'ignore' });
const core = JSON.parse(readFileSync('bench-results/core.json', 'utf8'));
const scale = JSON.parse(readFileSync('bench-results/scale.json', 'utf8'));
const hs = Object.entries(core.handshakesPerSecond as Record<string, { responder: number; complete: number }>).find(([k]) => k.startsWith('native'));
console.log('');
if (hs) console.log(`handshakes per second, one core: ${hs[1].responder.toFixed(0)} as responder, ${hs[1].complete.toFixed(0)} complete (both sides on one core) — ${hs[0]}`);
console.log(`10,000 peers in one node: ${scale.memory.perPeerHeap.toFixed(0)} B per idle peer (${scale.memory.beyondKeys.toFixed(0)} B beyond its keys), allowed-IPs lookup ${scale.lookups['10000'].v4ns.toFixed(0)} ns (IPv4) / ${scale.lookups['10000'].v6ns.toFixed(0)} ns (IPv6)`);
mkdirSync('bench-results', { recursive: true });
const out = { date: new Date().toISOString(), seconds: SECONDS, keymesh: km, keymeshNoOffload: kmOff, wireguardGo: wg, rtt, handshakes: core.handshakesPerSecond, scale };
writeFileSync('bench-results/bench.json', JSON.stringify(out, null, 2));
console.log('\nwritten to bench-results/bench.json');
