/**
 * The engine's deadline index (a heap refreshed for touched peers only) against its naive twin, a
 * full scan of every peer: the fake network's engines run with `checkDeadlines`, which compares
 * the two at every nextDeadline() and every tick(), and throws on any difference. Here a hub with
 * a dozen spokes goes through ten simulated minutes of random traffic, silences, moves,
 * reconfiguration and peer removal.
 */
import { describe, expect, it } from 'vitest';
import { createNativeCrypto, createNativeTransportAead } from '../../src/io/native-crypto.js';
import { Net, connect, ipPacket, makePath, seeded, type Node } from './support/pair.js';

// native X25519 and AEAD: hundreds of handshakes here (the crypto is not under test)
const fast = { crypto: createNativeCrypto()!, aead: createNativeTransportAead()! };

describe('deadline index', () => {
  for (const seed of [1, 2, 3]) {
    it(`matches a full scan through 10 simulated minutes of random events (seed ${seed})`, () => {
      const rnd = seeded(seed);
      const net = new Net();
      const hub = net.add('H', fast);
      const spokes: Node[] = [];
      for (let i = 0; i < 12; i++) {
        const s = net.add(`S${i}`, fast);
        connect(hub, [['10.0.0.1', 32]], s, [[`10.0.1.${i + 1}`, 32]], { now: net.now, bKnowsA: rnd() < 0.5 });
        spokes.push(s);
      }
      const payload = new Uint8Array(40);
      let ticks = 0;
      const hubPeer = (s: Node) => hub.engine.getPeer(s.publicKey);
      for (let step = 0; step < 3000; step++) {
        const i = Math.floor(rnd() * spokes.length);
        const s = spokes[i];
        const r = rnd();
        if (r < 0.35) {
          if (hubPeer(s)) hub.engine.handleTunPacket(ipPacket('10.0.0.1', `10.0.1.${i + 1}`, payload), net.now);
        } else if (r < 0.7) {
          s.engine.handleTunPacket(ipPacket(`10.0.1.${i + 1}`, '10.0.0.1', payload), net.now);
        } else if (r < 0.75) {
          if (net.blackholes.has(s.path.id)) net.blackholes.delete(s.path.id);
          else net.blackholes.add(s.path.id);
        } else if (r < 0.78) {
          s.moveTo(makePath(`S${i}m${step}`));
        } else if (r < 0.8) {
          const p = hubPeer(s);
          if (p) hub.engine.setPersistentKeepalive(p, rnd() < 0.5 ? 0 : 1 + Math.floor(rnd() * 25), net.now);
        } else if (r < 0.81) {
          hub.engine.removePeer(s.publicKey);
        } else if (r < 0.82 && !hubPeer(s)) {
          connect(hub, [['10.0.0.1', 32]], s, [[`10.0.1.${i + 1}`, 32]], { now: net.now });
        }
        net.deliver();
        net.advance(Math.floor(rnd() * (rnd() < 0.1 ? 20_000 : 300)));
        ticks++;
      }
      expect(ticks).toBe(3000);
      expect(net.now).toBeGreaterThan(10 * 60_000);
      // the index was checked at every call; the hub did real work meanwhile
      expect(hub.engine.stats().rxPackets).toBeGreaterThan(500);
      expect(hub.engine.stats().handshakesReceived + hub.engine.stats().handshakesSent).toBeGreaterThan(12);
    });
  }

  it('the check itself catches an index that missed a change', () => {
    const net = new Net();
    const a = net.add('A');
    const b = net.add('B');
    connect(a, [['10.0.0.1', 32]], b, [['10.0.0.2', 32]], { now: net.now });
    a.engine.handleTunPacket(ipPacket('10.0.0.1', '10.0.0.2', new Uint8Array(8)), net.now);
    net.deliver();
    net.advance(100);
    expect(() => a.engine.nextDeadline()).not.toThrow();
    // change a timer behind the engine's back (no touch): the full scan sees it, the index does not
    const peer = a.engine.getPeer(b.publicKey)!;
    peer.timers.sendKeepalive = net.now + 1;
    expect(() => a.engine.nextDeadline()).toThrow(/deadline index out of step/);
  });
});
