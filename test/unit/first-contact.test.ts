/**
 * First contact without a timer wait: packets waiting for a peer go out as soon as anything that
 * can carry them appears — the peer registering with a lighthouse after we asked for it, or the
 * lighthouse itself coming up after us — not at the next handshake retry (REKEY_TIMEOUT, 5 s).
 *
 *   A-lan ─ NATA ─┐                 ┌─ NATB ─ B-lan
 *                 └──── L1 (lighthouse) ────┘
 *
 * "Down" is modelled by blackholing a host's own address: nothing it sends leaves, nothing reaches it.
 */
import { describe, expect, it } from 'vitest';
import { FakeNat, ipPacket, lighthouseAndMembers, Net, type Node } from './support/pair.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

function peerOf(n: Node, other: Node) {
  return n.engine.getPeer(other.publicKey)!;
}

function build(kind: 'cone' | 'symmetric') {
  const net = new Net();
  const l = net.add('L1', { isLighthouse: true });
  const a = net.add('A-lan');
  const b = net.add('B-lan');
  a.behind(new FakeNat(net, 'NATA', kind));
  b.behind(new FakeNat(net, 'NATB', kind));
  lighthouseAndMembers(net, l, a, b);
  return { net, l, a, b };
}

/** `keymesh up` of a member: it registers with its lighthouse at once (a keepalive every 10 s). */
function up(net: Net, m: Node, l: Node): void {
  net.blackholes.delete(m.path.id);
  m.engine.setPersistentKeepalive(peerOf(m, l), 10, net.now);
}

/** A pings B every `step` ms for `ms` ms; returns when B first got one and A first got an answer (B answers each). */
function ping(net: Net, a: Node, b: Node, ms: number, step = 10): { bGotAt: number | null; aGotAt: number | null } {
  let bGotAt: number | null = null;
  let aGotAt: number | null = null;
  for (let t = 0; t < ms; t += step) {
    const nb = b.tun.length;
    a.engine.handleTunPacket(ipPacket('10.0.0.1', '10.0.0.2', enc.encode(`ping ${t}`)), net.now);
    net.deliver();
    // B answers whatever reached it
    for (const p of b.tun.slice(nb)) b.engine.handleTunPacket(ipPacket('10.0.0.2', '10.0.0.1', enc.encode(`pong ${dec.decode(p.subarray(20))}`)), net.now);
    net.deliver();
    if (bGotAt === null && b.tun.length > 0) bGotAt = net.now;
    if (aGotAt === null && a.tun.length > 0) aGotAt = net.now;
    if (aGotAt !== null && t > 200) break;
    net.advance(step);
  }
  return { bGotAt, aGotAt };
}

describe('first contact without waiting for a retry timer', () => {
  for (const kind of ['cone', 'symmetric'] as const) {
    it(`${kind} NATs: B comes up while A is already sending to it; A's answer comes within 0.5 s of B's up`, () => {
      const { net, l, a, b } = build(kind);
      net.blackholes.add(b.path.id); // B is down
      up(net, a, l);
      net.deliver();
      net.advance(50);
      expect(peerOf(a, l).keypairs.current, 'A registered').not.toBeNull();
      // A sends to B for a while: its lookup finds nothing, its initiation goes nowhere
      const before = ping(net, a, b, 1500);
      expect(before.bGotAt).toBeNull();
      const upAt = net.now;
      up(net, b, l);
      const r = ping(net, a, b, 6000);
      expect(r.aGotAt, 'A got an answer').not.toBeNull();
      console.log(`${kind}: B up → A's first answer ${r.aGotAt! - upAt} ms`);
      expect(r.aGotAt! - upAt).toBeLessThanOrEqual(500);
    });
  }

  it('the lighthouse comes up after both members, A already sending: the first answer follows the lighthouse within 0.5 s', () => {
    const { net, l, a, b } = build('cone');
    net.blackholes.add(l.path.id); // the lighthouse is down
    up(net, a, l);
    up(net, b, l);
    net.blackholes.add(l.path.id); // (up() opened the member's own path only)
    const before = ping(net, a, b, 1200);
    expect(before.bGotAt).toBeNull();
    const upAt = net.now;
    net.blackholes.delete(l.path.id);
    const r = ping(net, a, b, 12_000);
    expect(r.aGotAt, 'A got an answer').not.toBeNull();
    console.log(`lighthouse up → A's first answer ${r.aGotAt! - upAt} ms`);
    // the members' own registration handshakes retry on their timers (REKEY_TIMEOUT): the
    // bound is from the moment both members hold a session with the lighthouse again
    const registeredAt = Math.max(registered(a, l), registered(b, l));
    expect(r.aGotAt! - registeredAt).toBeLessThanOrEqual(500);
  });

  it('all nodes start at the same moment and A sends at once: answered within 1 s', () => {
    for (const kind of ['cone', 'symmetric'] as const) {
      const { net, l, a, b } = build(kind);
      const t0 = net.now;
      up(net, a, l);
      up(net, b, l);
      const r = ping(net, a, b, 3000);
      expect(r.aGotAt, `${kind}: A got an answer`).not.toBeNull();
      console.log(`${kind}: all up at once → A's first answer ${r.aGotAt! - t0} ms`);
      expect(r.aGotAt! - t0).toBeLessThanOrEqual(1000);
    }
  });
});

/** When m's current session with the lighthouse was made. */
function registered(m: Node, l: Node): number {
  return peerOf(m, l).lastHandshake;
}
