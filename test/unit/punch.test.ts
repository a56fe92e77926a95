/**
 * Hole punching through NATs without inbound filtering (src/core/punch.ts), on the fake network
 * with conntrack-like "plain" NATs (test/unit/support/pair.ts: a datagram that matches no flow
 * leaves an unreplied entry at the NAT, and a later flow to its source gets another port):
 *
 *   A-lan ─ NATA (plain) ─┐                       ┌─ NATB (plain) ─ B-lan
 *                         └─── L1 (lighthouse) ───┘
 *
 * - openers, then PUNCH_OPEN, then full probes: the pair goes direct; without openers the first
 *   probe to arrive poisons the other NAT and the pair stays relayed (the field failure);
 * - a punch that stalls anyway (a NAT poisoned beforehand) goes quiet for PUNCH_QUIET, lets the
 *   entries expire, and then succeeds;
 * - the TTL ladder: a report from inside our NATs raises the TTL once per rung; one from beyond
 *   confirms it; another network starts again at 2;
 * - an opener's "port unreachable" from the candidate itself (NATs side by side): the stalled
 *   punch's relay reason says so.
 */
import { describe, expect, it } from 'vitest';
import { PUNCH_QUIET } from '../../src/core/endpoint.js';
import { opener, OPENER_TTL } from '../../src/core/punch.js';
import { FakeNat, ipPacket, lighthouseAndMembers, Net, type Node, PLAIN_TIMEOUT } from './support/pair.js';

const enc = new TextEncoder();

function peerOf(n: Node, other: Node) {
  return n.engine.getPeer(other.publicKey)!;
}

function build(opts: { openers?: boolean } = {}) {
  const net = new Net();
  net.ipv4('L1', '198.51.100.1');
  net.ipv4('NATA', '203.0.113.1');
  net.ipv4('NATB', '203.0.113.2');
  net.ipv4('A-lan', '10.0.1.2');
  net.ipv4('B-lan', '10.0.2.2');
  const l = net.add('L1', { isLighthouse: true });
  const a = net.add('A-lan', { punchOpeners: opts.openers ?? true });
  const b = net.add('B-lan', { punchOpeners: opts.openers ?? true });
  const natA = new FakeNat(net, 'NATA', 'plain');
  const natB = new FakeNat(net, 'NATB', 'plain');
  a.behind(natA);
  b.behind(natB);
  lighthouseAndMembers(net, l, a, b);
  for (const m of [a, b]) m.engine.setPersistentKeepalive(peerOf(m, l), 10, net.now);
  net.advance(50); // both registered with L1
  return { net, l, a, b, natA, natB };
}

/** A pings B (B answers) every 100 ms for `ms` ms of the fake clock. */
function traffic(net: Net, a: Node, b: Node, ms: number): void {
  for (let t = 0; t < ms; t += 100) {
    const nb = b.tun.length;
    a.engine.handleTunPacket(ipPacket('10.0.0.1', '10.0.0.2', enc.encode('ping')), net.now);
    net.deliver();
    for (let i = nb; i < b.tun.length; i++) b.engine.handleTunPacket(ipPacket('10.0.0.2', '10.0.0.1', enc.encode('pong')), net.now);
    net.deliver();
    net.advance(100);
  }
}

const direct = (m: Node, o: Node) => {
  const p = peerOf(m, o).endpoint.path;
  return p !== null && p.via === undefined;
};

describe('punching through plain NATs (punch.ts)', () => {
  it('openers, PUNCH_OPEN, then full probes: direct both ways; no probe ever reaches a NAT that was not opened toward it', () => {
    const { net, a, b, natA, natB } = build();
    traffic(net, a, b, 3000);
    expect(direct(a, b) && direct(b, a)).toBe(true);
    expect(natA.local + natB.local).toBe(0); // nothing ever arrived at a NAT for itself
    const sa = a.engine.stats(net.now).punch;
    expect(sa.openersSent).toBeGreaterThan(0);
    expect(sa.punchOpenSent).toBeGreaterThan(0);
    expect(sa.punchOpenReceived).toBeGreaterThan(0);
    expect({ ttl: sa.ttl, confirmed: sa.ttlConfirmed }).toEqual({ ttl: OPENER_TTL, confirmed: true });
    expect(net.log.some((r) => r.fate === 'expired')).toBe(true); // the openers died past their own NAT
  });

  it('without openers (the field failure): the first probe poisons the other NAT and the pair stays relayed', () => {
    const { net, a, b, natA, natB } = build({ openers: false });
    traffic(net, a, b, 20_000);
    expect(direct(a, b) || direct(b, a)).toBe(false);
    expect(natA.local + natB.local).toBeGreaterThan(0);
  });

  it('a punch that stalls anyway goes quiet until the NATs forget it, then succeeds', () => {
    const { net, a, b, natB } = build();
    // something from A's public address reaches B's NAT first (an earlier life's probe): B's NAT
    // now holds an unreplied entry for exactly the tuple the punch needs
    net.send({ from: 'NATA:51820', to: 'NATB:51820', data: new Uint8Array(8) });
    net.deliver();
    expect(natB.local).toBe(1);
    const start = net.now;
    traffic(net, a, b, 8000);
    expect(direct(a, b) || direct(b, a)).toBe(false); // stalled: the stale entry remaps B's flow
    const candidate = peerOf(a, b)
      .endpoint.list()
      .find((e) => e.path.id === 'NATB:51820')!;
    expect(candidate.quietUntil).toBeGreaterThan(net.now);
    const quietFrom = candidate.quietUntil - PUNCH_QUIET;
    let directAt: number | null = null;
    for (let t = 0; t < 60_000 && directAt === null; t += 1000) {
      traffic(net, a, b, 1000);
      if (direct(a, b) && direct(b, a)) directAt = net.now;
    }
    expect(directAt).not.toBeNull();
    // not before the NATs' entries could have expired, and soon after the quiet ended
    expect(directAt! - quietFrom).toBeGreaterThanOrEqual(PLAIN_TIMEOUT);
    expect(directAt! - start).toBeLessThan(8000 + PUNCH_QUIET + 10_000);
    // during the quiet nothing at all went from A toward that candidate
    const toCandidate = net.log.filter((r) => r.to === 'NATB:51820' && (r.from === 'NATA:51820' || r.from.startsWith('NATA')) && r.at > quietFrom + 100 && r.at < quietFrom + PLAIN_TIMEOUT);
    expect(toCandidate).toEqual([]);
  });

  it('the TTL ladder: one rung per report from inside our NATs, confirmed from beyond, reset on another network', () => {
    const { net, a, b } = build();
    net.reportTimeExceeded = false; // ICMP filtered: the ladder learns only from what we feed it
    a.engine.handleTunPacket(ipPacket('10.0.0.1', '10.0.0.2', enc.encode('ping')), net.now);
    net.deliver();
    const s0 = a.engine.stats(net.now).punch;
    expect(s0.openersSent).toBeGreaterThan(0);
    expect(s0.ttl).toBe(2);
    const natB = Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 203, 0, 113, 2);
    const inside = Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 100, 64, 0, 1); // a CGNAT's inner address
    const beyond = Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 1);
    a.engine.handleTimeExceeded(natB, 51820, inside, opener(2), net.now);
    let s = a.engine.stats(net.now).punch;
    expect(s.ttl).toBe(3);
    expect(s.openersSent).toBe(s0.openersSent + 2); // sent again at once, one rung up
    a.engine.handleTimeExceeded(natB, 51820, inside, opener(2), net.now); // the second copy of rung 2: nothing more
    a.engine.handleTimeExceeded(natB, 51820, inside, new Uint8Array(0), net.now); // no quoted payload: teaches nothing
    a.engine.handleTimeExceeded(natB, 51820, inside, Uint8Array.of(4, 0, 0, 0), net.now); // not an opener
    expect(a.engine.stats(net.now).punch.ttl).toBe(3);
    a.engine.handleTimeExceeded(natB, 51820, beyond, opener(3), net.now);
    s = a.engine.stats(net.now).punch;
    expect({ ttl: s.ttl, confirmed: s.ttlConfirmed }).toEqual({ ttl: 3, confirmed: true });
    a.engine.handleTimeExceeded(natB, 51820, inside, opener(3), net.now); // confirmed: stays
    expect(a.engine.stats(net.now).punch.ttl).toBe(3);
    a.engine.localAddressesChanged(net.now);
    s = a.engine.stats(net.now).punch;
    expect({ ttl: s.ttl, confirmed: s.ttlConfirmed }).toEqual({ ttl: 2, confirmed: false });
  });

  it('an opener answered by "port unreachable" from the candidate itself marks the peer\'s NAT as our neighbour, and the stalled punch says so', () => {
    const { net, a, b } = build();
    net.reportTimeExceeded = false;
    // as with NATs side by side: B's NAT already holds the stale entry the punch would need
    net.send({ from: 'NATA:51820', to: 'NATB:51820', data: new Uint8Array(8) });
    net.deliver();
    a.engine.handleTunPacket(ipPacket('10.0.0.1', '10.0.0.2', enc.encode('ping')), net.now);
    net.deliver();
    const natB = Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 203, 0, 113, 2);
    const router = Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 1);
    const entry = () => peerOf(a, b).endpoint.list().find((e) => e.path.id === 'NATB:51820')!;
    a.engine.handlePortUnreachable(natB, 51820, router, opener(2), net.now); // from a router on the way: not the NAT
    a.engine.handlePortUnreachable(natB, 51820, natB, Uint8Array.of(4, 0, 0, 0), net.now); // not an opener
    a.engine.handlePortUnreachable(natB, 51820, null, opener(2), net.now);
    expect(entry().openerArrived).toBe(false);
    expect(a.engine.stats(net.now).punch.openersArrived).toBe(0);
    a.engine.handlePortUnreachable(natB, 51820, natB, opener(2), net.now);
    a.engine.handlePortUnreachable(natB, 51820, natB, opener(2), net.now); // the second copy counts once
    expect(entry().openerArrived).toBe(true);
    expect(a.engine.stats(net.now).punch.openersArrived).toBe(1);
    traffic(net, a, b, 8000);
    expect(direct(a, b)).toBe(false);
    expect(peerOf(a, b).endpoint.whyRelayed()).toMatch(/neighbours.*port forward/);
  });
});
