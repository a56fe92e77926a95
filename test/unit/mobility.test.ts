/**
 * The endpoint cache between two keymesh engines, driven with a fake clock over an in-memory
 * network that can move hosts and inject an attacker: discovery over the extension channel, path
 * validation before roaming, make-before-break duplication within the anti-amplification budget,
 * and hijack attempts.
 */
import { describe, expect, it } from 'vitest';
import { AMPLIFICATION_FACTOR, choosePath, HOLD_DOWN, isRelay, MAX_CHALLENGES, PathEntry, RTT_SWITCH_FRACTION, RTT_SWITCH_MARGIN } from '../../src/core/endpoint.js';
import { Plpmtud } from '../../src/core/plpmtud.js';
import { connect, fakeAddr, ipBytes, ipPacket, makePath, Net, type Node } from './support/pair.js';

const enc = new TextEncoder();

function setup() {
  const net = new Net();
  const a = net.add('A');
  const b = net.add('B');
  connect(a, [['10.0.0.1', 32]], b, [['10.0.0.2', 32]], { now: net.now });
  return { net, a, b };
}

function send(net: Net, from: Node, src: string, dst: string, text: string): void {
  from.engine.handleTunPacket(ipPacket(src, dst, enc.encode(text)), net.now);
}

function established() {
  const s = setup();
  send(s.net, s.a, '10.0.0.1', '10.0.0.2', 'hello');
  s.net.deliver();
  return s;
}

describe('keymesh peers discover each other', () => {
  it('HELLO on the extension channel after the handshake marks both sides', () => {
    const { a, b } = established();
    expect(a.engine.getPeer(b.publicKey)!.endpoint.speaksKeymesh).toBe(true);
    expect(b.engine.getPeer(a.publicKey)!.endpoint.speaksKeymesh).toBe(true);
    expect(a.events.some((e) => e.type === 'peer-speaks-keymesh')).toBe(true);
    // extension messages are never written to the TUN device
    expect(b.tun.map((p) => p[0] >> 4)).toEqual([4]);
  });
});

describe('roaming needs proof', () => {
  it('the client moves: the server validates the new path in one round trip, then switches', () => {
    const { net, a, b } = established();
    const pb = b.engine.getPeer(a.publicKey)!;
    const moved = makePath('A-wifi', 40000);
    net.now += 1000;
    a.moveTo(moved);
    send(net, a, '10.0.0.1', '10.0.0.2', 'from the new network');
    // first datagram reaches B from the new address: delivered, but the path is only a candidate
    const first = net.queue.shift()!;
    expect(b.engine.handleDatagram(first.data, moved, net.now)).toBe('data');
    expect(pb.endpoint.path?.id).toBe('A:51820');
    expect(pb.endpoint.entryFor(moved)?.state).toBe('validating');
    // B → A traffic meanwhile goes to the old path and a copy to the candidate
    send(net, b, '10.0.0.2', '10.0.0.1', 'reply during validation');
    const toOld = net.queue.filter((w) => w.to === 'A:51820').length;
    const toNew = net.queue.filter((w) => w.to === moved.id).length;
    expect(toOld).toBeGreaterThan(0);
    expect(toNew).toBeGreaterThan(0); // the challenge and the duplicate
    net.deliver();
    expect(pb.endpoint.path?.id).toBe(moved.id);
    expect(b.events.some((e) => e.type === 'endpoint-changed' && e.to.id === moved.id && e.reason === 'path validated')).toBe(true);
    expect(new TextDecoder().decode(a.tun[a.tun.length - 1].subarray(20))).toBe('reply during validation');
    expect(pb.endpoint.active!.srtt).not.toBeNull();
  });

  it('the server moves while the client is idle: it announces itself and the client follows after validating', () => {
    const { net, a, b } = established();
    const pa = a.engine.getPeer(b.publicKey)!;
    net.now += 5000;
    const moved = makePath('B-new', 51820);
    b.moveTo(moved);
    b.engine.localAddressesChanged(net.now);
    net.deliver();
    expect(pa.endpoint.path?.id).toBe(moved.id);
    send(net, a, '10.0.0.1', '10.0.0.2', 'to the new server address');
    net.deliver();
    expect(new TextDecoder().decode(b.tun[b.tun.length - 1].subarray(20))).toBe('to the new server address');
  });

  it('a raced copy of a fresh packet from an attacker’s address does not move the session', () => {
    const { net, a, b } = established();
    const pb = b.engine.getPeer(a.publicKey)!;
    const attacker = makePath('M', 6666);
    net.paths.set(attacker.id, attacker);
    let toAttacker = 0;
    let fromAttacker = 0;
    for (let i = 0; i < 20; i++) {
      net.now += 100;
      send(net, a, '10.0.0.1', '10.0.0.2', `fresh ${i}`);
      const w = net.queue.shift()!;
      // the attacker's copy arrives first, from its own address
      fromAttacker += w.data.length;
      b.engine.handleDatagram(w.data.slice(), attacker, net.now);
      // the original arrives second: a replay now
      b.engine.handleDatagram(w.data, a.path, net.now);
      send(net, b, '10.0.0.2', '10.0.0.1', `reply ${i}`);
      for (const q of net.queue) if (q.to === attacker.id) toAttacker += q.data.length;
      net.deliver((q) => q.to !== attacker.id); // the attacker cannot answer challenges
      net.advance(300);
    }
    expect(pb.endpoint.path?.id).toBe(a.path.id);
    expect(b.events.some((e) => e.type === 'endpoint-changed' && e.to.id === attacker.id)).toBe(false);
    expect(toAttacker).toBeLessThanOrEqual(AMPLIFICATION_FACTOR * fromAttacker);
    // the honest host still gets its replies
    expect(a.tun.length).toBeGreaterThanOrEqual(20);
  });

  it('replayed old packets from another address are dropped before they can even start a challenge', () => {
    const { net, a, b } = established();
    send(net, a, '10.0.0.1', '10.0.0.2', 'captured');
    const captured = net.queue[0].data.slice();
    net.deliver();
    const attacker = makePath('M', 6666);
    const pb = b.engine.getPeer(a.publicKey)!;
    expect(b.engine.handleDatagram(captured, attacker, net.now)).toBe('replay');
    expect(pb.endpoint.entryFor(attacker)).toBeUndefined();
    expect(net.queue.filter((w) => w.to === attacker.id)).toHaveLength(0);
  });

  it('an unanswered candidate is retried, then marked failed', () => {
    const { net, a, b } = established();
    const pb = b.engine.getPeer(a.publicKey)!;
    const attacker = makePath('M', 6666);
    net.paths.set(attacker.id, attacker);
    send(net, a, '10.0.0.1', '10.0.0.2', 'copied');
    const w = net.queue.shift()!;
    b.engine.handleDatagram(w.data, attacker, net.now);
    let challenges = net.queue.filter((q) => q.to === attacker.id).length;
    net.queue = net.queue.filter((q) => q.to !== attacker.id);
    for (let i = 0; i < 10; i++) {
      net.advance(2000, false);
      challenges += net.queue.filter((q) => q.to === attacker.id).length;
      net.queue = [];
    }
    expect(pb.endpoint.entryFor(attacker)!.state).toBe('failed');
    // within budget: a 48-byte challenge costs 48 bytes; the copy brought ≥ 48 × … bytes
    expect(challenges).toBeLessThanOrEqual(MAX_CHALLENGES);
    expect(challenges).toBeGreaterThanOrEqual(1);
  });
});

describe('multihoming and failover', () => {
  it('announced addresses become warm spares; when the active path goes silent, traffic fails over within 500 ms', () => {
    const net = new Net();
    const a = net.add('A');
    const b = net.add('B');
    connect(a, [['10.0.0.1', 32]], b, [['10.0.0.2', 32]], { now: net.now });
    a.addAddress(makePath('A6'));
    b.addAddress(makePath('B6'));
    send(net, a, '10.0.0.1', '10.0.0.2', 'hello');
    net.deliver();
    net.advance(1500);
    const pa = a.engine.getPeer(b.publicKey)!;
    const pb = b.engine.getPeer(a.publicKey)!;
    expect(pa.endpoint.path?.id).toBe('B:51820');
    expect(pa.endpoint.entryFor(makePath('B6'))?.state).toBe('validated');
    expect(pb.endpoint.entryFor(makePath('A6'))?.state).toBe('validated');
    // steady two-way traffic, 10 ms apart; at t0 the IPv4 path silently dies
    const t0 = net.now;
    net.blackholes.add('B:51820');
    net.blackholes.add('A:51820');
    let lastDelivered = t0;
    let maxGap = 0;
    for (let i = 0; i < 100; i++) {
      const before = b.tun.length + a.tun.length;
      send(net, a, '10.0.0.1', '10.0.0.2', `a${i}`);
      send(net, b, '10.0.0.2', '10.0.0.1', `b${i}`);
      net.deliver();
      if (b.tun.length + a.tun.length - before === 2) {
        maxGap = Math.max(maxGap, net.now - lastDelivered);
        lastDelivered = net.now;
      }
      net.advance(10);
    }
    expect(pa.endpoint.path?.id).toBe('B6:51820');
    expect(pb.endpoint.path?.id).toBe('A6:51820');
    expect(maxGap).toBeLessThanOrEqual(500);
    expect(a.events.some((e) => e.type === 'endpoint-changed' && e.reason.startsWith('active path went silent'))).toBe(true);
  });

  it('an address announced by the peer is only challenged (a few small packets), never flooded', () => {
    const net = new Net();
    const a = net.add('A');
    const b = net.add('B');
    connect(a, [['10.0.0.1', 32]], b, [['10.0.0.2', 32]], { now: net.now });
    // B claims an address that is not its own (a victim's)
    const victim = makePath('V6');
    net.paths.set(victim.id, victim);
    b.engine.setLocalAddresses([{ addr: fakeAddr(b.path), port: 51820 }, { addr: fakeAddr(victim), port: 51820 }], net.now);
    send(net, a, '10.0.0.1', '10.0.0.2', 'hello');
    let toVictim = 0;
    for (let i = 0; i < 50; i++) {
      const count = (w: { to: string; data: Uint8Array }) => {
        if (w.to === victim.id) toVictim += w.data.length;
        return true;
      };
      net.deliver(count);
      send(net, a, '10.0.0.1', '10.0.0.2', `x${i}`);
      net.deliver(count);
      net.advance(200, false);
      net.deliver(count);
    }
    expect(toVictim).toBeGreaterThan(0);
    expect(toVictim).toBeLessThanOrEqual(4 * 48);
    expect(a.engine.getPeer(b.publicKey)!.endpoint.entryFor(victim)?.state).toBe('failed');
  });
});


describe('path choice', () => {
  /**
   * Brute force: every candidate that satisfies every rule, direct ones before relays, then the
   * minimum by (cost, -lastReceive), where the cost is the RTT, or for a path whose completed MTU
   * search found clearly less (64 bytes) than the best of its kind, the RTT ÷ 0.75 + 2.
   */
  function reference(entries: PathEntry[], active: PathEntry | null, dead: boolean, now: number): PathEntry | null {
    const size = (e: PathEntry) => (e.mtu && e.mtu.state === 'complete' ? e.mtu.current : null);
    const top = (relay: boolean) => Math.max(0, ...entries.filter((e) => isRelay(e.path) === relay && size(e) !== null).map((e) => size(e)!));
    const cost = (e: PathEntry) => (size(e) !== null && size(e)! < top(isRelay(e.path)) - 64 ? e.srtt! / 0.75 + 2 : e.srtt!);
    let ok = entries.filter(
      (e) => e !== active && e.state === 'validated' && e.probeMisses === 0 && e.srtt !== null && (dead || now - e.abandonedAt >= HOLD_DOWN),
    );
    if (ok.length === 0) return null;
    if (ok.some((e) => !isRelay(e.path))) ok = ok.filter((e) => !isRelay(e.path));
    const min = Math.min(...ok.map(cost));
    const tied = ok.filter((e) => cost(e) === min);
    const best = tied.reduce((x, y) => (y.lastReceive > x.lastReceive ? y : x));
    if (dead || !active) return best;
    if (isRelay(active.path) !== isRelay(best.path)) return isRelay(active.path) ? best : null;
    if (active.srtt === null) return null;
    return cost(best) < cost(active) * RTT_SWITCH_FRACTION && cost(best) <= cost(active) - RTT_SWITCH_MARGIN ? best : null;
  }

  it('matches a brute-force reference on 20,000 random path sets', () => {
    let seed = 7;
    const rnd = (n: number) => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const states = ['new', 'validating', 'validated', 'failed'] as const;
    for (let round = 0; round < 20_000; round++) {
      const n = 1 + rnd(6);
      const entries = Array.from({ length: n }, (_, i) => {
        const e = new PathEntry(rnd(4) === 0 ? { ...makePath(`R${i}`), via: `L${rnd(2)}` } : makePath(`P${i}`));
        if (rnd(2) === 0) {
          e.mtu = new Plpmtud(1172, 1452, 28);
          e.mtu.state = rnd(4) === 0 ? 'searching' : 'complete';
          e.mtu.current = 1172 + rnd(281);
        }
        e.state = states[rnd(4)];
        e.srtt = rnd(5) === 0 ? null : rnd(60);
        e.probeMisses = rnd(4) === 0 ? 1 : 0;
        e.lastReceive = rnd(1000);
        e.abandonedAt = rnd(3) === 0 ? 20_000 - rnd(15_000) : -Infinity;
        return e;
      });
      const active = rnd(8) === 0 ? null : entries[rnd(n)];
      const dead = rnd(2) === 0;
      expect(choosePath(entries, active, dead, 20_000)).toBe(reference(entries, active, dead, 20_000));
    }
  });

  it('a path that carries clearly more wins at an equal RTT, and a pair of paths differing in both never flaps', () => {
    const small = new PathEntry(makePath('S'));
    const large = new PathEntry(makePath('L'));
    for (const [e, size] of [
      [small, 1280 - 28],
      [large, 1500 - 28],
    ] as const) {
      e.state = 'validated';
      e.srtt = 10;
      e.mtu = new Plpmtud(1172, 1472, 28);
      e.mtu.state = 'complete';
      e.mtu.current = size;
    }
    expect(choosePath([small, large], small, false, 0)).toBe(large);
    expect(choosePath([small, large], large, false, 0)).toBeNull();
    // the small one clearly faster: from either side, at most one switch
    small.srtt = 6;
    const fromLarge = choosePath([small, large], large, false, 0);
    const fromSmall = choosePath([small, large], small, false, 0);
    expect(fromLarge === null || fromSmall === null).toBe(true);
    // much faster: it wins even carrying less
    small.srtt = 2;
    expect(choosePath([small, large], large, false, 0)).toBe(small);
  });

  it('hysteresis: a slightly faster spare does not take over; a much faster one does, once', () => {
    const active = new PathEntry(makePath('A'));
    active.state = 'validated';
    active.srtt = 20;
    const spare = new PathEntry(makePath('S'));
    spare.state = 'validated';
    spare.srtt = 17;
    expect(choosePath([active, spare], active, false, 0)).toBeNull();
    spare.srtt = 10;
    expect(choosePath([active, spare], active, false, 0)).toBe(spare);
    // just abandoned: held down unless the active path dies
    spare.abandonedAt = 0;
    expect(choosePath([active, spare], active, false, 5000)).toBeNull();
    expect(choosePath([active, spare], active, true, 5000)).toBe(spare);
  });
});

describe('a keymesh peer that restarts', () => {
  it('the session it dropped is noticed by recovery and a fresh handshake gets through within ~5 s, not at the 15 s new-handshake timer', () => {
    const { net, a, b } = established();
    net.advance(2000);
    // B restarts: it keeps its key and address but forgets every session (datagrams sealed under
    // the old keys are unknown indexes to it now); A still holds its old session
    b.engine.removePeer(a.publicKey);
    b.engine.upsertPeer({ publicKey: a.publicKey, endpoint: a.path, allowedIps: [{ addr: ipBytes('10.0.0.1'), cidr: 32 }] }, net.now);
    const restartAt = net.now;
    const got = b.tun.length;
    let backAt: number | null = null;
    for (let t = 0; t < 16_000 && backAt === null; t += 50) {
      send(net, a, '10.0.0.1', '10.0.0.2', `after ${t}`);
      net.deliver();
      net.advance(50);
      if (b.tun.length > got) backAt = net.now;
    }
    expect(backAt, 'B got data again').not.toBeNull();
    console.log(`peer restart: data through again ${backAt! - restartAt} ms later`);
    // REKEY_TIMEOUT of silence, then one recovery round (≤ RECOVERY_MAX) at most
    expect(backAt! - restartAt).toBeLessThanOrEqual(5000 + 3200 + 100);
    expect(a.events.filter((e) => e.type === 'handshake-initiated').length).toBeGreaterThanOrEqual(1);
  });
});
