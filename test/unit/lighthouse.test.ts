/**
 * Lighthouses on the fake network with a fake clock: members behind fake NATs (port-preserving
 * "cone" and per-destination "symmetric"), registration, lookup, hole punching, relay fallback,
 * several lighthouses, both ends moving at once, and access control.
 */
import { describe, expect, it } from 'vitest';
import { isRelay } from '../../src/core/endpoint.js';
import { EXT_CANDIDATES, EXT_LOOKUP } from '../../src/core/extension.js';
import type { Engine } from '../../src/core/engine.js';
import { FakeNat, ipBytes, ipPacket, makePath, Net, type Node } from './support/pair.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

function peerOf(n: Node, other: Node) {
  return n.engine.getPeer(other.publicKey)!;
}

/** `lh` knows every member; each member knows the lighthouses (with endpoints) and the others (without). */
function mesh(net: Net, lighthouses: Node[], members: Array<{ node: Node; ip: string }>): void {
  for (const l of lighthouses) {
    for (const m of members) l.engine.upsertPeer({ publicKey: m.node.publicKey, allowedIps: [{ addr: ipBytes(m.ip), cidr: 32 }] }, net.now);
  }
  lighthouses.forEach((l, i) => {
    for (const m of members) {
      m.node.engine.upsertPeer(
        { publicKey: l.publicKey, endpoint: l.path, lighthouse: true, allowedIps: [{ addr: ipBytes(`10.0.9.${i + 1}`), cidr: 32 }] },
        net.now,
      );
    }
  });
  for (const m of members) {
    for (const o of members) {
      if (o !== m) m.node.engine.upsertPeer({ publicKey: o.node.publicKey, allowedIps: [{ addr: ipBytes(o.ip), cidr: 32 }] }, net.now);
    }
  }
  // registration: members keep a session (and keepalives) with every lighthouse
  for (const m of members) for (const l of lighthouses) m.node.engine.setPersistentKeepalive(peerOf(m.node, l), 10, net.now);
  net.deliver();
}

function setup(kind: 'cone' | 'symmetric', lighthouseCount = 1, opts: { relayRate?: number } = {}) {
  const net = new Net();
  const lhs = Array.from({ length: lighthouseCount }, (_, i) => net.add(`L${i + 1}`, { isLighthouse: true, relayRate: opts.relayRate }));
  const a = net.add('A-lan');
  const b = net.add('B-lan');
  const na = new FakeNat(net, 'NATA', kind);
  const nb = new FakeNat(net, 'NATB', kind);
  a.behind(na);
  b.behind(nb);
  mesh(net, lhs, [
    { node: a, ip: '10.0.0.1' },
    { node: b, ip: '10.0.0.2' },
  ]);
  return { net, lhs, a, b, na, nb };
}

/** A's first packet to B (A initiates). */
function start(net: Net, a: Node, text = 'first'): void {
  send(net, a, '10.0.0.1', '10.0.0.2', text);
  net.deliver();
  net.advance(10);
}

function send(net: Net, from: Node, src: string, dst: string, text: string): void {
  from.engine.handleTunPacket(ipPacket(src, dst, enc.encode(text)), net.now);
}

function texts(n: Node): string[] {
  return n.tun.map((p) => dec.decode(p.subarray(20)));
}

function relayedBy(l: Node): number {
  return l.engine.stats().lighthouse.relayedPackets;
}

/** Send a packet each way every `step` ms for `ms` ms; returns the longest gap between arrivals at B. */
function traffic(net: Net, a: Node, b: Node, ms: number, step = 20, tag = 't'): number {
  let last = net.now;
  let gap = 0;
  for (let t = 0; t < ms; t += step) {
    const before = b.tun.length;
    send(net, a, '10.0.0.1', '10.0.0.2', `${tag}${t}`);
    send(net, b, '10.0.0.2', '10.0.0.1', `${tag}r${t}`);
    net.deliver();
    net.advance(step);
    if (b.tun.length > before) {
      gap = Math.max(gap, net.now - last);
      last = net.now;
    }
  }
  return Math.max(gap, net.now - last);
}

describe('registration', () => {
  it('members hold a session with the lighthouse, which sees their NAT-mapped (reflexive) address', () => {
    const { lhs, a, b } = setup('cone');
    const l = lhs[0];
    expect(peerOf(l, a).keypairs.current).not.toBeNull();
    expect(peerOf(l, b).keypairs.current).not.toBeNull();
    // the lighthouse only ever saw the NAT's public side, never the private address
    expect(peerOf(l, a).endpoint.path?.id).toBe('NATA:51820');
    expect(peerOf(l, b).endpoint.path?.id).toBe('NATB:51820');
  });
});

describe('lookup and hole punching', () => {
  it('cone NATs: the first packet goes at once (relayed, or direct when the asked side initiates through), then the pair punches through to a direct path and the lighthouse carries nothing more', () => {
    const { net, lhs, a, b } = setup('cone');
    const l = lhs[0];
    const t0 = net.now;
    send(net, a, '10.0.0.1', '10.0.0.2', 'first');
    net.deliver();
    net.advance(10);
    expect(texts(b)).toContain('first');
    const firstAt = net.now - t0;
    expect(firstAt).toBeLessThan(100);
    expect(peerOf(a, b).foundVia).toBe(peerOf(a, l).keyId);
    // punching: both sides probe the candidates the lighthouse gave them
    traffic(net, a, b, 1500);
    const pa = peerOf(a, b);
    const pb = peerOf(b, a);
    expect(pa.endpoint.path?.id).toBe('NATB:51820');
    expect(pb.endpoint.path?.id).toBe('NATA:51820');
    expect(isRelay(pa.endpoint.path!)).toBe(false);
    expect(pa.endpoint.whyRelayed()).toBeNull();
    // either the session started over the relay and left it once a direct path was validated, or
    // B's own initiation (it was asked for) came straight through the cone NATs and the first contact was direct
    const changes = a.events.filter((e) => e.type === 'endpoint-changed' && e.peer === pa) as Array<{ reason: string; to: { via?: unknown } }>;
    const leftRelay = changes.some((e) => e.reason === 'direct path validated: leaving the relay');
    const directFirst = changes.some((e) => e.reason === 'first contact' && e.to.via === undefined);
    expect(leftRelay || directFirst, changes.map((e) => e.reason).join(', ')).toBe(true);
    // after punching, the lighthouse carries no data for the pair
    const relayed = relayedBy(l);
    traffic(net, a, b, 3000, 20, 'after');
    expect(relayedBy(l)).toBe(relayed);
    expect(texts(b).filter((t) => t.startsWith('after')).length).toBeGreaterThanOrEqual(140);
    // and the lighthouse never saw a plaintext packet of theirs
    expect(l.tun).toHaveLength(0);
  });

  it('symmetric NATs: punching cannot work, traffic flows over the relay and stays there without flapping', () => {
    const { net, lhs, a, b, na, nb } = setup('symmetric');
    const l = lhs[0];
    send(net, a, '10.0.0.1', '10.0.0.2', 'first');
    net.deliver();
    net.advance(10);
    expect(texts(b)).toContain('first');
    const gap = traffic(net, a, b, 12_000, 50);
    expect(gap).toBeLessThanOrEqual(200);
    const pa = peerOf(a, b);
    expect(isRelay(pa.endpoint.path!)).toBe(true);
    expect(isRelay(peerOf(b, a).endpoint.path!)).toBe(true);
    expect(na.dropped + nb.dropped).toBeGreaterThan(0); // the punch attempts died at the NATs
    // and `keymesh show` can say why it is relayed
    expect(pa.endpoint.whyRelayed()).toMatch(/^punching( failed: none of \d+ direct candidates answered|: \d+ of \d+ direct candidates still being probed)/);
    expect(relayedBy(l)).toBeGreaterThan(400);
    expect(l.tun).toHaveLength(0);
    // one relay path chosen, never switching: no endpoint change after the first ones
    const changes = a.events.filter((e) => e.type === 'endpoint-changed' && e.peer === pa);
    expect(changes.length).toBeLessThanOrEqual(1);
    // direct paths keep being tried while on the relay (a lookup every few seconds)
    expect(a.engine.stats().lighthouse.lookupsSent).toBeGreaterThanOrEqual(3);
  });

  it('relay traffic moves to a direct path once one validates (symmetric NAT replaced by a cone one)', () => {
    const { net, a, b, na } = setup('symmetric');
    start(net, a);
    traffic(net, a, b, 2000, 50);
    expect(isRelay(peerOf(a, b).endpoint.path!)).toBe(true);
    // B's network becomes port-preserving; A stays symmetric: B's fixed mapping can be punched to by A… only if
    // A's NAT lets B's packets in, which it does not. So move A to an open (public) address instead.
    void na;
    a.behind(null);
    a.engine.localAddressesChanged(net.now);
    traffic(net, a, b, 8000, 50);
    expect(isRelay(peerOf(a, b).endpoint.path!)).toBe(false);
    expect(isRelay(peerOf(b, a).endpoint.path!)).toBe(false);
  });
});

/** Both hosts change networks at the same instant: new private addresses behind new NATs of `kind`. */
function moveBoth(net: Net, a: Node, b: Node, kind: 'cone' | 'symmetric', tag: string): void {
  const na = new FakeNat(net, `NAT${tag}A`, kind);
  const nb = new FakeNat(net, `NAT${tag}B`, kind);
  a.moveTo(makePath(`A-lan-${tag}`));
  a.behind(na);
  b.moveTo(makePath(`B-lan-${tag}`));
  b.behind(nb);
  a.engine.localAddressesChanged(net.now);
  b.engine.localAddressesChanged(net.now);
}

describe('both ends move at once', () => {
  it('each re-registers at once from its new NAT; they find each other through the lighthouse within 2 s', () => {
    const { net, lhs, a, b } = setup('cone');
    start(net, a);
    traffic(net, a, b, 2000);
    expect(isRelay(peerOf(a, b).endpoint.path!)).toBe(false);
    moveBoth(net, a, b, 'cone', 'C');
    const gap = traffic(net, a, b, 4000, 10, 'moved');
    expect(gap).toBeLessThanOrEqual(2000);
    expect(peerOf(a, b).endpoint.path?.id).toBe('NATCB:51820');
    expect(peerOf(b, a).endpoint.path?.id).toBe('NATCA:51820');
    expect(peerOf(lhs[0], a).endpoint.path?.id).toBe('NATCA:51820');
  });

  for (const lighthouses of [1, 2]) {
    it(`from cone NATs (direct path) both move at once to symmetric NATs: the relay takes over within 2 s (${lighthouses} lighthouse(s))`, () => {
      const { net, lhs, a, b } = setup('cone', lighthouses);
      start(net, a);
      traffic(net, a, b, 3000); // direct path; the relays validated at first contact are left cold since
      expect(isRelay(peerOf(a, b).endpoint.path!)).toBe(false);
      moveBoth(net, a, b, 'symmetric', 'S');
      const gap = traffic(net, a, b, 4000, 10, 'sym');
      expect(gap).toBeLessThanOrEqual(2000);
      expect(isRelay(peerOf(a, b).endpoint.path!)).toBe(true);
      expect(isRelay(peerOf(b, a).endpoint.path!)).toBe(true);
      expect(lhs.reduce((n, l) => n + relayedBy(l), 0)).toBeGreaterThan(0);
    });
  }
});

describe('several lighthouses', () => {
  it('members register with all; when one is lost, sessions continue and new lookups are answered by the other', () => {
    const { net, lhs, a, b } = setup('cone', 2);
    const [l1, l2] = lhs;
    for (const l of lhs) for (const m of [a, b]) expect(peerOf(l, m).keypairs.current).not.toBeNull();
    start(net, a);
    traffic(net, a, b, 2000);
    // both lighthouses were asked
    expect(l1.engine.stats().lighthouse.lookupsAnswered).toBeGreaterThan(0);
    expect(l2.engine.stats().lighthouse.lookupsAnswered).toBeGreaterThan(0);
    // L1 dies
    net.blackholes.add(l1.path.id);
    const gap = traffic(net, a, b, 2000);
    expect(gap).toBeLessThanOrEqual(100); // the direct session does not notice
    // B moves: A's direct path dies; the lookup is answered by L2 only
    const answeredBefore = l2.engine.stats().lighthouse.lookupsAnswered;
    b.moveTo(makePath('B-lan2'));
    b.behind(new FakeNat(net, 'NATD', 'cone'));
    b.engine.localAddressesChanged(net.now);
    const gap2 = traffic(net, a, b, 4000, 10, 'moved');
    expect(gap2).toBeLessThanOrEqual(2000);
    expect(l2.engine.stats().lighthouse.lookupsAnswered).toBeGreaterThan(answeredBefore);
    expect(peerOf(a, b).foundVia).toBe(peerOf(a, l2).keyId);
    expect(peerOf(a, b).endpoint.path?.id).toBe('NATD:51820');
  });

  it('a relay through a lost lighthouse fails over to the relay through the other', () => {
    const { net, lhs, a, b } = setup('symmetric', 2);
    start(net, a);
    traffic(net, a, b, 3000, 50);
    const via = peerOf(a, b).endpoint.path!.via!;
    const dead = lhs.find((l) => peerOf(a, l).keyId === via)!;
    const other = lhs.find((l) => l !== dead)!;
    net.blackholes.add(dead.path.id);
    const gap = traffic(net, a, b, 4000, 20, 'x');
    expect(gap).toBeLessThanOrEqual(1000);
    expect(peerOf(a, b).endpoint.path!.via).toBe(peerOf(a, other).keyId);
  });
});

describe('access control', () => {
  it('a node not in the lighthouse’s config gets no session, no answers and no relay', () => {
    const { net, lhs, a, b } = setup('cone');
    const l = lhs[0];
    const s = net.add('S');
    // the stranger knows the lighthouse and A (and A even knows the stranger) — the lighthouse does not know it
    s.engine.upsertPeer({ publicKey: l.publicKey, endpoint: l.path, lighthouse: true }, net.now);
    s.engine.upsertPeer({ publicKey: a.publicKey, allowedIps: [{ addr: ipBytes('10.0.0.1'), cidr: 32 }] }, net.now);
    s.engine.setPersistentKeepalive(peerOf(s, l), 10, net.now);
    net.deliver();
    send(net, s, '10.0.0.66', '10.0.0.1', 'let me in');
    net.advance(20_000);
    expect(peerOf(s, l).keypairs.current).toBeNull();
    expect(l.engine.stats().drops.handshakeInvalid).toBeGreaterThan(0);
    expect(s.engine.stats().lighthouse.candidatesReceived).toBe(0);
    expect(texts(a)).not.toContain('let me in');
    expect(l.engine.stats().lighthouse.relayedPackets).toBe(0);
    void b;
  });

  it('a member asking about (or relaying to) a key outside the lighthouse’s config gets nothing', () => {
    const { net, lhs, a } = setup('cone');
    const l = lhs[0];
    const x = net.add('X'); // a peer of A's, unknown to the lighthouse
    a.engine.upsertPeer({ publicKey: x.publicKey, allowedIps: [{ addr: ipBytes('10.0.0.3'), cidr: 32 }] }, net.now);
    x.engine.upsertPeer({ publicKey: a.publicKey, allowedIps: [{ addr: ipBytes('10.0.0.1'), cidr: 32 }] }, net.now);
    send(net, a, '10.0.0.1', '10.0.0.3', 'to x');
    net.advance(2000);
    expect(l.engine.stats().lighthouse.lookupsRefused).toBeGreaterThan(0);
    expect(l.engine.stats().lighthouse.lookupsAnswered).toBe(0);
    expect(l.engine.stats().lighthouse.relayRefused).toBeGreaterThan(0);
    expect(l.engine.stats().lighthouse.relayedPackets).toBe(0);
    expect(a.engine.stats().lighthouse.candidatesReceived).toBe(0);
    expect(x.tun).toHaveLength(0);
  });

  it('lookups and candidates from a peer that is not a lighthouse are ignored', () => {
    const { net, a, b } = setup('cone');
    start(net, a);
    traffic(net, a, b, 1500);
    const evil = makePath('EVIL');
    // B (a member, not a lighthouse) tries to steer A: a CANDIDATES about itself pointing elsewhere, and a LOOKUP
    const ext = (e: Engine) => e as unknown as { sendExtension(p: unknown, path: unknown, m: unknown, now: number): boolean };
    ext(b.engine).sendExtension(peerOf(b, a), peerOf(b, a).endpoint.path, { type: EXT_CANDIDATES, answer: true, key: b.publicKey, addresses: [{ addr: new Uint8Array(16), port: 1 }] }, net.now);
    ext(b.engine).sendExtension(peerOf(b, a), peerOf(b, a).endpoint.path, { type: EXT_LOOKUP, key: b.publicKey }, net.now);
    net.deliver();
    expect(a.engine.stats().lighthouse.ignored).toBe(1);
    expect(a.engine.stats().lighthouse.lookupsRefused).toBe(1); // A is not a lighthouse
    expect(peerOf(a, b).endpoint.entryFor(evil)).toBeUndefined();
  });

  it('relaying is rate-limited per member at the lighthouse', () => {
    const { net, lhs, a, b } = setup('symmetric', 1, { relayRate: 20_000 });
    const l = lhs[0];
    start(net, a);
    traffic(net, a, b, 2000, 50);
    const big = 'x'.repeat(1200);
    const before = texts(b).length;
    for (let i = 0; i < 200; i++) send(net, a, '10.0.0.1', '10.0.0.2', big);
    net.deliver();
    const got = texts(b).length - before;
    expect(l.engine.stats().lighthouse.relayRateLimited).toBeGreaterThan(0);
    expect(got).toBeLessThan(200);
    expect(got).toBeGreaterThan(0);
  });
});

describe('lighthouse extension messages', () => {
  it('LOOKUP, CANDIDATES, RELAY and RELAYED round-trip; truncated or oversized ones are rejected', async () => {
    const { parseExtension, writeExtension, EXT_RELAY, EXT_RELAYED, MAX_ADDRESSES } = await import('../../src/core/extension.js');
    const key = new Uint8Array(32).map((_, i) => i + 1);
    const buf = new Uint8Array(4096);
    const addr = new Uint8Array(16).fill(7);
    const msgs = [
      { type: EXT_LOOKUP, key },
      { type: EXT_CANDIDATES, answer: true, key, addresses: [{ addr, port: 51820 }] },
      { type: EXT_CANDIDATES, answer: false, key, addresses: [] },
      { type: EXT_RELAY, key, data: new Uint8Array([4, 0, 0, 0, 9, 9]) },
      { type: EXT_RELAYED, key, data: new Uint8Array(1500).fill(3) },
    ] as const;
    for (const m of msgs) {
      const n = writeExtension(buf, 0, m as never);
      const back = parseExtension(buf, 0, n + 13); // transport padding after the body is ignored
      expect(back).toEqual(m);
      for (const cut of [1, 2, 3, n - 1]) if (cut < n) expect(parseExtension(buf, 0, cut)).toBeNull();
    }
    // a RELAY whose length runs past the payload, or is zero
    const n = writeExtension(buf, 0, { type: EXT_RELAY, key, data: new Uint8Array(10) });
    expect(parseExtension(buf, 0, n - 1)).toBeNull();
    buf[34] = 0;
    buf[35] = 0;
    expect(parseExtension(buf, 0, n)).toBeNull();
    // more addresses than allowed
    writeExtension(buf, 0, { type: EXT_CANDIDATES, answer: true, key, addresses: [] });
    buf[35] = MAX_ADDRESSES + 1;
    expect(parseExtension(buf, 0, 4000)).toBeNull();
  });
});

describe('hostile members', () => {
  it('an authenticated member sending 3,000 random control messages (any type, random keys, addresses, relay payloads) crashes nobody; the others keep working', async () => {
    const { parseExtension, EXT_HELLO, EXT_PATH_CHALLENGE, EXT_PATH_RESPONSE, EXT_ADDRESSES, EXT_RELAY, EXT_RELAYED, MAX_ADDRESSES } = await import(
      '../../src/core/extension.js'
    );
    const { seeded } = await import('./support/pair.js');
    // raw bytes first: the parser returns a message or null, never throws
    const rnd = seeded(7);
    const buf = new Uint8Array(1500);
    for (let i = 0; i < 20_000; i++) {
      const n = Math.floor(rnd() * 300);
      for (let k = 0; k < n; k++) buf[k] = Math.floor(rnd() * 256);
      buf[0] = 0x0b;
      buf[1] = Math.floor(rnd() * 10);
      expect(() => parseExtension(buf, 0, n)).not.toThrow();
    }
    // then messages that parse, sent inside real sessions by a member gone rogue
    const { net, lhs, a, b } = setup('cone');
    const l = lhs[0];
    start(net, a);
    traffic(net, a, b, 300);
    const keys = [l.publicKey, a.publicKey, b.publicKey, new Uint8Array(32), Uint8Array.from({ length: 32 }, () => Math.floor(rnd() * 256))];
    // IPv4 (unspecified, loopback, multicast, private, any) or any 16 bytes
    const v4 = (x: number[]) => Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...x]);
    const specials = [v4([0, 0, 0, 0]), v4([127, 0, 0, 1]), v4([224, 0, 0, 1]), v4([10, 0, 0, 2]), v4([198, 51, 100, 7])];
    const addr = () => (rnd() < 0.5 ? specials[Math.floor(rnd() * specials.length)] : Uint8Array.from({ length: 16 }, () => Math.floor(rnd() * 256)));
    const rogue = a.engine as unknown as { sendExtension(peer: unknown, path: unknown, m: unknown, now: number): boolean };
    for (let i = 0; i < 3000; i++) {
      const to = rnd() < 0.6 ? l : b;
      const peer = a.engine.getPeer(to.publicKey)!;
      const path = peer.endpoint.path;
      if (!path) continue;
      const type = [EXT_HELLO, EXT_PATH_CHALLENGE, EXT_PATH_RESPONSE, EXT_ADDRESSES, EXT_LOOKUP, EXT_CANDIDATES, EXT_RELAY, EXT_RELAYED][Math.floor(rnd() * 8)];
      const key = keys[Math.floor(rnd() * keys.length)];
      const addresses = Array.from({ length: Math.floor(rnd() * (MAX_ADDRESSES + 1)) }, () => ({ addr: addr(), port: Math.floor(rnd() * 65536) }));
      const data = Uint8Array.from({ length: 1 + Math.floor(rnd() * 200) }, () => Math.floor(rnd() * 256));
      if (rnd() < 0.5 && data.length >= 32) data.set([4, 0, 0, 0], 0); // looks like transport data
      const m =
        type === EXT_HELLO
          ? { type, reply: rnd() < 0.5, version: Math.floor(rnd() * 256) }
          : type === EXT_PATH_CHALLENGE || type === EXT_PATH_RESPONSE
            ? { type, token: data.subarray(0, 8).length === 8 ? data.slice(0, 8) : new Uint8Array(8) }
            : type === EXT_ADDRESSES
              ? { type, addresses }
              : type === EXT_LOOKUP
                ? { type, key }
                : type === EXT_CANDIDATES
                  ? { type, answer: rnd() < 0.5, key, addresses }
                  : type === EXT_RELAY || type === EXT_RELAYED
                    ? { type, key, data }
                    : null;
      expect(() => rogue.sendExtension(peer, path, m, net.now)).not.toThrow();
      if (i % 50 === 0) {
        expect(() => net.deliver()).not.toThrow();
        expect(() => net.advance(5)).not.toThrow();
      }
    }
    expect(() => net.deliver()).not.toThrow();
    expect(() => net.advance(3000)).not.toThrow();
    // the lighthouse still serves: B (who did nothing wrong) still talks to it and to A
    const before = texts(b).length;
    const gap = traffic(net, a, b, 1000);
    expect(texts(b).length).toBeGreaterThan(before);
    expect(gap).toBeLessThan(1000);
    expect(peerOf(b, l).keypairs.current).not.toBeNull();
  });
});
