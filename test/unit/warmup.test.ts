/**
 * The start-up warm-up (src/io/warmup.ts): two Runtimes joined by loopback UDP sockets and AF_UNIX
 * packet pairs push a handshake and thousands of packets through the real data path. It must
 * carry traffic (or it warms nothing), leave the node as it found it (no peer, no counters, no
 * open file), and never throw.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { nobleCrypto } from '../../src/core/crypto.js';
import { Runtime } from '../../src/io/runtime.js';
import { partnerConfig, warmUp } from '../../src/io/warmup.js';
import type { TunOffload } from '../../src/io/native.js';

const random = (n: number) => new Uint8Array(randomBytes(n));
const openFds = () => readdirSync('/proc/self/fd').length;
const VNET: TunOffload = { vnetHdr: true, csum: true, tso4: true, tso6: true, ecn: true, uso: true };

describe('start-up warm-up', () => {
  for (const offload of [VNET, null]) {
    it(`carries thousands of packets and leaves no peer, counter or fd behind (${offload ? 'virtio-header' : 'plain'} TUN stand-in)`, () => {
      const node = Runtime.warmupNode(partnerConfig(nobleCrypto.generatePrivateKey(random), 1420));
      const fds = openFds();
      const r = warmUp(node, Runtime.warmupNode, offload, 1420);
      expect(r.error).toBeUndefined();
      expect(r.packets).toBeGreaterThan(6000);
      expect(openFds()).toBe(fds);
      expect(node.peers()).toBe(0);
      const s = node.stats();
      expect(s.rxPackets).toBe(0);
      expect(s.txPackets).toBe(0);
      expect(s.handshakesSent + s.handshakesReceived).toBe(0);
      expect(Object.values(s.drops).every((n) => n === 0), JSON.stringify(s.drops)).toBe(true);
    });
  }

  it('a failure inside it is reported, not thrown, and closes what it opened', () => {
    const node = Runtime.warmupNode(partnerConfig(nobleCrypto.generatePrivateKey(random), 1420));
    const fds = openFds();
    const r = warmUp(node, () => {
      throw new Error('no partner today');
    }, null);
    expect(r.error).toBe('no partner today');
    expect(r.packets).toBe(0);
    expect(openFds()).toBe(fds);
  });
});
