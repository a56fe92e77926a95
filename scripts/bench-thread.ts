/**
 * `sudo node dist/scripts/bench-thread.js base|thread|thread-a`: ONE keymesh ↔ keymesh run of the
 * KEYMESH_SEAL_THREAD A/B comparison (thread: both ends of the tunnel have the thread; thread-a:
 * only the data sender), so that each run can be taken under a lock and runs of the variants
 * interleaved from outside:
 *
 *   for i in 1 2 3 4; do for v in base thread; do flock /tmp/lock node dist/scripts/bench-thread.js $v; done; done
 *
 * Topology and measurements as in scripts/bench.ts (netns/two-hosts.ts, iperf3 1 and 4 streams,
 * BENCH_SECONDS each, default 5; CPU per 1420 B of both tunnel processes during the 1-stream run,
 * the busier process in % of one core, the machine's % busy, ping RTT after the throughput runs),
 * plus how the busier process's CPU splits between its threads (the JS thread, the seal thread,
 * libuv/V8 helpers). Appends one JSON line to bench-results/thread-ab.jsonl and prints it;
 * `node dist/scripts/bench-thread.js summary` prints medians and ranges per variant.
 */
import { spawn } from 'node:child_process';
import { appendFileSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { KEYMESH_BIN, Lab, startKeymesh, type NodeSpec } from '../netns/lib.js';
import { TUNNEL, twoHosts } from '../netns/two-hosts.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CLK_TCK = 100;
/** BENCH_PERF=1: also `perf record -e cpu-clock -a -g` during the 1-stream run (results kept apart: perf costs CPU). */
const PERF = process.env.BENCH_PERF === '1';
const OUT = PERF ? 'bench-results/thread-ab-perf.jsonl' : 'bench-results/thread-ab.jsonl';
/** Per variant, the environment of node a (the iperf3 client, data sender) and node b. */
const T = { KEYMESH_SEAL_THREAD: '1' };
const VARIANTS: Record<string, { a: Record<string, string>; b: Record<string, string> }> = {
  base: { a: {}, b: {} },
  thread: { a: T, b: T },
  'thread-a': { a: T, b: {} }, // only the data sender has the thread
};

const ticks = (stat: string) => {
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime
};
const cpuSeconds = (pid: number) => ticks(readFileSync(`/proc/${pid}/stat`, 'utf8')) / CLK_TCK;
/** CPU seconds per thread name (comm) of a process. */
function threadCpu(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      const s = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
      const name = t === String(pid) ? 'main (JS)' : s.slice(s.indexOf('(') + 1, s.lastIndexOf(')'));
      out[name] = (out[name] ?? 0) + ticks(s) / CLK_TCK;
    } catch {
      /* thread gone */
    }
  }
  return out;
}
function machineJiffies(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3] - f[4], total };
}
function ifBytes(lab: Lab, n: NodeSpec): number {
  const j = JSON.parse(lab.exec(n.ns, ['ip', '-s', '-j', 'link', 'show', n.ifname]))[0];
  return j.stats64.rx.bytes + j.stats64.tx.bytes;
}
const sleep = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
function iperf(lab: Lab, a: NodeSpec, b: NodeSpec, streams: number): { mbps: number; retransmits: number } {
  lab.spawn(b.ns, ['iperf3', '-s', '-1', '-B', TUNNEL.b], 'iperf3 server');
  sleep(300);
  const j = JSON.parse(lab.exec(a.ns, ['iperf3', '-c', TUNNEL.b, '-t', String(SECONDS), '-P', String(streams), '-J', '-O', '1']));
  return { mbps: j.end.sum_received.bits_per_second / 1e6, retransmits: j.end.sum_sent.retransmits ?? 0 };
}
function pingRtt(lab: Lab, a: NodeSpec): { avg: number; min: number } {
  const out = lab.exec(a.ns, ['ping', '-c', '50', '-i', '0.02', '-q', TUNNEL.b]);
  const m = /= ([\d.]+)\/([\d.]+)\/([\d.]+)/.exec(out);
  if (!m) throw new Error(`ping output: ${out}`);
  return { min: Number(m[1]), avg: Number(m[2]) };
}
const diff = (x: Record<string, number>, y: Record<string, number>, wall: number) =>
  Object.fromEntries(Object.entries(y).map(([k, v]) => [k, Math.round(((v - (x[k] ?? 0)) / wall) * 1000) / 10]).filter(([, v]) => (v as number) > 0.5));

async function once(variant: string): Promise<object> {
  const lab = new Lab();
  try {
    const { a, b } = twoHosts(lab);
    a.env = VARIANTS[variant].a;
    b.env = VARIANTS[variant].b;
    const pb = await startKeymesh(lab, b);
    const pa = await startKeymesh(lab, a);
    lab.exec(a.ns, ['ping', '-c', '3', '-i', '0.2', TUNNEL.b]); // handshake + warm-up
    const pids = [pa.child.pid!, pb.child.pid!];
    const c0 = pids.map(cpuSeconds);
    const th0 = pids.map(threadCpu);
    const m0 = machineJiffies();
    const by0 = ifBytes(lab, a) + ifBytes(lab, b);
    const perf = PERF
      ? spawn('perf', ['record', '-q', '-e', 'cpu-clock', '-a', '-g', '-o', `bench-results/perf-${variant}.data`, '--', 'sleep', String(SECONDS - 1)], { stdio: 'ignore' })
      : null;
    const t0 = performance.now();
    const one = iperf(lab, a, b, 1);
    if (perf && perf.exitCode === null) await new Promise((r) => perf.once('exit', r));
    const wall = (performance.now() - t0) / 1000;
    const m1 = machineJiffies();
    const c1 = pids.map(cpuSeconds);
    const th1 = pids.map(threadCpu);
    const by1 = ifBytes(lab, a) + ifBytes(lab, b);
    sleep(500);
    const four = iperf(lab, a, b, 4);
    sleep(500);
    const rtt = pingRtt(lab, a);
    const used = c1.map((c, i) => c - c0[i]);
    const busier = used[0] >= used[1] ? 0 : 1;
    // Where packets were lost, if any: UDP socket buffer overflows per namespace, engine drops per node.
    const udpErr = (n: NodeSpec) => {
      const lines = lab.exec(n.ns, ['cat', '/proc/net/snmp']).split('\n').filter((l) => l.startsWith('Udp:'));
      const [h, v] = lines.map((l) => l.trim().split(/\s+/));
      const get = (k: string) => Number(v[h.indexOf(k)]);
      return { rcvbufErrors: get('RcvbufErrors'), sndbufErrors: get('SndbufErrors') };
    };
    const drops = (n: NodeSpec) => {
      const st = JSON.parse(lab.exec(n.ns, [process.execPath, KEYMESH_BIN, 'show', n.ifname, '--json']));
      const d = Object.entries(st.stats.drops as Record<string, number>).filter(([, x]) => x > 0);
      return { drops: Object.fromEntries(d), udpSendShort: st.runtime.udpSendShort };
    };
    const tunDrops = (n: NodeSpec) => {
      const j = JSON.parse(lab.exec(n.ns, ['ip', '-s', '-j', 'link', 'show', n.ifname]))[0];
      return { tunRxDropped: j.stats64.rx.dropped, tunTxDropped: j.stats64.tx.dropped };
    };
    // The TCP sender's view (ns a, cumulative): real losses vs reordering and spurious retransmits.
    const tcpA = (() => {
      const lines = lab.exec(a.ns, ['cat', '/proc/net/netstat']).split('\n').filter((l) => l.startsWith('TcpExt:'));
      const [h, v] = lines.map((l) => l.trim().split(/\s+/));
      const want = ['TCPLostRetransmit', 'TCPSACKReorder', 'TCPTSReorder', 'TCPDSACKRecv', 'TCPSpuriousRTOs', 'TCPTimeouts', 'TCPFastRetrans', 'TCPLossProbes'];
      return Object.fromEntries(want.map((k) => [k, Number(v[h.indexOf(k)])]));
    })();
    const lossA = { ...udpErr(a), ...drops(a), ...tunDrops(a), tcp: tcpA };
    const lossB = { ...udpErr(b), ...drops(b), ...tunDrops(b) };
    const seal = variant !== 'base' ? JSON.parse(lab.exec(a.ns, [process.execPath, KEYMESH_BIN, 'show', a.ifname, '--json'])).runtime.sealThread : null;
    return {
      date: new Date().toISOString(),
      variant,
      seconds: SECONDS,
      mbps1: one.mbps,
      retr1: one.retransmits,
      mbps4: four.mbps,
      retr4: four.retransmits,
      usPer1420: ((used[0] + used[1]) * 1e6) / ((by1 - by0) / 1420),
      busiestCore: (used[busier] / wall) * 100,
      busier: busier === 0 ? 'a (sender)' : 'b (receiver)',
      coreA: (used[0] / wall) * 100,
      coreB: (used[1] / wall) * 100,
      threadsA: diff(th0[0], th1[0], wall),
      threadsB: diff(th0[1], th1[1], wall),
      machineBusy: ((m1.busy - m0.busy) / (m1.total - m0.total)) * 100,
      rttAvg: rtt.avg,
      rttMin: rtt.min,
      sealThreadA: seal,
      lossA,
      lossB,
    };
  } finally {
    await lab.cleanup();
  }
}

function summary(): void {
  const rows = readFileSync(OUT, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number | string>);
  const keys = ['mbps1', 'retr1', 'mbps4', 'retr4', 'usPer1420', 'busiestCore', 'machineBusy', 'rttAvg', 'rttMin'];
  const med = (xs: number[]) => {
    const s = [...xs].sort((x, y) => x - y);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  const f = (x: number) => (Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 10 ? x.toFixed(1) : x.toFixed(3));
  console.log(`${'metric'.padEnd(14)} ${'variant'.padEnd(7)} ${'n'.padStart(2)} ${'median'.padStart(8)}  min – max`);
  for (const k of keys) {
    for (const v of Object.keys(VARIANTS)) {
      const xs = rows.filter((r) => r.variant === v).map((r) => Number(r[k]));
      if (!xs.length) continue;
      console.log(`${k.padEnd(14)} ${v.padEnd(7)} ${String(xs.length).padStart(2)} ${f(med(xs)).padStart(8)}  ${f(Math.min(...xs))} – ${f(Math.max(...xs))}`);
    }
  }
}

const arg = process.argv[2] ?? '';
if (arg === 'summary') summary();
else if (!(arg in VARIANTS)) {
  console.error(`usage: bench-thread.js ${Object.keys(VARIANTS).join('|')}|summary`);
  process.exit(2);
} else {
  if (process.getuid?.() !== 0) {
    console.error('bench-thread: needs root (network namespaces)');
    process.exit(1);
  }
  const r = await once(arg);
  mkdirSync('bench-results', { recursive: true });
  appendFileSync(OUT, JSON.stringify(r) + '\n');
  console.log(JSON.stringify(r));
}
