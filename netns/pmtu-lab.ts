/**
 * The path-MTU lab (issue 15): a routed core whose far link carries less than 1500 bytes, and a
 * router that swallows the ICMP that would say so — the black hole a laptop meets on PPPoE, LTE or
 * an IPv6 tunnel.
 *
 *    ns …-a                          ns …-r (router, forwarding)                     ns …-b
 *  ┌──────────────────┐ veth 1500 ┌───────────────────────────────────┐ veth MTU ┌───────────────────┐
 *  │ eth0 192.0.2.1   ├───────────┤ ra 192.0.2.254     rb 198.51.100.254 ├──────────┤ eth0 198.51.100.2 │
 *  │   2001:db8:a::1  │           │   2001:db8:a::fe     2001:db8:b::fe │ (both    │   2001:db8:b::2   │
 *  │ tunnel 10.0.0.1  │           │ drops ICMP frag-needed / packet-too │  ends)   │ tunnel 10.0.0.2   │
 *  │        fd10::1   │           │ big it makes or forwards (toggle);  │          │        fd10::2    │
 *  └──────────────────┘           │ counts fragments on ra and rb       │          └───────────────────┘
 *                                 └───────────────────────────────────┘
 *
 * The R–B veth (rb and B's eth0) has the configurable MTU, 1500 to start; A's link stays 1500. So
 * B, on the small side, knows the path MTU from its own interface; A, on the big side, can learn it
 * only from ICMP (which R drops when told to) or by probing. Tunnel MTU is the default 1420 (no
 * MTU line in the configs). R counts IP fragments arriving on and leaving through both of its
 * ports (netdev ingress/egress: after any local fragmentation, so they are outer fragments, whoever
 * made them); the senders' own /proc/net/snmp(6) FragCreates are read beside them.
 *
 * `pmtuLab()` builds the namespaces once; `start()` brings up a pair of nodes (keymesh, or
 * wireguard-go at either end) over the IPv4 or IPv6 underlay with fresh interface names, so the
 * cases of a test share one topology. The relayed variant (`relayedLab()`) is the NAT matrix's
 * symmetric ↔ symmetric case (netns/nat-matrix.ts): the members cannot punch, so everything goes
 * through the lighthouse, all links 1500.
 *
 * The traffic helpers here (a TCP transfer whose receiver records its bytes in 50 ms buckets and
 * gives up on a stall, a no-DF UDP datagram, `ping -M do`) bound every run in time, because a
 * black hole does not fail: it waits.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { controlRequest } from '../src/io/control.js';
import { Lab, sleep, startKeymesh, startWireguardGo, uapiGet, waitFor, wgGenKeypair, type NodeSpec, type Proc } from './lib.js';
import { MATRIX_TUNNEL, natMatrix } from './nat-matrix.js';

export const PMTU_ADDR = {
  a: '192.0.2.1',
  a6: '2001:db8:a::1',
  ra: '192.0.2.254',
  ra6: '2001:db8:a::fe',
  rb: '198.51.100.254',
  rb6: '2001:db8:b::fe',
  b: '198.51.100.2',
  b6: '2001:db8:b::2',
};
export const PMTU_TUNNEL = { a: '10.0.0.1', a6: 'fd10::1', b: '10.0.0.2', b6: 'fd10::2' };

/** IPv4 20 / IPv6 40, UDP 8, WireGuard transport header 16 and tag 16. */
export const WG_OVERHEAD = { 4: 20 + 8 + 32, 6: 40 + 8 + 32 } as const;

/** 'keymesh', 'wireguard-go' (Debian's), or the path of another wireguard-go build. */
export type Impl = string;

export interface Pair {
  a: NodeSpec;
  b: NodeSpec;
  implA: Impl;
  implB: Impl;
  underlay: 4 | 6;
  procs: Proc[];
  /** `keymesh show --json` of a keymesh end (or the UAPI dump of a wireguard-go end). */
  show(side: 'a' | 'b'): Promise<any>;
  /** Both ends' state, for a failure message. */
  dump(): Promise<string>;
  stop(): Promise<void>;
}

export interface FragCounters {
  /** Outer fragments R saw arriving on / leaving through its ports (IPv4 frag-off ≠ 0, IPv6 fragment header). */
  r: Record<'raIn' | 'raOut' | 'rbIn' | 'rbOut', { v4: number; v6: number }>;
  /** Fragments the kernels made (Ip: FragCreates, Ip6FragCreates): A, B and R itself. */
  fragCreates: Record<'a' | 'b' | 'r', { v4: number; v6: number }>;
}

/** Run a command in a namespace; its exit code and everything it printed (no throw). */
export function run(ns: string, cmd: string[], timeoutMs = 20_000): { code: number; out: string } {
  try {
    const out = execFileSync('ip', ['netns', 'exec', ns, ...cmd], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
    return { code: 0, out };
  } catch (e) {
    const x = e as { status?: number; stdout?: string; stderr?: string };
    return { code: x.status ?? -1, out: `${x.stdout ?? ''}${x.stderr ?? ''}` };
  }
}

/** Ip: FragCreates and Ip6FragCreates of a namespace's kernel. */
export function fragCreates(lab: Lab, ns: string): { v4: number; v6: number } {
  const snmp = lab.exec(ns, ['cat', '/proc/net/snmp']).split('\n').filter((l) => l.startsWith('Ip: '));
  const names = snmp[0].split(/\s+/);
  const values = snmp[1].split(/\s+/);
  const v4 = Number(values[names.indexOf('FragCreates')]);
  const m = /^Ip6FragCreates\s+(\d+)/m.exec(lab.exec(ns, ['cat', '/proc/net/snmp6']));
  return { v4, v6: m ? Number(m[1]) : 0 };
}

const frag4 = 'ip frag-off & 0x3fff != 0';
const frag6 = 'exthdr frag exists';

/** nftables on R: the fragment counters (always), and the ICMP drop (dropIcmp toggles its table). */
function fragRules(): string {
  const counters = ['raIn', 'raOut', 'rbIn', 'rbOut'].flatMap((c) => [`  counter ${c}4 { }`, `  counter ${c}6 { }`]);
  const chain = (name: string, hook: 'ingress' | 'egress', dev: string) =>
    `  chain ${name} { type filter hook ${hook} device "${dev}" priority -500; meta protocol ip ${frag4} counter name "${name}4"; meta protocol ip6 ${frag6} counter name "${name}6"; }`;
  return `table netdev kmpmtufrag {
${counters.join('\n')}
${chain('raIn', 'ingress', 'ra')}
${chain('raOut', 'egress', 'ra')}
${chain('rbIn', 'ingress', 'rb')}
${chain('rbOut', 'egress', 'rb')}
}`;
}

/** What R drops when ICMP is off: frag-needed (3/4) and packet-too-big (ICMPv6 2), made by R (output) or passing through (forward). */
const DROP_ICMP = `table inet kmpmtudrop {
  counter dropped { }
  chain made { type filter hook output priority 0; icmp type destination-unreachable icmp code frag-needed counter name "dropped" drop; icmpv6 type packet-too-big counter name "dropped" drop; }
  chain forwarded { type filter hook forward priority 0; icmp type destination-unreachable icmp code frag-needed counter name "dropped" drop; icmpv6 type packet-too-big counter name "dropped" drop; }
}`;

function nftCounter(lab: Lab, ns: string, family: string, table: string, name: string): number {
  const j = JSON.parse(lab.exec(ns, ['nft', '-j', 'list', 'counter', family, table, name]));
  const c = j.nftables.find((x: any) => x.counter)?.counter;
  return c ? Number(c.packets) : 0;
}

export function pmtuLab(lab: Lab) {
  const nsA = lab.netns('a');
  const nsB = lab.netns('b');
  const { ns: r } = lab.router('r');
  lab.link(nsA, 'eth0', [`${PMTU_ADDR.a}/24`, `${PMTU_ADDR.a6}/64`], r, 'ra', [`${PMTU_ADDR.ra}/24`, `${PMTU_ADDR.ra6}/64`]);
  lab.link(nsB, 'eth0', [`${PMTU_ADDR.b}/24`, `${PMTU_ADDR.b6}/64`], r, 'rb', [`${PMTU_ADDR.rb}/24`, `${PMTU_ADDR.rb6}/64`]);
  lab.exec(nsA, ['ip', 'route', 'add', 'default', 'via', PMTU_ADDR.ra]);
  lab.exec(nsA, ['ip', '-6', 'route', 'add', 'default', 'via', PMTU_ADDR.ra6]);
  lab.exec(nsB, ['ip', 'route', 'add', 'default', 'via', PMTU_ADDR.rb]);
  lab.exec(nsB, ['ip', '-6', 'route', 'add', 'default', 'via', PMTU_ADDR.rb6]);
  lab.exec(r, ['nft', '-f', '-'], fragRules());

  let icmpDropped = false;
  let droppedBefore = 0;
  let linkMtu = 1500;
  let serial = 0;

  /** Make R drop (true) or pass (false) ICMP frag-needed and packet-too-big. */
  const dropIcmp = (on: boolean): void => {
    if (on === icmpDropped) return;
    if (on) lab.exec(r, ['nft', '-f', '-'], DROP_ICMP);
    else {
      droppedBefore += nftCounter(lab, r, 'inet', 'kmpmtudrop', 'dropped');
      lab.exec(r, ['nft', 'delete', 'table', 'inet', 'kmpmtudrop']);
    }
    icmpDropped = on;
  };

  /** How many frag-needed / packet-too-big R has dropped so far (all the times ICMP was off). */
  const icmpDropCount = (): number => droppedBefore + (icmpDropped ? nftCounter(lab, r, 'inet', 'kmpmtudrop', 'dropped') : 0);

  /** Set the MTU of the R–B veth, both ends (R's rb first: R is where the black hole is). */
  const setLinkMtu = (mtu: number): void => {
    lab.exec(r, ['ip', 'link', 'set', 'rb', 'mtu', String(mtu)]);
    lab.exec(nsB, ['ip', 'link', 'set', 'eth0', 'mtu', String(mtu)]);
    linkMtu = mtu;
  };

  /**
   * Forget what the kernels learned about path MTUs (the PMTU exceptions ICMP left in A's and B's
   * route caches live 10 minutes), so one case's ICMP does not help the next.
   */
  const forgetPmtu = (): void => {
    for (const ns of [nsA, nsB, r]) {
      lab.exec(ns, ['ip', '-4', 'route', 'flush', 'cache']);
      lab.exec(ns, ['ip', '-6', 'route', 'flush', 'cache']);
    }
  };

  const fragments = (): FragCounters => {
    const c = (name: string) => ({ v4: nftCounter(lab, r, 'netdev', 'kmpmtufrag', `${name}4`), v6: nftCounter(lab, r, 'netdev', 'kmpmtufrag', `${name}6`) });
    return {
      r: { raIn: c('raIn'), raOut: c('raOut'), rbIn: c('rbIn'), rbOut: c('rbOut') },
      fragCreates: { a: fragCreates(lab, nsA), b: fragCreates(lab, nsB), r: fragCreates(lab, r) },
    };
  };

  /**
   * Bring up a pair: `a` at A, `b` at B; A knows B's endpoint over the IPv4 or IPv6 underlay
   * (and initiates), B learns A's from the handshake. Fresh interface names each time. `env`
   * and `extra` ([Interface] lines, e.g. "MssClamp = off") are for keymesh ends.
   */
  const start = async (opts: { a: Impl; b: Impl; underlay?: 4 | 6; env?: Record<string, string>; extra?: string[] }): Promise<Pair> => {
    const underlay = opts.underlay ?? 4;
    const n = serial++;
    const ka = wgGenKeypair();
    const kb = wgGenKeypair();
    const endpointB = underlay === 4 ? `${PMTU_ADDR.b}:51820` : `[${PMTU_ADDR.b6}]:51820`;
    const a: NodeSpec = {
      ns: nsA,
      ifname: lab.name(`a${n}`),
      privateKey: ka.privateKey,
      listenPort: 51820,
      addresses: [`${PMTU_TUNNEL.a}/24`, `${PMTU_TUNNEL.a6}/64`],
      peers: [{ publicKey: kb.publicKey, allowedIps: [`${PMTU_TUNNEL.b}/32`, `${PMTU_TUNNEL.b6}/128`], endpoint: endpointB }],
      env: opts.env,
      extra: opts.extra,
    };
    const b: NodeSpec = {
      ns: nsB,
      ifname: lab.name(`b${n}`),
      privateKey: kb.privateKey,
      listenPort: 51820,
      addresses: [`${PMTU_TUNNEL.b}/24`, `${PMTU_TUNNEL.b6}/64`],
      peers: [{ publicKey: ka.publicKey, allowedIps: [`${PMTU_TUNNEL.a}/32`, `${PMTU_TUNNEL.a6}/128`] }],
      env: opts.env,
      extra: opts.extra,
    };
    const startImpl = (impl: Impl, spec: NodeSpec) =>
      impl === 'keymesh' ? startKeymesh(lab, spec) : startWireguardGo(lab, spec, impl === 'wireguard-go' ? undefined : impl);
    const procs = [await startImpl(opts.b, b), await startImpl(opts.a, a)];
    const show = async (side: 'a' | 'b') => {
      const impl = side === 'a' ? opts.a : opts.b;
      const spec = side === 'a' ? a : b;
      if (impl === 'keymesh') return (await controlRequest(spec.ifname, { op: 'status' })).status;
      return { uapi: await uapiGet(spec.ifname) };
    };
    const pair: Pair = {
      a,
      b,
      implA: opts.a,
      implB: opts.b,
      underlay,
      procs,
      show,
      async dump() {
        const one = async (side: 'a' | 'b') => {
          try {
            return JSON.stringify(await show(side), null, 1);
          } catch (e) {
            return `(no status: ${(e as Error).message})`;
          }
        };
        const tail = (p: Proc) => `--- ${p.label} (exit ${p.exitCode}) ---\n${p.output.slice(-3000)}`;
        return `=== A (${opts.a}) show ===\n${await one('a')}\n=== B (${opts.b}) show ===\n${await one('b')}\n${procs.map(tail).join('\n')}\nR–B link MTU ${linkMtu}, ICMP ${icmpDropped ? 'dropped' : 'passed'} (${icmpDropCount()} dropped so far)`;
      },
      async stop() {
        for (const p of [...procs].reverse()) await p.stop('SIGTERM', 3000);
      },
    };
    return pair;
  };

  return {
    lab,
    nsA,
    nsB,
    r,
    dropIcmp,
    icmpDropCount,
    setLinkMtu,
    get linkMtu() {
      return linkMtu;
    },
    forgetPmtu,
    fragments,
    start,
  };
}

export type PmtuLab = ReturnType<typeof pmtuLab>;

/** Counters after minus before (a negative would mean a counter was reset: shown as is). */
export function fragDelta(before: FragCounters, after: FragCounters): FragCounters {
  const d = (x: { v4: number; v6: number }, y: { v4: number; v6: number }) => ({ v4: y.v4 - x.v4, v6: y.v6 - x.v6 });
  return {
    r: { raIn: d(before.r.raIn, after.r.raIn), raOut: d(before.r.raOut, after.r.raOut), rbIn: d(before.r.rbIn, after.r.rbIn), rbOut: d(before.r.rbOut, after.r.rbOut) },
    fragCreates: { a: d(before.fragCreates.a, after.fragCreates.a), b: d(before.fragCreates.b, after.fragCreates.b), r: d(before.fragCreates.r, after.fragCreates.r) },
  };
}

/** Every fragment count in a delta added up (0: nothing was fragmented anywhere). */
export function fragTotal(d: FragCounters): number {
  let n = 0;
  for (const g of [d.r, d.fragCreates]) for (const v of Object.values(g)) n += v.v4 + v.v6;
  return n;
}

// ───────────────────────────── the relayed variant ─────────────────────────────

/**
 * The NAT matrix's symmetric ↔ symmetric case: A behind `sa`, B behind `sb` (both `masquerade
 * random` with a home router's filter), the lighthouse L on the core; all links 1500. Nothing
 * punches, so A and B talk through L. Fragments are counted (netdev ingress/egress) on the members'
 * and the lighthouse's own links.
 */
export function relayedLab(lab: Lab) {
  const t = natMatrix(lab);
  t.place(t.a, 'sa');
  t.place(t.b, 'sb');
  t.flushConntrack();
  const linkOf = (m: typeof t.a) => m.links.get(m.at!)!.ifname;
  const ends = [
    { who: 'a', ns: t.a.ns, dev: linkOf(t.a) },
    { who: 'b', ns: t.b.ns, dev: linkOf(t.b) },
    { who: 'l', ns: t.l.ns, dev: lab.name('lw') },
  ] as const;
  for (const e of ends) {
    lab.exec(
      e.ns,
      ['nft', '-f', '-'],
      `table netdev kmpmtufrag {
  counter in4 { }
  counter out4 { }
  chain in { type filter hook ingress device "${e.dev}" priority -500; meta protocol ip ${frag4} counter name "in4"; }
  chain out { type filter hook egress device "${e.dev}" priority -500; meta protocol ip ${frag4} counter name "out4"; }
}`,
    );
  }
  /** Per end: outer fragments in/out on its link, and its kernel's FragCreates. */
  const fragments = () =>
    Object.fromEntries(
      ends.map((e) => [
        e.who,
        {
          in: nftCounter(lab, e.ns, 'netdev', 'kmpmtufrag', 'in4'),
          out: nftCounter(lab, e.ns, 'netdev', 'kmpmtufrag', 'out4'),
          fragCreates: fragCreates(lab, e.ns).v4,
        },
      ]),
    ) as Record<'a' | 'b' | 'l', { in: number; out: number; fragCreates: number }>;
  return { t, tunnel: MATRIX_TUNNEL, fragments };
}

// ───────────────────────────── traffic ─────────────────────────────

/**
 * Receiver: one connection; hashes what arrives and counts it in 50 ms buckets from its first
 * byte; prints {"progress": bytes} every 200 ms and, at the end (or on SIGTERM, with "endedAt":
 * a transfer given up), the hash, the byte count, the wall-clock start of the buckets and the buckets.
 */
const RECEIVER = `
const net=require('net'),crypto=require('crypto');
const h=crypto.createHash('sha256');let n=0,t0=0;const buckets=[];
const s=net.createServer(c=>{c.on('data',d=>{const now=Date.now();if(!t0)t0=now;const i=Math.floor((now-t0)/50);while(buckets.length<=i)buckets.push(0);buckets[i]+=d.length;h.update(d);n+=d.length});
c.on('end',()=>{clearInterval(iv);console.log(JSON.stringify({bytes:n,sha256:h.digest('hex'),t0,buckets}));c.end();s.close()})});
const iv=setInterval(()=>console.log(JSON.stringify({progress:n})),200);
process.on('SIGTERM',()=>{console.log(JSON.stringify({bytes:n,sha256:h.digest('hex'),t0,buckets,endedAt:Date.now()}));process.exit(0)});
s.listen(Number(process.argv[2]),process.argv[1],()=>console.log('LISTENING'));`;

/** Sender: \`bytes\` random bytes, or (bytes 0) for \`seconds\`; prints its hash, byte count and time. */
const SENDER = `
const net=require('net'),crypto=require('crypto');
const total=Number(process.argv[3]),secs=Number(process.argv[4]);const h=crypto.createHash('sha256');let sent=0;const t0=Date.now();
const more=()=>total>0?sent<total:Date.now()-t0<secs*1000;
const c=net.connect(Number(process.argv[2]),process.argv[1],()=>{
  const pump=()=>{while(more()){const n=total>0?Math.min(65536,total-sent):65536;const b=crypto.randomBytes(n);h.update(b);sent+=n;if(!c.write(b))return c.once('drain',pump)}c.end()};pump()});
c.on('close',()=>console.log(JSON.stringify({bytes:sent,sha256:h.digest('hex'),seconds:(Date.now()-t0)/1000})));
c.on('error',e=>{console.error(e.message);process.exit(1)});`;

export interface TransferResult {
  ok: boolean;
  /** Set when the transfer was given up: no byte arrived for stallMs (or the deadline passed). */
  stalled: string | null;
  sent: { bytes: number; sha256: string; seconds: number } | null;
  /** The receiver's account; `endedAt` (wall-clock ms) when the transfer was given up. */
  received: { bytes: number; sha256: string; t0: number; buckets: number[]; endedAt?: number } | null;
  /** Bytes the receiver had when the transfer ended or was given up. */
  progress: number;
  seconds: number;
}

let transferPort = 5300;

/**
 * A TCP transfer from one namespace to a listener at `toAddr` in another: `bytes` random bytes (or
 * for `seconds` when bytes is 0). Given up when no byte arrives for `stallMs` or after
 * `deadlineMs`. `during(startedAt)` runs alongside (e.g. to change the link MTU mid-transfer).
 */
export async function transfer(
  lab: Lab,
  from: string,
  to: string,
  toAddr: string,
  opts: { bytes?: number; seconds?: number; stallMs?: number; deadlineMs?: number; during?: (startedAt: number) => Promise<void> },
): Promise<TransferResult> {
  const port = transferPort++;
  const stallMs = opts.stallMs ?? 5000;
  const deadline = Date.now() + (opts.deadlineMs ?? 60_000);
  const rx = lab.spawn(to, [process.execPath, '-e', RECEIVER, toAddr, String(port)], `tcp receiver ${toAddr}:${port}`);
  await waitFor('tcp receiver', () => rx.output.includes('LISTENING'), 5000);
  const t0 = Date.now();
  const tx = lab.spawn(from, [process.execPath, '-e', SENDER, toAddr, String(port), String(opts.bytes ?? 0), String(opts.seconds ?? 0)], `tcp sender → ${toAddr}:${port}`);
  const during = opts.during?.(t0);
  let progress = 0;
  let lastGrowth = Date.now();
  let stalled: string | null = null;
  const lines = (p: Proc) => p.output.trim().split('\n').filter((l) => l.startsWith('{'));
  while (rx.running) {
    const last = lines(rx).reverse().find((l) => l.includes('"progress"'));
    const now = Date.now();
    const p = last ? JSON.parse(last).progress : 0;
    if (p > progress) (progress = p), (lastGrowth = now);
    if (now - lastGrowth > stallMs) {
      stalled = `no bytes for ${((now - lastGrowth) / 1000).toFixed(1)} s (${progress} received)`;
      break;
    }
    if (now > deadline) {
      stalled = `not done after ${opts.deadlineMs ?? 60_000} ms (${progress} received)`;
      break;
    }
    await sleep(100);
  }
  await during;
  if (stalled) {
    await tx.stop('SIGKILL');
    await rx.stop('SIGTERM', 2000);
  } else {
    await Promise.race([tx.exited, sleep(5000)]);
    if (tx.running) await tx.stop('SIGKILL');
  }
  const parse = (p: Proc, key: string) => {
    const l = lines(p).reverse().find((x) => x.includes(key));
    return l ? JSON.parse(l) : null;
  };
  const sent = parse(tx, '"seconds"');
  const received = parse(rx, '"buckets"');
  if (received) progress = received.bytes;
  const ok = !stalled && !!sent && !!received && sent.sha256 === received.sha256 && sent.bytes === received.bytes && (opts.bytes === undefined || opts.bytes === 0 || received.bytes === opts.bytes);
  if (!ok && !stalled && !received) stalled = `receiver gave no result:\n${rx.output.slice(-2000)}\nsender:\n${tx.output.slice(-2000)}`;
  return { ok, stalled, sent, received, progress, seconds: (Date.now() - t0) / 1000 };
}

/**
 * The receiver's stalls: the longest run of empty 50 ms buckets between its first and last byte
 * (or, for a transfer given up, until it was: `endedAt`), where it began (ms after the first byte)
 * and ended (wall clock). `after` (wall-clock ms): only gaps that end after it.
 */
export function longestGap(r: { t0: number; buckets: number[]; endedAt?: number }, after = 0): { gapMs: number; startMs: number; endWall: number } {
  let best = { gapMs: 0, startMs: 0, endWall: 0 };
  if (r.endedAt !== undefined && r.t0 > 0) {
    let last = r.buckets.length - 1;
    while (last >= 0 && r.buckets[last] === 0) last--;
    const startMs = (last + 1) * 50;
    const gapMs = Math.max(0, r.endedAt - r.t0 - startMs);
    if (r.endedAt > after) best = { gapMs, startMs, endWall: r.endedAt };
  }
  let runStart = -1;
  for (let i = 0; i < r.buckets.length; i++) {
    if (r.buckets[i] === 0) {
      if (runStart < 0) runStart = i;
      continue;
    }
    if (runStart >= 0) {
      // an empty run of k buckets between data in bucket runStart-1 and bucket i: (k+1)·50 ms at most, k·50 at least
      const gapMs = (i - runStart) * 50;
      const endWall = r.t0 + i * 50;
      if (gapMs > best.gapMs && endWall > after) best = { gapMs, startMs: runStart * 50, endWall };
      runStart = -1;
    }
  }
  return best;
}

let udpPort = 6300;

/** The system's python3 (a pyenv shim in PATH costs half a second a start). */
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

const UDP_RECV = `
import socket, sys, json, hashlib, time
fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM); s.bind((sys.argv[1], int(sys.argv[2]))); s.settimeout(float(sys.argv[3]))
want = int(sys.argv[4])
print("READY", flush=True)
try:
    while want > 0:
        d, a = s.recvfrom(65535)
        print(json.dumps({"len": len(d), "sha256": hashlib.sha256(d).hexdigest()}), flush=True)
        want -= 1
except socket.timeout:
    pass
`;

/** IP_MTU_DISCOVER (10) = IP_PMTUDISC_DONT (0): no DF, so the datagram may be fragmented on the way. */
const UDP_SEND_NODF = `
import socket, sys, json, hashlib, os, time
dst, port, size, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setsockopt(socket.IPPROTO_IP, 10, 0)
out = []
for i in range(count):
    d = os.urandom(size); s.sendto(d, (dst, port)); out.append(hashlib.sha256(d).hexdigest()); time.sleep(0.2)
print(json.dumps(out), flush=True)
`;

/**
 * `count` UDP datagrams whose IP packet is `ipBytes` long (payload ipBytes − 28), sent without DF
 * from `from` to `toAddr` in `to`; which of them arrived whole.
 */
export async function udpNoDf(lab: Lab, from: string, to: string, toAddr: string, ipBytes = 1400, count = 3): Promise<{ sent: number; arrivedWhole: number; lengths: number[] }> {
  const port = udpPort++;
  const rx = lab.spawn(to, [PYTHON, '-c', UDP_RECV, toAddr, String(port), '1.5', String(count)], `udp receiver ${toAddr}:${port}`);
  await waitFor('udp receiver', () => rx.output.includes('READY') || !rx.running, 5000);
  const r = run(from, [PYTHON, '-c', UDP_SEND_NODF, toAddr, String(port), String(ipBytes - 28), String(count)]);
  const sent: string[] = JSON.parse(r.out.trim().split('\n').pop() ?? '[]');
  await Promise.race([rx.exited, sleep(5000)]);
  const got = rx.output
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { len: number; sha256: string });
  return { sent: sent.length, arrivedWhole: got.filter((g) => sent.includes(g.sha256)).length, lengths: got.map((g) => g.len) };
}

/**
 * `ping -M do -s size`: what came back. `tooBig`: the MTU in the first "Frag needed and DF set
 * (mtu = N)" / "Packet too big: mtu=N" that arrived (an ICMP from somewhere); `localMtu`: the MTU of
 * a "local error: message too long" (the kernel already knew); `replies`: echo replies.
 */
export function pingDf(lab: Lab, ns: string, addr: string, size: number, count = 2): { tooBig: number | null; localMtu: number | null; replies: number; out: string } {
  const v6 = addr.includes(':');
  const r = run(ns, ['ping', ...(v6 ? ['-6'] : []), '-n', '-M', 'do', '-s', String(size), '-c', String(count), '-i', '0.3', '-W', '1', addr]);
  const tooBig = /Frag needed and DF set \(mtu = (\d+)\)|Packet too big: mtu=(\d+)/.exec(r.out);
  const local = /local error: message too long, mtu[=:] ?(\d+)/.exec(r.out);
  return {
    tooBig: tooBig ? Number(tooBig[1] ?? tooBig[2]) : null,
    localMtu: local ? Number(local[1]) : null,
    replies: [...r.out.matchAll(/bytes from/g)].length,
    out: r.out.trim(),
  };
}

/** Wait until a ping through the tunnel is answered (the handshake is done). */
export async function tunnelUp(lab: Lab, ns: string, addr: string, ms = 10_000): Promise<void> {
  await waitFor(`a ping to ${addr} from ${ns}`, () => run(ns, ['ping', ...(addr.includes(':') ? ['-6'] : []), '-c', '1', '-W', '1', addr]).code === 0, ms, 100);
}
