import { describe, expect, it } from 'vitest';
import { connect, ipPacket, makePath, Net, random, type Node } from './support/pair.js';
import { REPLAY_WINDOW_SIZE } from '../../src/core/replay.js';
import { REJECT_AFTER_TIME, REKEY_AFTER_TIME, KEEPALIVE_TIMEOUT, REKEY_ATTEMPT_TIME } from '../../src/core/constants.js';

const enc = new TextEncoder();

function setup(opts: Parameters<typeof connect>[4] = {}) {
  const net = new Net();
  const a = net.add('A');
  const b = net.add('B');
  connect(a, [['10.0.0.1', 32], ['fd00::1', 128]], b, [['10.0.0.2', 32], ['fd00::2', 128]], { now: net.now, ...opts });
  return { net, a, b };
}

function send(net: Net, from: Node, src: string, dst: string, text: string): void {
  from.engine.handleTunPacket(ipPacket(src, dst, enc.encode(text)), net.now);
}

function lastPayload(n: Node, v6 = false): string {
  const p = n.tun[n.tun.length - 1];
  return new TextDecoder().decode(p.subarray(v6 ? 40 : 20));
}

describe('engine: handshake and data', () => {
  it('A initiates on its first packet, both sides exchange IPv4 and IPv6 data', () => {
    const { net, a, b } = setup();
    send(net, a, '10.0.0.1', '10.0.0.2', 'hello B');
    net.deliver();
    expect(b.tun.length).toBe(1);
    expect(lastPayload(b)).toBe('hello B');
    send(net, b, '10.0.0.2', '10.0.0.1', 'hello A');
    send(net, b, 'fd00::2', 'fd00::1', 'hello A over v6');
    net.deliver();
    expect(a.tun.map((p) => p[0] >> 4)).toEqual([4, 6]);
    expect(lastPayload(a, true)).toBe('hello A over v6');
    const pa = a.engine.getPeer(b.publicKey)!;
    const pb = b.engine.getPeer(a.publicKey)!;
    expect(pa.lastHandshake).toBe(net.now);
    expect(pb.lastHandshake).toBe(net.now);
    expect(pa.txBytes).toBeGreaterThan(0);
    expect(pb.rxBytes).toBe(pa.txBytes);
    expect(a.events.some((e) => e.type === 'handshake-complete' && e.initiator)).toBe(true);
    expect(b.events.some((e) => e.type === 'handshake-complete' && !e.initiator)).toBe(true);
  });

  it('delivered packets are exact: padding is stripped using the IP length field', () => {
    const { net, a, b } = setup();
    for (const len of [0, 1, 15, 16, 17, 100, 1379]) {
      const payload = random(len);
      a.engine.handleTunPacket(ipPacket('10.0.0.1', '10.0.0.2', payload), net.now);
      net.deliver();
      const got = b.tun[b.tun.length - 1];
      expect(got.length).toBe(20 + len);
      expect(Buffer.from(got.subarray(20)).equals(Buffer.from(payload))).toBe(true);
    }
  });

  it('B initiates when only B knows A’s endpoint', () => {
    const { net, a, b } = setup({ aKnowsB: false });
    send(net, a, '10.0.0.1', '10.0.0.2', 'no endpoint yet');
    expect(net.queue.length).toBe(0);
    expect(a.engine.stats().drops.noEndpoint).toBe(1);
    send(net, b, '10.0.0.2', '10.0.0.1', 'from B');
    net.deliver();
    expect(lastPayload(a)).toBe('from B');
    // A learned B's endpoint from the authenticated initiation, and its staged packet went out.
    expect(a.engine.getPeer(b.publicKey)!.endpoint.path?.id).toBe(b.path.id);
    expect(b.tun.length).toBe(1);
    expect(lastPayload(b)).toBe('no endpoint yet');
  });

  it('both initiate at once and still converge', () => {
    const { net, a, b } = setup();
    send(net, a, '10.0.0.1', '10.0.0.2', 'a→b');
    send(net, b, '10.0.0.2', '10.0.0.1', 'b→a');
    net.deliver();
    net.advance(20_000);
    send(net, a, '10.0.0.1', '10.0.0.2', 'again a→b');
    send(net, b, '10.0.0.2', '10.0.0.1', 'again b→a');
    net.deliver();
    expect(lastPayload(b)).toBe('again a→b');
    expect(lastPayload(a)).toBe('again b→a');
  });

  it('crossed initiations (both start at the same instant): one side yields, the handshake completes at once, not at the retry', () => {
    const { net, a, b } = setup();
    send(net, a, '10.0.0.1', '10.0.0.2', 'a→b');
    send(net, b, '10.0.0.2', '10.0.0.1', 'b→a');
    // both initiations are on the wire before either arrives
    expect(net.queue.filter((w) => w.data[0] === 1)).toHaveLength(2);
    net.deliver();
    net.advance(50);
    expect(lastPayload(b)).toBe('a→b');
    expect(lastPayload(a)).toBe('b→a');
    // exactly one of them yielded
    expect(a.engine.stats().drops.crossedInitiation + b.engine.stats().drops.crossedInitiation).toBe(1);
  });

  it('works with a preshared key and fails with a wrong one', () => {
    const psk = random(32);
    const ok = setup({ psk });
    send(ok.net, ok.a, '10.0.0.1', '10.0.0.2', 'psk');
    ok.net.deliver();
    expect(lastPayload(ok.b)).toBe('psk');

    const bad = setup({ psk, pskB: random(32) });
    send(bad.net, bad.a, '10.0.0.1', '10.0.0.2', 'psk');
    bad.net.deliver();
    expect(bad.b.tun.length).toBe(0);
    expect(bad.a.engine.stats().drops.handshakeInvalid).toBe(1);
  });

  it('drops a decrypted packet whose source is outside the peer’s allowed IPs', () => {
    const { net, a, b } = setup();
    send(net, a, '10.0.0.99', '10.0.0.2', 'spoofed inner source');
    net.deliver();
    expect(b.tun.length).toBe(0);
    expect(b.engine.stats().drops.disallowedSource).toBe(1);
  });

  it('routes by longest prefix and reports no route', () => {
    const net = new Net();
    const a = net.add('A');
    const b = net.add('B');
    const c = net.add('C');
    connect(a, [['10.0.0.1', 32]], b, [['10.0.0.0', 8]]);
    connect(a, [['10.0.0.1', 32]], c, [['10.9.0.0', 16]]);
    send(net, a, '10.0.0.1', '10.9.1.1', 'to C');
    send(net, a, '10.0.0.1', '10.8.1.1', 'to B');
    send(net, a, '10.0.0.1', '192.168.1.1', 'nowhere');
    net.deliver();
    expect(lastPayload(c)).toBe('to C');
    expect(lastPayload(b)).toBe('to B');
    expect(a.engine.stats().drops.noRoute).toBe(1);
  });
});

describe('engine: timers (fake clock)', () => {
  it('the initiator rekeys after REKEY_AFTER_TIME when it sends', () => {
    const { net, a, b } = setup();
    send(net, a, '10.0.0.1', '10.0.0.2', 'x');
    net.deliver();
    const pa = a.engine.getPeer(b.publicKey)!;
    const first = pa.keypairs.current!;
    net.advance(REKEY_AFTER_TIME - 1000);
    send(net, a, '10.0.0.1', '10.0.0.2', 'y');
    net.deliver();
    expect(pa.keypairs.current).toBe(first);
    net.advance(2000);
    send(net, a, '10.0.0.1', '10.0.0.2', 'z');
    net.deliver();
    expect(pa.keypairs.current).not.toBe(first);
    expect(pa.keypairs.previous).toBe(first);
    expect(lastPayload(b)).toBe('z');
  });

  it('refuses to use a keypair after REJECT_AFTER_TIME and zeroes keys after 3×REJECT_AFTER_TIME', () => {
    const { net, a, b } = setup();
    send(net, a, '10.0.0.1', '10.0.0.2', 'x');
    net.deliver();
    const pa = a.engine.getPeer(b.publicKey)!;
    const kp = pa.keypairs.current!;
    // Cut the network: nothing more is delivered.
    net.advance(REJECT_AFTER_TIME + 1, false);
    net.queue = [];
    expect(kp.canSend(net.now)).toBe(false);
    const sentBefore = a.engine.stats().txPackets;
    send(net, a, '10.0.0.1', '10.0.0.2', 'late');
    expect(a.engine.stats().txPackets).toBe(sentBefore); // staged, not sent under the old key
    expect(pa.staged.length).toBe(1);
    net.advance(3 * REJECT_AFTER_TIME, false);
    expect(kp.zeroed).toBe(true);
    expect(kp.sendKey.every((x) => x === 0)).toBe(true);
    expect(a.events.some((e) => e.type === 'keys-zeroed')).toBe(true);
  });

  it('sends a keepalive KEEPALIVE_TIMEOUT after one-way traffic', () => {
    const { net, a, b } = setup();
    send(net, a, '10.0.0.1', '10.0.0.2', 'x');
    net.deliver();
    const pb = b.engine.getPeer(a.publicKey)!;
    const txBefore = pb.txBytes;
    net.advance(KEEPALIVE_TIMEOUT - 1);
    expect(pb.txBytes).toBe(txBefore);
    net.advance(2);
    expect(pb.txBytes).toBe(txBefore + 32); // one empty transport packet: 16 header + 16 tag
  });

  it('retries the handshake every REKEY_TIMEOUT and gives up after REKEY_ATTEMPT_TIME', () => {
    const { net, a, b } = setup();
    send(net, a, '10.0.0.1', '10.0.0.2', 'into the void');
    const drop = () => false;
    net.deliver(drop);
    const pa = a.engine.getPeer(b.publicKey)!;
    const start = net.now;
    let failedAt = -1;
    while (net.now - start < 200_000 && failedAt < 0) {
      const t = a.engine.nextDeadline();
      net.now = t;
      a.engine.tick(t);
      net.deliver(drop);
      if (a.events.some((e) => e.type === 'handshake-failed')) failedAt = net.now - start;
    }
    expect(failedAt).toBeGreaterThanOrEqual(REKEY_ATTEMPT_TIME);
    expect(failedAt).toBeLessThan(REKEY_ATTEMPT_TIME + 19 * 334 + 5000);
    // the first initiation and 18 retries (REKEY_ATTEMPT_TIME / REKEY_TIMEOUT)
    expect(a.engine.stats().handshakesSent).toBe(19);
    expect(pa.staged.length).toBe(0);
  });

  it('sends persistent keepalives at the configured interval', () => {
    const { net, a, b } = setup();
    const pa = a.engine.getPeer(b.publicKey)!;
    a.engine.setPersistentKeepalive(pa, 25, net.now);
    net.deliver(); // handshake happens because enabling it sends a keepalive at once
    expect(pa.lastHandshake).not.toBeNull();
    const tx = pa.txBytes;
    net.advance(25_001);
    expect(pa.txBytes).toBeGreaterThan(tx);
    const tx2 = pa.txBytes;
    net.advance(25_001);
    expect(pa.txBytes).toBeGreaterThan(tx2);
  });

  it('an idle session held open by persistent keepalives is rekeyed at REKEY_AFTER_TIME, never left to expire (§6.2)', () => {
    const { net, a, b } = setup();
    const pa = a.engine.getPeer(b.publicKey)!;
    a.engine.setPersistentKeepalive(pa, 25, net.now);
    net.deliver();
    const first = pa.lastHandshake!;
    let expiredAt: number | null = null;
    for (let t = 0; t < 400_000; t += 1000) {
      net.advance(1000);
      if (!pa.keypairs.current?.canSend(net.now) && expiredAt === null) expiredAt = net.now;
    }
    expect(expiredAt).toBeNull();
    // a rekey with the first keepalive after REKEY_AFTER_TIME (keepalives every 25 s): about every 125 s
    expect(pa.handshakesCompleted).toBeGreaterThanOrEqual(3);
    expect(pa.lastHandshake! - first).toBeGreaterThan(2 * REKEY_AFTER_TIME);
  });

  it('re-handshakes when data is sent but nothing comes back (new-handshake timer)', () => {
    const { net, a, b } = setup();
    send(net, a, '10.0.0.1', '10.0.0.2', 'x');
    net.deliver();
    const hsBefore = a.engine.stats().handshakesSent;
    // the timer as WireGuard has it, for a stock peer (with a keymesh peer, recovery rounds
    // re-handshake after REKEY_TIMEOUT of silence already: mobility.test.ts, "a peer that restarts")
    a.engine.getPeer(b.publicKey)!.endpoint.speaksKeymesh = false;
    // …and without the path checks against stock peers (stock-paths.ts asks the path at once: test/unit/stock-paths.test.ts)
    (a.engine as unknown as { stockFailover: boolean }).stockFailover = false;
    net.advance(1000);
    send(net, a, '10.0.0.1', '10.0.0.2', 'unanswered');
    net.queue = [];
    net.advance(KEEPALIVE_TIMEOUT + 5000 + 400, false);
    expect(a.engine.stats().handshakesSent).toBe(hsBefore + 1);
  });
});

describe('engine: attacks and garbage', () => {
  it('rejects a replayed transport packet', () => {
    const { net, a, b } = setup();
    send(net, a, '10.0.0.1', '10.0.0.2', 'x');
    net.deliver();
    send(net, a, '10.0.0.1', '10.0.0.2', 'once');
    const w = net.queue[0];
    const copy = w.data.slice();
    net.deliver();
    expect(lastPayload(b)).toBe('once');
    const n = b.tun.length;
    b.engine.handleDatagram(copy, a.path, net.now);
    expect(b.tun.length).toBe(n);
    expect(b.engine.stats().drops.replay).toBe(1);
  });

  it('accepts reordered packets within the window', () => {
    const { net, a, b } = setup();
    send(net, a, '10.0.0.1', '10.0.0.2', 'x');
    net.deliver();
    for (let i = 0; i < 50; i++) send(net, a, '10.0.0.1', '10.0.0.2', `p${i}`);
    net.queue.reverse();
    net.deliver();
    expect(b.tun.length).toBe(51);
  });

  it('rejects a packet reordered beyond the replay window', () => {
    const { net, a, b } = setup();
    send(net, a, '10.0.0.1', '10.0.0.2', 'x');
    net.deliver();
    send(net, a, '10.0.0.1', '10.0.0.2', 'late');
    const late = net.queue.shift()!;
    for (let i = 0; i < REPLAY_WINDOW_SIZE + 1; i++) send(net, a, '10.0.0.1', '10.0.0.2', 'filler');
    net.deliver();
    const before = b.tun.length;
    expect(b.engine.handleDatagram(late.data, a.path, net.now)).toBe('replay');
    expect(b.tun.length).toBe(before);
  });

  it('rejects a replayed initiation (TAI64N not newer)', () => {
    const { net, a, b } = setup();
    send(net, a, '10.0.0.1', '10.0.0.2', 'x');
    const init = net.queue[0].data.slice();
    net.deliver();
    net.advance(1000);
    expect(b.engine.handleDatagram(init, a.path, net.now)).toBe('staleTimestamp');
  });

  it('drops a handshake with a bad mac1', () => {
    const { net, a, b } = setup();
    send(net, a, '10.0.0.1', '10.0.0.2', 'x');
    const init = net.queue[0].data;
    init[120] ^= 1;
    net.deliver();
    expect(b.engine.stats().drops.badMac1).toBe(1);
    expect(b.tun.length).toBe(0);
  });

  it('under load, answers an initiation without mac2 with a cookie; the initiator retries with mac2 at once, and it succeeds', () => {
    const { net, a, b } = setup();
    b.engine.setUnderLoad(true);
    send(net, a, '10.0.0.1', '10.0.0.2', 'under load');
    expect(net.deliver(() => true, 2)).toBe(2); // the initiation, and the cookie reply
    expect(b.engine.stats().drops.cookieSent).toBe(1);
    expect(b.tun.length).toBe(0);
    expect(a.engine.getPeer(b.publicKey)!.cookie.hasFreshCookie(net.now)).toBe(true);
    // the retry went out on the cookie reply, not at the retransmit timer (5 s)
    expect(net.queue.map((w) => w.data[0])).toEqual([1]);
    net.deliver();
    expect(b.tun.length).toBe(1);
    expect(lastPayload(b)).toBe('under load');
    expect(b.engine.stats().drops.cookieSent).toBe(1);
    expect(a.engine.stats().handshakesSent).toBe(2);
  });

  it('counts the engine as under load when handshakes flood in', () => {
    const net = new Net();
    const b = net.add('B', { underLoadThreshold: 10 });
    const a = net.add('A');
    connect(a, [['10.0.0.1', 32]], b, [['10.0.0.2', 32]]);
    for (let i = 0; i < 12; i++) {
      a.engine.getPeer(b.publicKey)!.lastSentHandshake = -Infinity;
      a.engine.initiateHandshake(a.engine.getPeer(b.publicKey)!, net.now);
      const w = net.queue.pop()!;
      b.engine.handleDatagram(w.data, a.path, net.now);
    }
    expect(b.engine.isUnderLoad(net.now)).toBe(true);
    expect(b.engine.stats().drops.cookieSent).toBeGreaterThan(0);
    expect(b.engine.isUnderLoad(net.now + 2000)).toBe(false);
  });

  it('moves the endpoint only on authenticated packets (stock WireGuard peer semantics)', () => {
    const { net, a, b } = setup();
    send(net, a, '10.0.0.1', '10.0.0.2', 'x');
    // Play a stock WireGuard peer: B never answers extension HELLOs (drop them on the way).
    net.deliver();
    const pb = b.engine.getPeer(a.publicKey)!;
    pb.endpoint.speaksKeymesh = false;
    const roamed = makePath('A-new-address', 4444);
    net.paths.set(roamed.id, roamed);
    // Garbage from a new address: no move.
    b.engine.handleDatagram(random(100), roamed, net.now);
    const forged = new Uint8Array(64);
    forged[0] = 4;
    b.engine.handleDatagram(forged, roamed, net.now);
    expect(pb.endpoint.path?.id).toBe(a.path.id);
    // A real packet from the new address: moves at once (no validation for a WireGuard peer).
    send(net, a, '10.0.0.1', '10.0.0.2', 'after roaming');
    const w = net.queue.shift()!;
    b.engine.handleDatagram(w.data, roamed, net.now);
    expect(pb.endpoint.path?.id).toBe(roamed.id);
    expect(b.events.some((e) => e.type === 'endpoint-changed' && e.to.id === roamed.id)).toBe(true);
  });

  it('never throws on random, truncated or mutated datagrams of every type, and counts them', () => {
    const { net, a, b } = setup();
    // Collect real messages of every type to mutate.
    b.engine.setUnderLoad(true);
    send(net, a, '10.0.0.1', '10.0.0.2', 'x');
    const samples: Uint8Array[] = [];
    const tap = (w: { data: Uint8Array }) => {
      samples.push(w.data.slice());
      return true;
    };
    net.deliver(tap);
    b.engine.setUnderLoad(false);
    net.advance(6000, false);
    net.deliver(tap);
    send(net, a, '10.0.0.1', '10.0.0.2', 'y');
    net.deliver(tap);
    const types = new Set(samples.map((s) => s[0]));
    expect([...types].sort()).toEqual([1, 2, 3, 4]);
    const before = b.engine.stats();
    let total = 0;
    for (let i = 0; i < 4000; i++) {
      let d: Uint8Array;
      const base = samples[i % samples.length];
      switch (i % 4) {
        case 0:
          d = random(Math.floor(Math.random() * 200));
          break;
        case 1:
          d = base.slice(0, Math.floor(Math.random() * base.length));
          break;
        case 2: {
          d = base.slice();
          d[Math.floor(Math.random() * d.length)] ^= 1 + Math.floor(Math.random() * 255);
          break;
        }
        default: {
          d = new Uint8Array(base.length + 1 + Math.floor(Math.random() * 40));
          d.set(base);
        }
      }
      expect(() => b.engine.handleDatagram(d, a.path, net.now)).not.toThrow();
      expect(() => a.engine.handleDatagram(d.slice(), b.path, net.now)).not.toThrow();
      total++;
    }
    const after = b.engine.stats();
    const dropped = Object.values(after.drops).reduce((x, y) => x + y, 0) - Object.values(before.drops).reduce((x, y) => x + y, 0);
    expect(dropped).toBeGreaterThan(total * 0.9);
    expect(after.drops.malformed).toBeGreaterThan(before.drops.malformed);
    // The session still works afterwards.
    send(net, a, '10.0.0.1', '10.0.0.2', 'still alive');
    net.deliver();
    expect(lastPayload(b)).toBe('still alive');
  });
});
