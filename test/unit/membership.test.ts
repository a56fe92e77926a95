/**
 * Mesh membership on the fake network with a fake clock (membership.ts, directory.ts): members
 * whose only configured peer is a lighthouse reach each other by overlay address; admission of
 * unknown keys by certificate, with every refusal counted and nothing kept; a flood of pending
 * handshakes; revocation spreading and ending sessions; expiry; idle members forgotten; two
 * lighthouses with one lost.
 */
import { describe, expect, it } from 'vitest';
import { type CaCert, type NodeCert } from '../../src/core/cert.js';
import { nobleCrypto } from '../../src/core/crypto.js';
import { CertAuthority } from '../../src/core/mesh-authority.js';
import { MAX_PENDING, PENDING_TIMEOUT } from '../../src/core/membership.js';
import { ipBytes, ipPacket, makePath, Net, random, type Node } from './support/pair.js';
import { DAY, enc, got, member, OFFSET, reach, send, setup, T0, TestCa, type Member } from './support/mesh.js';

describe('mesh membership: members that list only a lighthouse', () => {
  it('a lighthouse admits members by certificate, and its own AllowedIPs come from its certificate', () => {
    const { net, lhs, members } = setup(2);
    const [l] = lhs;
    for (const m of members) {
      const p = l.node.engine.getPeer(m.node.publicKey)!;
      expect(p.membership).toBe('certified');
      expect(p.cert?.name).toBe(`m${m.i}`);
      expect(l.node.engine.lookupRoute(ipBytes(m.v4))).toBe(p);
      expect(l.node.engine.lookupRoute(ipBytes(m.v6))).toBe(p);
      // the member routes the lighthouse's overlay addresses to it, though its config gave none
      expect(m.node.engine.lookupRoute(ipBytes(l.v4))).toBe(m.node.engine.getPeer(l.node.publicKey));
    }
    expect(l.node.engine.stats().mesh!.admitted).toBe(2);
    expect(reach(net, members[0], l, 'to the lighthouse')).toBe(true);
  });

  it('20 members enrolled one by one: each reaches every other by overlay address, both families, with no member configured', () => {
    const net = new Net();
    const ca = new TestCa();
    const l = member(net, ca, 'lh', 250, [], { isLighthouse: true });
    const members: Member[] = [];
    for (let k = 1; k <= 20; k++) {
      const m = member(net, ca, `m${k}`, k, [l]);
      net.advance(5);
      // the newcomer reaches everyone already there, and is reached by them, at once
      for (const o of members) {
        expect(reach(net, m, o, `${k}→${o.i}`), `m${k} → m${o.i}`).toBe(true);
        expect(reach(net, o, m, `${o.i}→${k} v6`, true), `m${o.i} → m${k} (IPv6)`).toBe(true);
      }
      members.push(m);
    }
    for (const a of members) for (const b of members) if (a !== b) expect(reach(net, a, b, `all ${a.i}→${b.i}`)).toBe(true);
    for (const m of members) {
      expect(m.node.engine.listPeers().filter((p) => p.membership === 'static').length).toBe(1); // the lighthouse only
      expect(m.node.engine.listPeers().filter((p) => p.membership === 'certified').length).toBe(19);
    }
  });

  it('the first packet to a new member goes without waiting on a timer, and packets sent before its lookup is answered are not lost', () => {
    const { net, members } = setup(2);
    const [a, b] = members;
    const t = net.now;
    for (let k = 0; k < 3; k++) send(net, a, b, `early ${k}`);
    net.deliver();
    expect(net.now).toBe(t);
    for (let k = 0; k < 3; k++) expect(got(b, `early ${k}`)).toBe(true);
  });

  it('a member comes up before its lighthouse answers: its packets wait and go when the lighthouse session completes', () => {
    const net = new Net();
    const ca = new TestCa();
    const l = member(net, ca, 'lh', 250, [], { isLighthouse: true });
    const a = member(net, ca, 'm1', 1, [l]);
    net.advance(20);
    net.blackholes.add(l.node.path.id);
    const b = member(net, ca, 'm2', 2, [l]);
    send(net, b, a, 'while the lighthouse is away');
    net.deliver();
    expect(got(a, 'while the lighthouse is away')).toBe(false);
    net.blackholes.clear();
    net.advance(5_500); // b's handshake retry with the lighthouse
    expect(got(a, 'while the lighthouse is away')).toBe(true);
  });

  it('two lighthouses, one lost: members enrolled meanwhile still find each other through the other', () => {
    const net = new Net();
    const ca = new TestCa();
    const lhs = [member(net, ca, 'lh1', 250, [], { isLighthouse: true }), member(net, ca, 'lh2', 249, [], { isLighthouse: true })];
    net.blackholes.add(lhs[0].node.path.id);
    const ms = [1, 2, 3].map((k) => member(net, ca, `m${k}`, k, lhs));
    net.advance(50);
    for (const a of ms) for (const b of ms) if (a !== b) expect(reach(net, a, b, `${a.i}→${b.i}`), `m${a.i} → m${b.i}`).toBe(true);
    expect(lhs[1].node.engine.stats().lighthouse.lookupsAnswered).toBeGreaterThan(0);
  });
});

/** An engine that completes a handshake with the lighthouse from an unknown key and shows `cert` (or nothing). */
function stranger(net: Net, ca: TestCa | null, l: Member, cert?: (n: Node) => NodeCert | null) {
  const node = net.add(`stranger${net.nodes.size}`, { wallClockOffset: OFFSET });
  if (ca) {
    const c = cert ? cert(node) : ca.sign(node.publicKey, 'stranger', 77);
    if (c) node.engine.setMeshAuthority(new CertAuthority(ca.ca, c), net.now);
  }
  node.engine.upsertPeer({ publicKey: l.node.publicKey, endpoint: l.node.path, lighthouse: true }, net.now);
  node.engine.setPersistentKeepalive(node.engine.getPeer(l.node.publicKey)!, 10, net.now);
  net.deliver();
  return node;
}

describe('mesh membership: admission', () => {
  const refusals: Array<[string, (ca: TestCa, other: TestCa, n: Node) => NodeCert]> = [
    ['unknown-ca', (_ca, other, n) => other.sign(n.publicKey, 'x', 9)],
    ['key-mismatch', (ca) => ca.sign(nobleCrypto.publicKey(nobleCrypto.generatePrivateKey(random)), 'x', 9)],
    ['expired', (ca, _o, n) => ca.sign(n.publicKey, 'x', 9, { notBefore: T0 - 30 * DAY, notAfter: T0 - DAY })],
    ['not-yet-valid', (ca, _o, n) => ca.sign(n.publicKey, 'x', 9, { notBefore: T0 + DAY, notAfter: T0 + 30 * DAY })],
  ];
  for (const [reason, make] of refusals) {
    it(`a certificate that is ${reason} is refused, counted, and nothing of the peer is kept`, () => {
      const { net, ca, lhs } = setup(0);
      const other = new TestCa('another mesh');
      // the stranger's own authority is built on a valid certificate of its CA; what it shows is `make`'s
      const s = stranger(net, ca, lhs[0], (n) => {
        const shown = make(ca, other, n);
        return { ...ca.sign(n.publicKey, 'x', 9), bytes: shown.bytes, fingerprint: shown.fingerprint } as NodeCert;
      });
      net.advance(10);
      const le = lhs[0].node.engine;
      expect(le.getPeer(s.publicKey)).toBeUndefined();
      expect(le.stats().mesh!.refused[reason]).toBe(1);
      expect(le.stats().mesh!.admitted).toBe(0);
      expect(le.lookupRoute(ipBytes('10.99.0.9'))).toBeUndefined();
    });
  }

  it('a tampered certificate is refused (every byte position flipped in turn never admits)', () => {
    const { net, ca, lhs } = setup(0);
    const le = lhs[0].node.engine;
    let n = 0;
    for (let at = 0; at < 200; at += 7) {
      const s = stranger(net, ca, lhs[0], (node) => {
        const good = ca.sign(node.publicKey, 'x', 9);
        const bad = good.bytes.slice();
        bad[at % bad.length] ^= 0x01;
        return { ...good, bytes: bad } as NodeCert;
      });
      net.advance(10);
      expect(le.getPeer(s.publicKey)?.membership ?? 'gone').not.toBe('certified');
      n++;
    }
    const refused = Object.values(le.stats().mesh!.refused).reduce((x, y) => x + y, 0);
    expect(refused).toBe(n);
  });

  it('a pending peer carries nothing but its certificate, and is forgotten after PENDING_TIMEOUT without one', () => {
    const { net, lhs, members } = setup(1);
    const le = lhs[0].node.engine;
    // a WireGuard node without a CA: its handshake completes, its packets are not admitted
    const s = stranger(net, null, lhs[0]);
    s.engine.upsertPeer({ publicKey: lhs[0].node.publicKey, allowedIps: [{ addr: ipBytes('10.99.0.0'), cidr: 16 }] }, net.now);
    s.engine.handleTunPacket(ipPacket('10.99.0.200', lhs[0].v4, enc.encode('let me in')), net.now);
    net.deliver();
    expect(le.getPeer(s.publicKey)?.membership).toBe('pending');
    expect(got(lhs[0], 'let me in')).toBe(false);
    expect(le.stats().drops.notAdmitted).toBeGreaterThan(0);
    net.advance(PENDING_TIMEOUT + 100);
    expect(le.getPeer(s.publicKey)).toBeUndefined();
    expect(le.stats().mesh!.pendingExpired).toBe(1);
    // the members were never disturbed
    expect(reach(net, members[0], lhs[0], 'still fine')).toBe(true);
  });

  it(`a flood of handshakes from unknown keys: pending peers stay bounded (≤ ${MAX_PENDING}), rate-limited per source, and members keep working`, () => {
    const { net, lhs, members } = setup(2);
    const le = lhs[0].node.engine;
    // 40 keys from one host, then 600 from many hosts
    const attacker = makePath('attacker');
    net.paths.set(attacker.id, attacker);
    let sent = 0;
    const flood = (from: () => string, count: number) => {
      for (let k = 0; k < count; k++) {
        const n = net.add(`f${sent++}`, { wallClockOffset: OFFSET });
        n.engine.upsertPeer({ publicKey: lhs[0].node.publicKey, endpoint: lhs[0].node.path }, net.now);
        const id = from();
        n.moveTo(net.paths.get(id) ?? makePath(id));
        n.engine.initiateHandshake(n.engine.getPeer(lhs[0].node.publicKey)!, net.now);
      }
      net.deliver();
    };
    const before = le.stats().mesh!.pending;
    flood(() => 'one-host', 40);
    const m = le.stats().mesh!;
    expect(m.pending - before).toBe(8); // PENDING_BURST
    expect(m.pendingRateLimited).toBeGreaterThan(0);
    flood(() => `h${sent}`, MAX_PENDING + 100);
    expect(le.listPeers().filter((p) => p.membership === 'pending').length).toBeLessThanOrEqual(MAX_PENDING);
    expect(le.stats().mesh!.pendingFull).toBeGreaterThan(0);
    expect(reach(net, members[0], members[1], 'through the flood')).toBe(true);
    net.advance(PENDING_TIMEOUT + 100);
    expect(le.listPeers().filter((p) => p.membership === 'pending').length).toBe(0);
  });
});

describe('mesh membership: revocation, expiry, idle', () => {
  it('a revocation list given to the lighthouse reaches every member of a 20-node mesh, ends the revoked member’s sessions everywhere at once, and it cannot come back', () => {
    const { net, ca, lhs, members } = setup(19);
    const [bad, ...good] = members;
    for (const g of good) expect(reach(net, g, bad, `before ${g.i}`)).toBe(true);
    // members also hold sessions among themselves: the list must reach those who met only each other
    for (let k = 0; k + 1 < good.length; k++) expect(reach(net, good[k], good[k + 1], `pair ${k}`)).toBe(true);
    const crl = ca.crl(bad.cert.fingerprint);
    const t = net.now;
    expect(lhs[0].node.engine.offerRevocations(crl.bytes, net.now)).toBe('newer');
    net.deliver();
    expect(net.now).toBe(t); // gossip, not timers
    for (const n of [lhs[0], ...good]) {
      const e = n.node.engine;
      expect(e.stats().mesh!.crlAdopted, n.node.name).toBe(1);
      expect(e.getPeer(bad.node.publicKey), n.node.name).toBeUndefined();
    }
    // it tries again (its sessions run out, it sends, it re-handshakes): refused everywhere
    net.advance(130_000);
    for (const g of good) expect(reach(net, bad, g, `after ${g.i}`)).toBe(false);
    net.advance(30_000);
    for (const g of good) expect(got(g, `after ${g.i}`)).toBe(false);
    for (const g of good) expect(g.node.engine.getPeer(bad.node.publicKey)?.membership ?? 'gone').not.toBe('certified');
    expect(lhs[0].node.engine.getPeer(bad.node.publicKey)?.membership ?? 'gone').not.toBe('certified');
    expect(lhs[0].node.engine.stats().mesh!.refused.revoked).toBeGreaterThan(0);
    // the others still reach each other
    expect(reach(net, good[0], good[1], 'the rest')).toBe(true);
    // an old list changes nothing
    expect(lhs[0].node.engine.offerRevocations(crl.bytes, net.now)).toBe('old');
  });

  it('a list signed by another CA is refused', () => {
    const { net, lhs, members } = setup(1);
    const other = new TestCa('other');
    expect(lhs[0].node.engine.offerRevocations(other.crl(members[0].cert.fingerprint).bytes, net.now)).toBe('unknown-ca');
    expect(lhs[0].node.engine.getPeer(members[0].node.publicKey)).toBeDefined();
  });

  it('a member whose certificate expires is forgotten by all at its expiry (fake clock), and refused after', () => {
    const net = new Net();
    const ca = new TestCa();
    const l = member(net, ca, 'lh', 250, [], { isLighthouse: true });
    const a = member(net, ca, 'm1', 1, [l]);
    const b = member(net, ca, 'm2', 2, [l], { notAfter: T0 + 120 });
    net.advance(20);
    expect(reach(net, a, b, 'before expiry')).toBe(true);
    net.advance(121_000);
    expect(a.node.engine.getPeer(b.node.publicKey)).toBeUndefined();
    expect(l.node.engine.getPeer(b.node.publicKey)?.membership ?? 'gone').not.toBe('certified');
    expect(a.node.engine.stats().mesh!.expired).toBe(1);
    net.advance(30_000);
    expect(reach(net, b, a, 'after expiry')).toBe(false);
  });

  it('a certified peer idle for the configured time is forgotten, and found again by the next packet', () => {
    const net = new Net();
    const ca = new TestCa();
    const l = member(net, ca, 'lh', 250, [], { isLighthouse: true });
    const a = member(net, ca, 'm1', 1, [l], { idle: 60_000 });
    const b = member(net, ca, 'm2', 2, [l], { idle: 60_000 });
    net.advance(20);
    expect(reach(net, a, b, 'hello')).toBe(true);
    net.advance(30_000);
    expect(a.node.engine.getPeer(b.node.publicKey)?.membership).toBe('certified');
    net.advance(200_000);
    expect(a.node.engine.getPeer(b.node.publicKey)).toBeUndefined();
    expect(a.node.engine.stats().mesh!.forgotten).toBe(1);
    // the lighthouse session is kept alive by keepalives: never forgotten
    expect(l.node.engine.getPeer(a.node.publicKey)?.membership).toBe('certified');
    expect(reach(net, a, b, 'again')).toBe(true);
  });

  it('a renewed certificate (reload) takes the old one’s place at every peer without a new session', () => {
    const { net, ca, lhs, members } = setup(2);
    const [a, b] = members;
    expect(reach(net, a, b, 'before')).toBe(true);
    const handshakes = b.node.engine.getPeer(a.node.publicKey)!.handshakesCompleted;
    const renewed = ca.sign(a.node.publicKey, 'm1', 1, { notAfter: T0 + 730 * DAY });
    a.node.engine.setMeshAuthority(new CertAuthority(ca.ca, renewed), net.now);
    net.deliver();
    for (const n of [b, lhs[0]]) expect(n.node.engine.getPeer(a.node.publicKey)!.cert!.fingerprint, n.node.name).toBe(renewed.fingerprint);
    expect(b.node.engine.getPeer(a.node.publicKey)!.handshakesCompleted).toBe(handshakes);
    expect(reach(net, a, b, 'after')).toBe(true);
  });
});
