import { describe, expect, it } from 'vitest';
import { PathTable, UdpPath } from '../../src/io/udp-path.js';
import { isTunnelDevice } from '../../src/io/watch.js';

/** A small deterministic PRNG so failures reproduce. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

function key16(v4: boolean, r: () => number): Uint8Array {
  const a = new Uint8Array(16);
  if (v4) {
    a[10] = a[11] = 0xff;
    for (let i = 12; i < 16; i++) a[i] = (r() * 4) | 0; // few distinct values: many repeats
  } else {
    a[0] = 0xfd;
    a[15] = (r() * 4) | 0;
  }
  return a;
}

describe('PathTable', () => {
  it('interns paths: the same (remote, port, local, interface) is one object, different ones differ (vs a naive map)', () => {
    const r = rng(7);
    const table = new PathTable();
    const naive = new Map<string, UdpPath>(); // key text -> the object first returned
    const seen = new Set<UdpPath>();
    // Datagram batches: addresses packed 16 bytes apart, as the addon delivers them.
    const addrs = new Uint8Array(16 * 8);
    const locals = new Uint8Array(16 * 8);
    for (let round = 0; round < 2000; round++) {
      const n = 1 + ((r() * 8) | 0);
      const ports: number[] = [];
      const ifx: number[] = [];
      for (let i = 0; i < n; i++) {
        const v4 = r() < 0.7;
        addrs.set(key16(v4, r), i * 16);
        locals.set(r() < 0.3 ? new Uint8Array(16) : key16(v4, r), i * 16);
        ports.push(51820 + ((r() * 2) | 0));
        ifx.push((r() * 3) | 0);
      }
      for (let i = 0; i < n; i++) {
        const p = table.get(addrs, i * 16, ports[i], locals, i * 16, ifx[i]);
        const k = `${addrs.subarray(i * 16, i * 16 + 16).join('.')}:${ports[i]}|${locals.subarray(i * 16, i * 16 + 16).join('.')}%${ifx[i]}`;
        const first = naive.get(k);
        if (first) expect(p).toBe(first);
        else {
          expect(seen.has(p)).toBe(false);
          naive.set(k, p);
          seen.add(p);
        }
        expect([...p.addr16]).toEqual([...addrs.subarray(i * 16, i * 16 + 16)]);
        expect([...p.local16]).toEqual([...locals.subarray(i * 16, i * 16 + 16)]);
        expect(p.port).toBe(ports[i]);
        expect(p.ifindex).toBe(ifx[i]);
      }
    }
    expect(naive.size).toBeGreaterThan(100);
  });

  it('a buffer reused for the next datagram does not change the path handed out before', () => {
    const table = new PathTable();
    const buf = new Uint8Array(16);
    buf[10] = buf[11] = 0xff;
    buf.set([192, 0, 2, 1], 12);
    const a = table.get(buf, 0, 1000);
    buf.set([192, 0, 2, 2], 12); // the addon overwrites its address array in place
    const b = table.get(buf, 0, 1000);
    expect(b).not.toBe(a);
    expect(a.address).toBe('192.0.2.1');
    expect(b.address).toBe('192.0.2.2');
    buf.set([192, 0, 2, 1], 12);
    expect(table.get(buf, 0, 1000)).toBe(a);
  });
});

describe('isTunnelDevice', () => {
  const sys = (files: Record<string, string>) => (p: string) => files[p] ?? null;
  it('TUN/TAP devices (tun_flags) and kernel WireGuard interfaces are tunnels; Ethernet, Wi-Fi, PPP and raw-IP modems are not', () => {
    expect(isTunnelDevice('tun7', sys({ '/sys/class/net/tun7/tun_flags': '0x1001\n', '/sys/class/net/tun7/uevent': 'INTERFACE=tun7\nIFINDEX=9\n' }))).toBe(true);
    expect(isTunnelDevice('wg0', sys({ '/sys/class/net/wg0/uevent': 'DEVTYPE=wireguard\nINTERFACE=wg0\nIFINDEX=5\n' }))).toBe(true);
    expect(isTunnelDevice('eth0', sys({ '/sys/class/net/eth0/uevent': 'INTERFACE=eth0\nIFINDEX=2\n' }))).toBe(false);
    expect(isTunnelDevice('wlan0', sys({ '/sys/class/net/wlan0/uevent': 'DEVTYPE=wlan\nINTERFACE=wlan0\nIFINDEX=3\n' }))).toBe(false);
    expect(isTunnelDevice('ppp0', sys({ '/sys/class/net/ppp0/uevent': 'DEVTYPE=ppp\nINTERFACE=ppp0\nIFINDEX=6\n' }))).toBe(false);
    expect(isTunnelDevice('wwan0', sys({ '/sys/class/net/wwan0/uevent': 'DEVTYPE=wwan\nINTERFACE=wwan0\nIFINDEX=7\n' }))).toBe(false);
    expect(isTunnelDevice('gone0', sys({}))).toBe(false);
  });
});
