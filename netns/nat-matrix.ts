/**
 * The NAT matrix: every kind of NAT a laptop meets, on a routed core (not one bridge, so a packet
 * between two sites crosses routers and a small TTL runs out on the way, as on the internet).
 *
 *                                  core (a router: 203.0.113.4k+1/30 to each site)
 *      ┌────────┬────────┬────────┬──────┴─┬────────┬────────┬────────┬────────┐
 *      L        pa       pb       ha       hb       cg       sh       sa       sb
 *  lighthouse  plain    plain    home     home     CGNAT    home,    symm.    symm.
 *  198.51.100.1 10.1/24 10.2/24  10.3/24  10.4/24  100.64.  2 LANs   10.8/24  10.9/24
 *                                                  0.0/30   10.6,10.7
 *                                                   │
 *                                                  cgh plain home router behind the CGNAT, 10.5/24
 *
 *   A has a link to pa ha cgh sh(10.6) sa; B to pb hb sh(10.7) sb. Only the link of the router a
 *   member is behind has an address and the default route (place() switches it).
 *
 * NAT kinds (nftables on each router, for what leaves through its WAN):
 *   plain      masquerade, port-preserving, no inbound filter: what arrives for the router's own
 *              address with no conntrack entry is delivered locally (and leaves an UNREPLIED
 *              entry behind: the state that made plain NATs stay relayed, punch.ts);
 *   home       the same plus "drop new from the WAN" (a home router's firewall);
 *   symmetric  `masquerade random` (a new port per destination) plus the home filter;
 *   CGNAT      a plain NAT with 100.64.0.0/10 inside, in front of a plain home router.
 * Routers that filter let port forwards in (`ct status dnat accept`), so a mapping made by the
 * NAT-PMP/PCP responder (netns/portmap-responder.ts) works.
 *
 * Tunnel addresses 10.99.0.0/24: L .1, A .11, B .12.
 */
import path from 'node:path';
import { controlRequest } from '../src/io/control.js';
import { Lab, REPO, startKeymesh, tcpTransfer, wgGenKeypair, type NodeSpec, type Proc } from './lib.js';

export type NatKind = 'plain' | 'home' | 'symmetric' | 'cgnat';

export interface Site {
  name: string;
  kind: NatKind;
  ns: string;
  wanIf: string;
  /** Its WAN address (public). */
  wan: string;
  /** The LAN(s) behind it: the gateway address (x.y.z.1) per LAN prefix "x.y.z". */
  lans: string[];
}

export const MATRIX_TUNNEL = { l: '10.99.0.1', a: '10.99.0.11', b: '10.99.0.12' };
export const LIGHTHOUSE_ADDR = '198.51.100.1';

/** nftables rules for a router of the given kind, NATing what leaves through wanIf (the kinds above). */
export function natRules(kind: NatKind, wanIf: string): string {
  const masq = kind === 'symmetric' ? 'masquerade random' : 'masquerade';
  const filter = kind === 'home' || kind === 'symmetric';
  return `table ip kmnat {
  chain post { type nat hook postrouting priority 100; oifname "${wanIf}" ${masq}; };
${
  filter
    ? `  chain in { type filter hook input priority 0; iifname "${wanIf}" ct state new drop; };
  chain fwd4 { type filter hook forward priority 0; iifname "${wanIf}" ct status dnat accept; iifname "${wanIf}" ct state new drop; };
`
    : ''
}}`;
}

export function natMatrix(lab: Lab) {
  const { ns: core } = lab.router('core');
  const sites = new Map<string, Site>();
  let k = 1;
  const wanLink = (ns: string, wanIf: string): string => {
    const base = 4 * k++;
    const wan = `203.0.113.${base + 2}`;
    lab.link(ns, wanIf, [`${wan}/30`], core, lab.name(`c${base}`), [`203.0.113.${base + 1}/30`]);
    lab.exec(ns, ['ip', 'route', 'add', 'default', 'via', `203.0.113.${base + 1}`]);
    return wan;
  };
  const site = (name: string, kind: NatKind, lans: string[]): Site => {
    const { ns } = lab.router(name);
    const wanIf = 'wan';
    const wan = wanLink(ns, wanIf);
    lab.exec(ns, ['nft', '-f', '-'], natRules(kind, wanIf));
    const s: Site = { name, kind, ns, wanIf, wan, lans };
    sites.set(name, s);
    return s;
  };

  // the lighthouse sits on the core directly
  const nsL = lab.netns('l');
  lab.link(nsL, lab.name('lw'), [`${LIGHTHOUSE_ADDR}/24`], core, lab.name('cl'), ['198.51.100.254/24']);
  lab.exec(nsL, ['ip', 'route', 'add', 'default', 'via', '198.51.100.254']);

  site('pa', 'plain', ['10.1.0']);
  site('pb', 'plain', ['10.2.0']);
  site('ha', 'home', ['10.3.0']);
  site('hb', 'home', ['10.4.0']);
  site('sh', 'home', ['10.6.0', '10.7.0']);
  site('sa', 'symmetric', ['10.8.0']);
  site('sb', 'symmetric', ['10.9.0']);
  // the carrier-grade NAT and the plain home router behind it
  const cg = site('cg', 'plain', []);
  cg.kind = 'cgnat';
  const { ns: nsCgh } = lab.router('cgh');
  lab.link(nsCgh, 'wan', ['100.64.0.2/30'], cg.ns, 'cgin', ['100.64.0.1/30']);
  lab.exec(nsCgh, ['ip', 'route', 'add', 'default', 'via', '100.64.0.1']);
  lab.exec(nsCgh, ['nft', '-f', '-'], natRules('plain', 'wan'));
  sites.set('cgh', { name: 'cgh', kind: 'plain', ns: nsCgh, wanIf: 'wan', wan: '100.64.0.2', lans: ['10.5.0'] });

  const kl = wgGenKeypair();
  const ka = wgGenKeypair();
  const kb = wgGenKeypair();
  const lighthouse = { publicKey: kl.publicKey, allowedIps: [`${MATRIX_TUNNEL.l}/32`], endpoint: `${LIGHTHOUSE_ADDR}:51820`, lighthouse: true };
  const l: NodeSpec = {
    ns: nsL,
    ifname: lab.name('l'),
    privateKey: kl.privateKey,
    listenPort: 51820,
    addresses: [`${MATRIX_TUNNEL.l}/24`],
    extra: ['IsLighthouse = true'],
    peers: [
      { publicKey: ka.publicKey, allowedIps: [`${MATRIX_TUNNEL.a}/32`] },
      { publicKey: kb.publicKey, allowedIps: [`${MATRIX_TUNNEL.b}/32`] },
    ],
  };

  /** A member: one link per (router, LAN) it may sit behind, named after the router (and LAN). */
  const member = (role: 'a' | 'b', key: { privateKey: string }, tunnel: string, other: string, behind: Array<[string, string]>) => {
    const ns = lab.netns(role);
    const links = new Map<string, { ifname: string; prefix: string }>();
    for (const [router, prefix] of behind) {
      const s = sites.get(router)!;
      const ifname = `${router}${prefix.split('.')[1]}`;
      lab.link(ns, ifname, [], s.ns, `lan${prefix.split('.')[1]}`, [`${prefix}.1/24`]);
      links.set(`${router}/${prefix}`, { ifname, prefix });
    }
    const spec: NodeSpec = {
      ns,
      ifname: lab.name(role),
      privateKey: key.privateKey,
      listenPort: 51820,
      addresses: [`${tunnel}/24`],
      peers: [lighthouse, { publicKey: other, allowedIps: [`${other === ka.publicKey ? MATRIX_TUNNEL.a : MATRIX_TUNNEL.b}/32`] }],
    };
    return { ns, spec, links, at: null as string | null };
  };
  const a = member('a', ka, MATRIX_TUNNEL.a, kb.publicKey, [
    ['pa', '10.1.0'],
    ['ha', '10.3.0'],
    ['cgh', '10.5.0'],
    ['sh', '10.6.0'],
    ['sa', '10.8.0'],
  ]);
  const b = member('b', kb, MATRIX_TUNNEL.b, ka.publicKey, [
    ['pb', '10.2.0'],
    ['hb', '10.4.0'],
    ['sh', '10.7.0'],
    ['sb', '10.9.0'],
  ]);

  /** Put a member behind a router (on the given LAN of it, default its first). */
  const place = (m: typeof a, router: string, lanPrefix?: string): void => {
    const prefix = lanPrefix ?? sites.get(router)!.lans[0];
    const link = m.links.get(`${router}/${prefix}`);
    if (!link) throw new Error(`no link from ${m.ns} to ${router}/${prefix}`);
    for (const l of m.links.values()) lab.exec(m.ns, ['ip', 'addr', 'flush', 'dev', l.ifname]);
    lab.exec(m.ns, ['ip', 'addr', 'add', `${prefix}.${m === a ? 2 : 3}/24`, 'dev', link.ifname]);
    lab.exec(m.ns, ['ip', 'route', 'replace', 'default', 'via', `${prefix}.1`]);
    m.at = `${router}/${prefix}`;
  };

  /** Forget all NAT state everywhere (each case starts as on fresh networks). */
  const flushConntrack = (): void => {
    for (const s of sites.values()) lab.exec(s.ns, ['conntrack', '-F'], undefined);
  };

  return { core, sites, l, a, b, place, flushConntrack, keys: { l: kl.publicKey, a: ka.publicKey, b: kb.publicKey } };
}

// ───────────────────────────── one case of the matrix ─────────────────────────────

export interface MatrixCase {
  name: string;
  /** Where A and B sit: router name, and optionally the LAN prefix on it. */
  a: [string, string?];
  b: [string, string?];
  /** Routers that run the NAT-PMP/PCP responder during the case (a port mapping for whoever is behind them). */
  portMapping?: string[];
  /** What the case must reach: 'direct', 'relay', or null (report only). */
  expect: 'direct' | 'relay' | null;
  /** The TTL A's NAT openers must end up with, confirmed by ICMP (punch.ts: the ladder). */
  openerTtl?: number;
  /** A's active path to B must start with this (e.g. B's LAN address when both are behind one NAT). */
  pathPrefix?: string;
}

export interface MatrixResult {
  name: string;
  /** ms from all nodes up to A's first ping answer (pinging at once). */
  firstAnswerMs: number | null;
  /** ms from B's `up` to the first answer to the pings A was already sending. */
  lateAnswerMs: number | null;
  /** ms from the late variant's B up until both sides' active paths are direct (null: never, within the wait). */
  directAfterMs: number | null;
  path: 'direct' | 'relay' | 'none';
  /** A's active path to B at the end (its remote address:port, or the relay). */
  activePath: string | null;
  /** Bytes the lighthouse relayed for the pair during a 10 MB transfer, as a fraction of it. */
  lighthouseShare: number | null;
  transferOk: boolean;
  /** A's opener TTL at the end, and whether an ICMP "time exceeded" from beyond its NATs confirmed it. */
  openerTtl: number;
  openerTtlConfirmed: boolean;
}

const RESPONDER = path.join(REPO, 'dist', 'netns', 'portmap-responder.js');

type Status = { peers: ShowPeer[]; stats: { punch: { ttl: number; ttlConfirmed: boolean } } };

/** `keymesh show --json`, through the control socket directly (no process per look: the timings stay sharp). */
async function show(ifname: string): Promise<Status> {
  return (await controlRequest(ifname, { op: 'status' })).status as Status;
}

interface ShowPeer {
  publicKey: string;
  relayed: { packets: number; bytes: number };
  paths: Array<{ path: string; kind: 'direct' | 'relay'; active: boolean }>;
}

/** Run one case: fresh NAT state, L, A and B started, the measurements above. */
export async function runMatrixCase(
  lab: Lab,
  t: ReturnType<typeof natMatrix>,
  c: MatrixCase,
  log: (line: string) => void = () => {},
): Promise<MatrixResult> {
  const procs: Array<Proc> = [];
  const responders: Array<Proc> = [];
  const stopAll = async () => {
    for (const p of procs.splice(0).reverse()) await p.stop('SIGTERM', 3000);
  };
  try {
    t.place(t.a, c.a[0], c.a[1]);
    t.place(t.b, c.b[0], c.b[1]);
    t.flushConntrack();
    for (const r of c.portMapping ?? []) {
      const s = t.sites.get(r)!;
      const resp = lab.spawn(s.ns, [process.execPath, RESPONDER, '--wan', s.wanIf, '--lan-addr', `${s.lans[0]}.1`], `portmap responder ${r}`);
      responders.push(resp);
      await waitForOutput(resp, '"listening"', 5000);
    }
    // 1. everyone up at once, A pings at once
    const up = await Promise.all([startKeymesh(lab, t.l), startKeymesh(lab, t.a.spec), startKeymesh(lab, t.b.spec)]);
    procs.push(...up);
    const firstAnswerMs = await firstAnswer(lab, t.a.ns, MATRIX_TUNNEL.b, Date.now(), 5);
    await stopAll();

    // 2. A up and pinging, then B comes up
    t.flushConntrack();
    procs.push(await startKeymesh(lab, t.l), await startKeymesh(lab, t.a.spec));
    const pinger = startPinger(lab, t.a.ns, MATRIX_TUNNEL.b, 12);
    await new Promise((r) => setTimeout(r, 800));
    const bProc = await startKeymesh(lab, t.b.spec);
    const bUp = Date.now();
    procs.push(bProc);
    const replies = await pinger.firstReplyAfter(bUp - 1000, 8000);
    const lateAnswerMs = replies === null ? null : Math.max(0, replies - bUp);

    // 3. direct or relay after up to 10 s; then 10 MB through whatever carries it
    const active = async (ifname: string, key: string) => (await show(ifname)).peers.find((p) => p.publicKey === key)?.paths.find((p) => p.active)?.kind;
    let directAfterMs: number | null = null;
    const deadline = bUp + 10_000;
    while (Date.now() < deadline) {
      if ((await active(t.a.spec.ifname, t.keys.b)) === 'direct' && (await active(t.b.spec.ifname, t.keys.a)) === 'direct') {
        directAfterMs = Date.now() - bUp;
        break;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    const relayed = async () => {
      let n = 0;
      for (const p of (await show(t.l.ifname)).peers) n += p.relayed.bytes;
      return n;
    };
    const before = await relayed();
    const size = 10 * 1024 * 1024;
    let transferOk = false;
    try {
      const x = await tcpTransfer(lab, t.a.ns, t.b.ns, MATRIX_TUNNEL.b, size);
      transferOk = x.sent.sha256 === x.received.sha256 && x.received.bytes === size;
    } catch (e) {
      log(`${c.name}: transfer failed: ${(e as Error).message}`);
    }
    const share = ((await relayed()) - before) / size;
    const ka = await active(t.a.spec.ifname, t.keys.b);
    const activePath = (await show(t.a.spec.ifname)).peers.find((p) => p.publicKey === t.keys.b)?.paths.find((p) => p.active)?.path ?? null;
    const path = ka === 'direct' ? 'direct' : ka === 'relay' ? 'relay' : 'none';
    pinger.stop();
    const punch = (await show(t.a.spec.ifname)).stats.punch;
    return { name: c.name, firstAnswerMs, lateAnswerMs, directAfterMs, path, activePath, lighthouseShare: share, transferOk, openerTtl: punch.ttl, openerTtlConfirmed: punch.ttlConfirmed };
  } finally {
    await stopAll();
    for (const r of responders) await r.stop('SIGTERM', 3000);
  }
}

async function waitForOutput(p: Proc, text: string, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (!p.output.includes(text)) {
    if (!p.running || Date.now() > until) throw new Error(`${p.label}: no "${text}" (${p.running ? 'timed out' : `exited ${p.exitCode}`}):\n${p.output}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** ms from `since` to the first ping answer, pinging every 50 ms for up to `seconds`; null if none. */
async function firstAnswer(lab: Lab, ns: string, addr: string, since: number, seconds: number): Promise<number | null> {
  const p = startPinger(lab, ns, addr, seconds);
  const at = await p.firstReplyAfter(since, seconds * 1000 + 1000);
  p.stop();
  return at === null ? null : at - since;
}

/** `ping -D` every 50 ms in the background; the wall-clock time of its first reply. */
function startPinger(lab: Lab, ns: string, addr: string, seconds: number) {
  const p = lab.spawn(ns, ['ping', '-D', '-n', '-i', '0.05', '-W', '1', '-w', String(seconds), addr], `ping ${addr}`);
  const replyTimes = (): number[] =>
    [...p.output.matchAll(/^\[(\d+\.\d+)\] \d+ bytes from/gm)].map((m) => Math.round(Number(m[1]) * 1000));
  return {
    async firstReplyAfter(since: number, ms: number): Promise<number | null> {
      const until = Date.now() + ms;
      for (;;) {
        const r = replyTimes().find((x) => x >= since);
        if (r !== undefined) return r;
        if (!p.running || Date.now() > until) return null;
        await new Promise((res) => setTimeout(res, 20));
      }
    },
    stop(): void {
      void p.stop('SIGINT', 1000);
    },
  };
}

/** The matrix the tests and `npm run bench:nat` run (issue 13's cases). */
export const MATRIX: MatrixCase[] = [
  { name: 'plain ↔ plain', a: ['pa'], b: ['pb'], expect: 'direct', openerTtl: 2 },
  { name: 'home ↔ home', a: ['ha'], b: ['hb'], expect: 'direct' },
  { name: 'plain ↔ home', a: ['pa'], b: ['hb'], expect: 'direct' },
  { name: 'CGNAT + plain ↔ plain', a: ['cgh'], b: ['pb'], expect: 'direct', openerTtl: 3 },
  { name: 'both behind one NAT (two LANs)', a: ['sh', '10.6.0'], b: ['sh', '10.7.0'], expect: 'direct', pathPrefix: '10.7.0.3:' },
  { name: 'symmetric ↔ symmetric', a: ['sa'], b: ['sb'], expect: 'relay' },
  { name: 'symmetric ↔ symmetric, B maps a port (PCP)', a: ['sa'], b: ['sb'], portMapping: ['sb'], expect: 'direct' },
  { name: 'home ↔ symmetric', a: ['ha'], b: ['sb'], expect: null },
  { name: 'home ↔ symmetric, A maps a port (PCP)', a: ['ha'], b: ['sb'], portMapping: ['ha'], expect: null },
];
