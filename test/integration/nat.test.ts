/**
 * NAT traversal through lighthouses, in network namespaces (topology: netns/nat.ts): two
 * lighthouses on a public network, two members behind NAT routers (nftables masquerade), spare
 * NAT routers to move them to, and a stranger. One lab for the whole file (it is slow to build);
 * each scenario moves the members where it needs them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { canRunNetns, KEYMESH_BIN, Lab, ping, REPO, sh, sleep, startKeymesh, startProbe, tcpTransfer, waitFor, type Proc } from '../../netns/lib.js';
import { NAT_TUNNEL, natTopology } from '../../netns/nat.js';

const skip = canRunNetns();

interface PeerStatus {
  publicKey: string;
  foundVia: string | null;
  relayed: { packets: number; bytes: number };
  session: object | null;
  paths: Array<{ path: string; kind: 'direct' | 'relay'; via: string | null; active: boolean; state: string }>;
}
interface Status {
  stats: { drops: Record<string, number>; lighthouse: Record<string, number> };
  peers: PeerStatus[];
}

function status(ifname: string): Status {
  return JSON.parse(sh(process.execPath, [KEYMESH_BIN, 'show', ifname, '--json']));
}

function peer(ifname: string, key: string): PeerStatus {
  return status(ifname).peers.find((p) => p.publicKey === key)!;
}

function activeKind(ifname: string, key: string): string | undefined {
  return peer(ifname, key)?.paths.find((p) => p.active)?.kind;
}

describe.skipIf(skip)('NAT traversal with lighthouses', () => {
  let lab: Lab;
  let t: ReturnType<typeof natTopology>;
  const procs: Record<string, Proc> = {};

  /** The keymesh nodes' logs (for failure messages). */
  function kmLogs(): string {
    return lab
      .logs()
      .split(/(?=^--- )/m)
      .filter((x) => x.startsWith('--- keymesh'))
      .join('\n');
  }

  /** ping; on failure, give the node logs a moment to arrive (ping blocks this process) and show them. */
  async function pingOk(ns: string, addr: string, count: number): Promise<void> {
    const ok = ping(lab, ns, addr, count);
    if (!ok) await sleep(300);
    expect(ok, `ping ${addr} from ${ns}\n${kmLogs()}`).toBe(true);
  }

  /** Relayed packets the lighthouses carried from A and from B so far. */
  function relayedForPair(): number {
    let n = 0;
    for (const l of [t.l1, t.l2]) {
      if (!procs[l.ifname]?.running) continue;
      for (const k of [t.keys.a, t.keys.b]) n += peer(l.ifname, k).relayed.packets;
    }
    return n;
  }

  async function bothActive(kind: 'direct' | 'relay', timeoutMs: number): Promise<void> {
    await waitFor(
      `${kind} paths both ways`,
      () => activeKind(t.a.spec.ifname, t.keys.b) === kind && activeKind(t.b.spec.ifname, t.keys.a) === kind,
      timeoutMs,
      100,
    );
  }

  beforeAll(async () => {
    lab = new Lab();
    t = natTopology(lab);
    for (const n of [t.l1, t.l2, t.a.spec, t.b.spec]) procs[n.ifname] = await startKeymesh(lab, n);
    // registration: each member holds a session with both lighthouses
    await waitFor(
      'members registered with both lighthouses',
      () => [t.a.spec, t.b.spec].every((m) => [t.keys.l1, t.keys.l2].every((k) => peer(m.ifname, k)?.session !== null)),
      8000,
      100,
    );
  }, 60_000);

  afterAll(async () => {
    await lab?.cleanup();
  });

  it('(a) port-preserving NATs: the pair punches through to a direct path; the lighthouses then carry none of its data', async () => {
    await pingOk(t.a.spec.ns, NAT_TUNNEL.b, 2);
    await bothActive('direct', 6000);
    const found = peer(t.a.spec.ifname, t.keys.b).foundVia;
    expect([t.keys.l1, t.keys.l2]).toContain(found);
    // the direct path goes to B's NAT router, on the port B's NAT kept (51820)
    expect(peer(t.a.spec.ifname, t.keys.b).paths.find((p) => p.active)!.path).toBe(`${t.routers.get('c2')!.public}:51820`);
    await sleep(500);
    const before = relayedForPair();
    const r = await tcpTransfer(lab, t.a.spec.ns, t.b.spec.ns, NAT_TUNNEL.b, 4 * 1024 * 1024);
    expect(r.received.sha256).toBe(r.sent.sha256);
    expect(relayedForPair()).toBe(before);
    console.log(`(a) direct path via ${found === t.keys.l1 ? 'L1' : 'L2'}; lighthouses relayed ${before} packets before punching, 0 during 4 MB after`);
  }, 30_000);

  it('(d) both members move to other NATs at once under a TCP stream and a UDP probe: outage ≤ 2 s', async () => {
    await bothActive('direct', 6000);
    const probe = await startProbe(lab, t.a.spec.ns, t.b.spec.ns, NAT_TUNNEL.b);
    // paced (15 MiB/s for 4 s), so the stream is still running when both move however fast the
    // machine: unpaced, 120 MiB finished in 0.36 s on a fast one, before the move
    const transfer = tcpTransfer(lab, t.a.spec.ns, t.b.spec.ns, NAT_TUNNEL.b, 60 * 1024 * 1024, 5201, 15 * 1024 * 1024);
    await sleep(700);
    const [toA, toB] = t.a.at === 'c1' ? ['c3', 'c4'] : ['c1', 'c2'];
    await t.move([
      [t.a, toA],
      [t.b, toB],
    ]);
    await sleep(3000);
    const p = await probe.stop();
    const r = await transfer;
    expect(r.received.sha256, kmLogs()).toBe(r.sent.sha256);
    expect(r.sent.seconds).toBeGreaterThan(0.7); // the stream was still running when both moved
    expect(p.maxGapMs, JSON.stringify(p)).toBeLessThanOrEqual(2000);
    await bothActive('direct', 6000);
    expect(peer(t.a.spec.ifname, t.keys.b).paths.find((x) => x.active)!.path).toBe(`${t.routers.get(toB)!.public}:51820`);
    console.log(`(d) both moved (A → ${toA}, B → ${toB}): longest probe silence ${p.maxGapMs} ms, TCP ${r.sent.bytes} bytes intact`);
  }, 60_000);

  it('(b) symmetric NATs on both sides: traffic goes through a relay, 20 MB TCP intact', async () => {
    await t.move([
      [t.a, 's1'],
      [t.b, 's2'],
    ]);
    await pingOk(t.a.spec.ns, NAT_TUNNEL.b, 3);
    await bothActive('relay', 6000);
    const reason = (peer(t.a.spec.ifname, t.keys.b) as unknown as { relayReason: string | null }).relayReason;
    // (which one depends on how far punching has got: candidates may not have arrived yet)
    expect(reason).toMatch(/^(no direct candidates|punching failed|punching: |a direct path answered)/);
    const before = relayedForPair();
    const r = await tcpTransfer(lab, t.a.spec.ns, t.b.spec.ns, NAT_TUNNEL.b, 20 * 1024 * 1024);
    expect(r.received.bytes).toBe(20 * 1024 * 1024);
    expect(r.received.sha256).toBe(r.sent.sha256);
    // it really went through the lighthouses: ≥ 20 MB / 1.5 KB per packet
    expect(relayedForPair() - before).toBeGreaterThan(13_000);
    expect(activeKind(t.a.spec.ifname, t.keys.b)).toBe('relay');
    console.log(`(b) relay: 20 MB in ${r.sent.seconds} s, ${relayedForPair() - before} packets relayed`);
  }, 60_000);

  it('(e) a node not in the lighthouse’s config gets no session, no answers and no relay', async () => {
    const l1Before = status(t.l1.ifname).stats;
    procs[t.stranger.ifname] = await startKeymesh(lab, t.stranger);
    expect(ping(lab, t.stranger.ns, NAT_TUNNEL.a, 2)).toBe(false);
    await sleep(500);
    const s = status(t.stranger.ifname);
    expect(s.peers.find((p) => p.publicKey === t.keys.l1)!.session).toBeNull();
    expect(s.stats.lighthouse.candidatesReceived).toBe(0);
    expect(s.stats.lighthouse.relayReceived).toBe(0);
    const l1 = status(t.l1.ifname).stats;
    expect(l1.drops.handshakeInvalid).toBeGreaterThan(l1Before.drops.handshakeInvalid);
    // A lists the stranger, but the lighthouses do not: A's lookups for it are refused, nothing is relayed to it
    const refusedBefore = l1.lighthouse.lookupsRefused;
    const relayRefusedBefore = l1.lighthouse.relayRefused;
    expect(ping(lab, t.a.spec.ns, NAT_TUNNEL.s, 1)).toBe(false);
    const after = status(t.l1.ifname).stats.lighthouse;
    expect(after.lookupsRefused).toBeGreaterThan(refusedBefore);
    expect(after.relayRefused).toBeGreaterThan(relayRefusedBefore);
    await procs[t.stranger.ifname].stop('SIGTERM', 3000);
  }, 30_000);

  it('(c) one lighthouse killed: sessions continue, new lookups are answered by the other', async () => {
    await t.move([
      [t.a, 'c1'],
      [t.b, 'c2'],
    ]);
    await bothActive('direct', 8000);
    await procs[t.l1.ifname].stop('SIGTERM', 3000);
    await pingOk(t.a.spec.ns, NAT_TUNNEL.b, 3);
    const answered = status(t.l2.ifname).stats.lighthouse.lookupsAnswered;
    // A new lookup, which only L2 can answer: both members restart (so neither remembers where the
    // other was: a member that moves keeps re-probing every address it knew, and two that move
    // back behind NATs they shared before find each other with no lighthouse at all).
    for (const m of [t.a.spec, t.b.spec]) await procs[m.ifname].stop('SIGTERM', 3000);
    for (const m of [t.b.spec, t.a.spec]) procs[m.ifname] = await startKeymesh(lab, m);
    await waitFor('members registered with L2', () => [t.a.spec, t.b.spec].every((m) => peer(m.ifname, t.keys.l2)?.session !== null), 8000, 100);
    await pingOk(t.a.spec.ns, NAT_TUNNEL.b, 3);
    await bothActive('direct', 8000);
    expect(status(t.l2.ifname).stats.lighthouse.lookupsAnswered).toBeGreaterThan(answered);
    expect(peer(t.a.spec.ifname, t.keys.b).foundVia).toBe(t.keys.l2);
    expect(peer(t.b.spec.ifname, t.keys.a).foundVia).toBe(t.keys.l2);
  }, 60_000);
  it('(f) symmetric NATs on both sides, A\'s router grants port mappings (PCP): the pair goes direct, the lighthouses carry none of its data', async () => {
    // A's router runs a PCP/NAT-PMP responder and, as home routers do, lets port-forwarded flows in
    const s1 = t.routers.get('s1')!;
    lab.exec(s1.ns, ['nft', 'insert', 'rule', 'ip', 'kmnat', 'fwd4', 'iifname', 'pub', 'ct', 'status', 'dnat', 'accept']);
    const responder = lab.spawn(s1.ns, [process.execPath, path.join(REPO, 'dist', 'netns', 'portmap-responder.js'), '--wan', 'pub', '--lan-addr', `10.${s1.lan}.0.1`], 'responder s1');
    await waitFor('the responder to listen', () => /listening|"event"/.test(responder.output), 5000);
    await t.move([
      [t.a, 's1'],
      [t.b, 's2'],
    ]);
    // the move makes A ask its new gateway for a mapping, and announce it
    await waitFor('A to hold a port mapping', () => (status(t.a.spec.ifname) as unknown as { portMapping: { external: string } | null }).portMapping !== null, 8000, 100);
    const mapping = (status(t.a.spec.ifname) as unknown as { portMapping: { protocol: string; external: string } }).portMapping;
    expect(mapping.external.startsWith(`${s1.public}:`)).toBe(true);
    await pingOk(t.a.spec.ns, NAT_TUNNEL.b, 3);
    // while relayed, members ask their lighthouses again every 5 s; the answer now carries the mapping
    await bothActive('direct', 15_000);
    expect(peer(t.b.spec.ifname, t.keys.a).paths.find((p) => p.active)!.path).toBe(mapping.external);
    const before = relayedForPair();
    const r = await tcpTransfer(lab, t.a.spec.ns, t.b.spec.ns, NAT_TUNNEL.b, 4 * 1024 * 1024);
    expect(r.received.sha256).toBe(r.sent.sha256);
    expect(relayedForPair()).toBe(before);
    console.log(`(f) symmetric ↔ symmetric with a ${mapping.protocol} mapping on A's router (${mapping.external}): direct; 0 packets relayed during 4 MB`);
    await responder.stop();
  }, 60_000);
  /** ping -D from `ns` every 50 ms for `seconds`; resolves with the Unix ms times of the replies. */
  function timedPing(ns: string, addr: string, seconds: number): Promise<number[]> {
    const p = lab.spawn(ns, ['ping', '-D', '-n', '-i', '0.05', '-w', String(seconds), addr], `ping ${addr}`);
    return p.exited.then(() => [...p.output.matchAll(/^\[(\d+\.\d+)\] \d+ bytes from/gm)].map((m) => Math.round(Number(m[1]) * 1000)));
  }

  it('(g) first contact: pinging at once after every node is up is answered within 1 s; a peer that comes up while the other pings is reached within 0.5 s of its up', async () => {
    await t.move([
      [t.a, 'c1'],
      [t.b, 'c2'],
    ]);
    // all up at the same moment (both members restart; the lighthouse L2 is up), A pings at once
    for (const m of [t.a.spec, t.b.spec]) await procs[m.ifname].stop('SIGTERM', 3000);
    await Promise.all([t.b.spec, t.a.spec].map(async (m) => (procs[m.ifname] = await startKeymesh(lab, m))));
    const upAt = Date.now();
    const replies = await timedPing(t.a.spec.ns, NAT_TUNNEL.b, 3);
    expect(replies.length, kmLogs()).toBeGreaterThan(0);
    const first = replies[0] - upAt;
    expect(first, kmLogs()).toBeLessThanOrEqual(1000);
    // B comes up while A (up, no session with B yet) is already pinging it — two laptops waking
    // up, one a moment after the other. (A peer that restarts while we hold a session with its
    // previous instance is another case: like WireGuard, A re-handshakes when that session has
    // gone unanswered for KEEPALIVE_TIMEOUT + REKEY_TIMEOUT.)
    for (const m of [t.a.spec, t.b.spec]) await procs[m.ifname].stop('SIGTERM', 3000);
    procs[t.a.spec.ifname] = await startKeymesh(lab, t.a.spec);
    const pinging = timedPing(t.a.spec.ns, NAT_TUNNEL.b, 6);
    await sleep(1500);
    procs[t.b.spec.ifname] = await startKeymesh(lab, t.b.spec);
    const bUpAt = Date.now();
    const late = (await pinging).filter((x) => x >= bUpAt - 1000);
    expect(late.length, kmLogs()).toBeGreaterThan(0);
    const reached = late[0] - bUpAt;
    expect(reached, kmLogs()).toBeLessThanOrEqual(500);
    console.log(`(g) home routers: first answer ${first} ms after all were up; B up while A pings → answered ${reached} ms after B's up`);
  }, 60_000);
});
