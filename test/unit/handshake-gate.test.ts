/**
 * The handshake gate (src/core/handshake-gate.ts): under a flood of valid-mac1 initiations,
 * transport data in the same batches is delivered at once; handshakes wait in a bounded queue
 * for their Noise work, a slice at a time; cookie replies stay within their budgets; and a
 * legitimate new peer still gets in — with one cookie round trip, not a 5 s retry.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { mac1Key } from '../../src/core/cookie.js';
import { nobleCrypto } from '../../src/core/crypto.js';
import type { Path } from '../../src/core/endpoint.js';
import { COOKIE_REPLY_BURST, COOKIE_REPLY_SOURCE_BURST, HANDSHAKE_QUEUE_MAX } from '../../src/core/handshake-gate.js';
import { INITIATION_MAC1_OFFSET } from '../../src/core/messages.js';
import { connect, ipPacket, makePath, Net, type Node } from './support/pair.js';

const enc = new TextEncoder();

/** A flood initiation: random, with a valid mac1 for `responder`, no mac2 (what any peer of it can make). */
function floodInitiation(responder: Uint8Array): Uint8Array {
  const m = new Uint8Array(randomBytes(148));
  m.set([1, 0, 0, 0], 0);
  m.set(nobleCrypto.mac(mac1Key(nobleCrypto, responder), m.subarray(0, INITIATION_MAC1_OFFSET)), INITIATION_MAC1_OFFSET);
  m.fill(0, INITIATION_MAC1_OFFSET + 16);
  return m;
}

/** Lay datagrams out as the pump does and hand them to handleDatagramBatch. */
function batch(n: Node, datagrams: Array<{ data: Uint8Array; path: Path }>, now: number): void {
  const slot = 2048;
  const buf = new Uint8Array(datagrams.length * slot);
  const offs = new Uint32Array(datagrams.length);
  const lens = new Uint32Array(datagrams.length);
  datagrams.forEach((d, i) => {
    buf.set(d.data, i * slot);
    offs[i] = i * slot;
    lens[i] = d.data.length;
  });
  n.engine.handleDatagramBatch(buf, offs, lens, datagrams.map((d) => d.path), datagrams.length, now);
}

function established() {
  const net = new Net();
  const a = net.add('A');
  const b = net.add('B');
  connect(a, [['10.0.0.1', 32]], b, [['10.0.0.2', 32]], { now: net.now });
  a.engine.handleTunPacket(ipPacket('10.0.0.1', '10.0.0.2', enc.encode('hello')), net.now);
  net.deliver();
  expect(b.tun.length).toBe(1);
  return { net, a, b };
}

/** A's next transport datagram to B (not delivered). */
function dataFromA(net: Net, a: Node, text: string): Uint8Array {
  a.engine.handleTunPacket(ipPacket('10.0.0.1', '10.0.0.2', enc.encode(text)), net.now);
  const w = net.queue.pop()!;
  expect(w.data[0]).toBe(4);
  return w.data;
}

const attacker = (i: number) => makePath(`X${i}`, 40000 + i);

describe('handshake gate under a flood', () => {
  it('delivers transport data in a flooded batch at once; handshakes wait in the bounded queue, a slice at a time', () => {
    const { net, a, b } = established();
    const before = b.tun.length;
    // 20 batches of 63 flood initiations + one data packet each (1,260 initiations: more than the queue holds)
    for (let k = 0; k < 20; k++) {
      const ds = Array.from({ length: 63 }, (_, i) => ({ data: floodInitiation(b.publicKey), path: attacker(k * 63 + i) }));
      ds.splice(k % 63, 0, { data: dataFromA(net, a, `data ${k}`), path: a.path });
      batch(b, ds, net.now);
      expect(b.tun.length).toBe(before + k + 1); // before any handshake work
    }
    const s = b.engine.stats(net.now);
    // not under load yet for the first 256 (UNDER_LOAD_HANDSHAKES_PER_SECOND), then cookie replies
    expect(b.engine.pendingHandshakes).toBeLessThanOrEqual(HANDSHAKE_QUEUE_MAX);
    expect(b.engine.pendingHandshakes).toBeGreaterThan(0);
    expect(s.drops.cookieSent + s.drops.cookieShed + b.engine.pendingHandshakes + s.drops.handshakeShed).toBe(1260);
    // the work, a slice at a time
    const pending = b.engine.pendingHandshakes;
    expect(b.engine.processHandshakes(net.now, 8)).toBe(pending - 8);
    expect(b.engine.stats(net.now).drops.handshakeInvalid).toBe(8); // random bodies do not decrypt
    b.engine.processHandshakes(net.now);
    expect(b.engine.pendingHandshakes).toBe(0);
  });

  it('sheds what the full queue cannot hold, and counts it', () => {
    const { net, b } = established();
    b.engine.setUnderLoad(false);
    const n = HANDSHAKE_QUEUE_MAX + 100;
    for (let k = 0; k < n; k += 64) {
      const ds = Array.from({ length: Math.min(64, n - k) }, (_, i) => ({ data: floodInitiation(b.publicKey), path: attacker(k + i) }));
      batch(b, ds, net.now);
    }
    const s = b.engine.stats(net.now);
    // under load after the first 256: cookie replies for the rest, within budget, the remainder shed
    expect(s.drops.handshakeShed + s.drops.cookieSent + s.drops.cookieShed + b.engine.pendingHandshakes).toBe(n);
  });

  it('keeps cookie replies within their budgets: per source, and in all', () => {
    const { net, b } = established();
    b.engine.setUnderLoad(true);
    // one source, 40 initiations at one instant
    batch(b, Array.from({ length: 40 }, () => ({ data: floodInitiation(b.publicKey), path: attacker(1) })), net.now);
    let s = b.engine.stats(net.now);
    expect(s.drops.cookieSent).toBe(COOKIE_REPLY_SOURCE_BURST);
    expect(s.drops.cookieShed).toBe(40 - COOKIE_REPLY_SOURCE_BURST);
    // many sources at one instant: the total burst
    for (let k = 0; k < 1000; k += 64) {
      batch(b, Array.from({ length: 64 }, (_, i) => ({ data: floodInitiation(b.publicKey), path: attacker(1000 + k + i) })), net.now);
    }
    s = b.engine.stats(net.now);
    expect(s.drops.cookieSent).toBe(COOKIE_REPLY_BURST);
    // a reply is smaller than what it answers
    const replies = net.queue.filter((w) => w.data[0] === 3);
    expect(replies.length).toBe(COOKIE_REPLY_BURST);
    expect(replies.every((w) => w.data.length === 64)).toBe(true);
    // garbage costs no reply at all: bad mac1, wrong sizes
    const bad = floodInitiation(b.publicKey);
    bad[20] ^= 1;
    const c0 = b.engine.stats(net.now).drops.badMac1;
    batch(b, [{ data: bad, path: attacker(5000) }, { data: bad.subarray(0, 147), path: attacker(5001) }], net.now);
    expect(b.engine.stats(net.now).drops.badMac1).toBe(c0 + 1);
  });

  it('a new peer gets in during the flood with one cookie round trip (not the 5 s retry)', () => {
    const net = new Net();
    net.batched = true;
    const b = net.add('B');
    const n = net.add('N');
    connect(n, [['10.0.0.3', 32]], b, [['10.0.0.2', 32]], { now: net.now });
    // the flood has put B under load and used up the attackers' per-source reply budgets
    for (let k = 0; k < 640; k += 64) {
      batch(b, Array.from({ length: 64 }, (_, i) => ({ data: floodInitiation(b.publicKey), path: attacker((k + i) % 64) })), net.now);
    }
    expect(b.engine.isUnderLoad(net.now)).toBe(true);
    net.queue = []; // the attacker's cookie replies
    const t0 = net.now;
    n.engine.handleTunPacket(ipPacket('10.0.0.3', '10.0.0.2', enc.encode('let me in')), net.now);
    for (let i = 0; i < 10 && b.tun.length === 0; i++) {
      net.deliver();
      net.advance(1);
    }
    expect(b.tun.length).toBe(1);
    expect(net.now - t0).toBeLessThan(100);
    expect(b.engine.stats(net.now).drops.cookieSent).toBeGreaterThan(0);
  });
});
