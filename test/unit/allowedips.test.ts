/**
 * The allowed-IPs trie (src/core/allowedips.ts) against a naive twin — a linear scan over every
 * prefix, as wireguard-go's SlowRouter — on random tables, plus explicit cryptokey-routing cases.
 */
import { describe, expect, it } from 'vitest';
import { AllowedIps } from '../../src/core/allowedips.js';

type Entry<T> = { addr: Uint8Array; cidr: number; value: T };

/** The dumb reference: prefixes kept in a Map, every lookup scans all of them bit by bit. */
class NaiveAllowedIps<T> {
  private readonly byKey = new Map<string, Entry<T>>();
  private static masked(a: Uint8Array, cidr: number): Uint8Array {
    const out = new Uint8Array(a.length);
    for (let i = 0; i < cidr; i++) if ((a[i >> 3] >> (7 - (i & 7))) & 1) out[i >> 3] |= 1 << (7 - (i & 7));
    return out;
  }
  private static key(m: Uint8Array, cidr: number): string {
    return `${hex(m)}/${cidr}`;
  }
  get entries(): Entry<T>[] {
    return [...this.byKey.values()];
  }
  insert(addr: Uint8Array, cidr: number, value: T): void {
    const m = NaiveAllowedIps.masked(addr, cidr);
    this.byKey.set(NaiveAllowedIps.key(m, cidr), { addr: m, cidr, value });
  }
  remove(addr: Uint8Array, cidr: number, value: T): boolean {
    const k = NaiveAllowedIps.key(NaiveAllowedIps.masked(addr, cidr), cidr);
    if (this.byKey.get(k)?.value !== value) return false;
    return this.byKey.delete(k);
  }
  removeValue(value: T): void {
    for (const [k, e] of this.byKey) if (e.value === value) this.byKey.delete(k);
  }
  entriesFor(value: T): string[] {
    return this.entries.filter((e) => e.value === value).map((e) => NaiveAllowedIps.key(e.addr, e.cidr)).sort();
  }
  lookup(a: Uint8Array): T | undefined {
    let best: Entry<T> | undefined;
    for (const e of this.byKey.values()) {
      if (e.addr.length !== a.length || (best && e.cidr <= best.cidr)) continue;
      // Whole bytes first, then the leftover high bits of the last byte.
      const full = e.cidr >> 3;
      let ok = true;
      for (let i = 0; i < full && ok; i++) ok = a[i] === e.addr[i];
      if (ok && e.cidr & 7) ok = ((a[full] ^ e.addr[full]) & (0xff << (8 - (e.cidr & 7))) & 0xff) === 0;
      if (ok) best = e;
    }
    return best?.value;
  }
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const sortedEntries = <T>(t: AllowedIps<T>, v: T) =>
  t
    .entriesFor(v)
    .map((e) => {
      expect(e.family).toBe(e.addr.length === 4 ? 4 : 6);
      return `${hex(e.addr)}/${e.cidr}`;
    })
    .sort();

let seed = 42;
/** xorshift32: a small deterministic PRNG so failures reproduce. */
function rnd(n: number): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) % n;
}
function randAddr(len: number, pool: Uint8Array[]): Uint8Array {
  // Half the time derive from an existing prefix (one bit flipped) so prefixes overlap and
  // lookups land near prefix edges.
  if (pool.length && rnd(2) === 0) {
    const a = pool[rnd(pool.length)].slice();
    a[rnd(len)] ^= 1 << rnd(8);
    return a;
  }
  return new Uint8Array(len).map(() => rnd(256));
}

describe('AllowedIps (trie) against a linear scan', () => {
  for (const [family, len, bits] of [
    [4, 4, 32],
    [6, 16, 128],
  ] as const) {
    it(`IPv${family}: 10,000 random prefixes, 10,000 lookups, random removals, reinsertion`, () => {
      seed = 42 + family;
      const trie = new AllowedIps<number>();
      const naive = new NaiveAllowedIps<number>();
      const pool: Uint8Array[] = [];
      const insertRandom = (n: number) => {
        for (let i = 0; i < n; i++) {
          const a = randAddr(len, pool);
          pool.push(a);
          // /0, host routes and host−1 are over-represented; otherwise any length.
          const cidr = rnd(10) === 0 ? [0, bits, bits - 1][rnd(3)] : rnd(bits + 1);
          const v = rnd(200);
          trie.insert(a, cidr, v);
          naive.insert(a, cidr, v);
        }
      };
      // Lookups read the address in place at an offset inside a larger "packet" buffer.
      const pkt = new Uint8Array(64);
      const off = family === 4 ? 16 : 24;
      const check = () => {
        expect(trie.size).toBe(naive.entries.length);
        // Path compression: only prefixes and forks are nodes (and removals prune the rest).
        expect(trie.nodeCount).toBeLessThan(2 * trie.size + 1);
        for (let i = 0; i < 10_000; i++) {
          const q = randAddr(len, pool);
          pkt.set(q, off);
          const got = trie.lookup(pkt, off, family);
          if (got !== naive.lookup(q)) expect(got, `lookup ${hex(q)}`).toBe(naive.lookup(q));
        }
        for (let v = 0; v < 200; v += 7) expect(sortedEntries(trie, v), `entries of ${v}`).toEqual(naive.entriesFor(v));
      };

      insertRandom(10_000);
      check();
      // Random single removals (right and wrong value), then whole values.
      for (let i = 0; i < 2000; i++) {
        const e = naive.entries[rnd(naive.entries.length)];
        expect(trie.remove(e.addr, e.cidr, e.value + 1)).toBe(false);
        expect(trie.remove(e.addr, e.cidr, e.value)).toBe(true);
        naive.remove(e.addr, e.cidr, e.value);
        expect(trie.remove(e.addr, e.cidr, e.value)).toBe(false);
      }
      for (let v = 0; v < 20; v++) {
        trie.removeValue(v);
        naive.removeValue(v);
      }
      check();
      // Refill: freed nodes are reused.
      insertRandom(3000);
      check();
      // Empty it prefix by prefix: no node may be left behind.
      for (const e of naive.entries) expect(trie.remove(e.addr, e.cidr, e.value)).toBe(true);
      expect(trie.size).toBe(0);
      expect(trie.nodeCount).toBe(0);
      expect(trie.lookup(pool[0], 0, family)).toBeUndefined();
    });
  }

  it('IPv4 and IPv6 side by side in one table, cleared', () => {
    seed = 7;
    const trie = new AllowedIps<number>();
    const naive = new NaiveAllowedIps<number>();
    const pool4: Uint8Array[] = [];
    const pool6: Uint8Array[] = [];
    for (let i = 0; i < 2000; i++) {
      const six = rnd(2) === 1;
      const a = randAddr(six ? 16 : 4, six ? pool6 : pool4);
      (six ? pool6 : pool4).push(a);
      const cidr = rnd(six ? 129 : 33);
      trie.insert(a, cidr, i % 50);
      naive.insert(a, cidr, i % 50);
    }
    for (let i = 0; i < 4000; i++) {
      const six = rnd(2) === 1;
      const q = randAddr(six ? 16 : 4, six ? pool6 : pool4);
      expect(trie.lookup(q, 0, six ? 6 : 4)).toBe(naive.lookup(q));
    }
    for (let v = 0; v < 50; v++) expect(sortedEntries(trie, v)).toEqual(naive.entriesFor(v));
    trie.clear();
    expect(trie.size).toBe(0);
    expect(trie.lookup(pool4[0], 0, 4)).toBeUndefined();
    expect(trie.entriesFor(1)).toEqual([]);
    trie.insert(pool4[0], 32, 99);
    expect(trie.lookup(pool4[0], 0, 4)).toBe(99);
  });
});

describe('AllowedIps: cryptokey routing cases', () => {
  const ip4 = (s: string) => new Uint8Array(s.split('.').map(Number));
  /** Minimal IPv6 literal parser for the tests (supports one '::'). */
  const ip6 = (s: string) => {
    const [head, tail] = s.includes('::') ? s.split('::') : [s, undefined];
    const h = head ? head.split(':') : [];
    const t = tail ? tail.split(':') : [];
    const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
    const out = new Uint8Array(16);
    groups.forEach((g, i) => {
      const n = parseInt(g, 16);
      out[2 * i] = n >> 8;
      out[2 * i + 1] = n & 0xff;
    });
    return out;
  };

  it('the most specific prefix wins, /0 is a default, host bits are masked off', () => {
    const t = new AllowedIps<string>();
    t.insert(ip4('0.0.0.0'), 0, 'default');
    t.insert(ip4('10.0.0.0'), 8, 'ten');
    t.insert(ip4('10.1.2.3'), 24, 'ten-one'); // stored as 10.1.2.0/24
    t.insert(ip4('10.1.2.128'), 25, 'upper-half');
    t.insert(ip4('10.1.2.200'), 32, 'host');
    expect(t.size).toBe(5);
    expect(t.lookup(ip4('10.1.2.5'), 0, 4)).toBe('ten-one');
    expect(t.lookup(ip4('10.1.2.129'), 0, 4)).toBe('upper-half');
    expect(t.lookup(ip4('10.1.2.200'), 0, 4)).toBe('host');
    expect(t.lookup(ip4('10.1.2.201'), 0, 4)).toBe('upper-half');
    expect(t.lookup(ip4('10.9.9.9'), 0, 4)).toBe('ten');
    expect(t.lookup(ip4('11.0.0.0'), 0, 4)).toBe('default');
    expect(t.lookup(ip4('255.255.255.255'), 0, 4)).toBe('default');
    expect(t.entriesFor('ten-one')).toEqual([{ addr: ip4('10.1.2.0'), cidr: 24, family: 4 }]);
    // Without the default route, an address outside every prefix has no peer.
    expect(t.remove(ip4('0.0.0.0'), 0, 'default')).toBe(true);
    expect(t.lookup(ip4('11.0.0.0'), 0, 4)).toBeUndefined();
    // Removing an inner prefix falls back to the covering one.
    expect(t.remove(ip4('10.1.2.128'), 25, 'upper-half')).toBe(true);
    expect(t.lookup(ip4('10.1.2.129'), 0, 4)).toBe('ten-one');
    expect(t.lookup(ip4('10.1.2.200'), 0, 4)).toBe('host');
  });

  it('a prefix belongs to one value: inserting it again moves it, remove needs the owner', () => {
    const t = new AllowedIps<string>();
    t.insert(ip4('10.0.0.0'), 8, 'a');
    t.insert(ip4('10.0.0.0'), 8, 'b');
    expect(t.size).toBe(1);
    expect(t.entriesFor('a')).toEqual([]);
    expect(t.entriesFor('b')).toEqual([{ addr: ip4('10.0.0.0'), cidr: 8, family: 4 }]);
    expect(t.lookup(ip4('10.9.9.9'), 0, 4)).toBe('b');
    expect(t.remove(ip4('10.0.0.0'), 8, 'a')).toBe(false);
    expect(t.remove(ip4('10.0.0.0'), 9, 'b')).toBe(false); // different prefix
    expect(t.remove(ip4('10.1.0.0'), 8, 'b')).toBe(true); // same prefix once masked
    expect(t.size).toBe(0);
    t.insert(ip4('10.0.0.0'), 8, 'b');
    t.insert(ip4('10.0.0.0'), 8, 'b'); // same value again: no duplicate
    expect(t.size).toBe(1);
    expect(t.entriesFor('b')).toHaveLength(1);
  });

  it('removeValue drops all prefixes of one peer across both families and nothing else', () => {
    const t = new AllowedIps<string>();
    t.insert(ip4('192.168.4.0'), 24, 'p1');
    t.insert(ip4('192.168.4.4'), 32, 'p2');
    t.insert(ip4('192.168.0.0'), 16, 'p1');
    t.insert(ip6('2001:db8::'), 32, 'p1');
    t.insert(ip6('2001:db8:1::'), 48, 'p2');
    t.insert(ip6('::'), 0, 'p1');
    expect(t.size).toBe(6);
    expect(t.entriesFor('p1').map((e) => `${e.family}:${hex(e.addr)}/${e.cidr}`).sort()).toEqual([
      '4:c0a80000/16',
      '4:c0a80400/24',
      '6:00000000000000000000000000000000/0',
      '6:20010db8000000000000000000000000/32',
    ]);
    t.removeValue('p1');
    expect(t.size).toBe(2);
    expect(t.entriesFor('p1')).toEqual([]);
    expect(t.lookup(ip4('192.168.4.4'), 0, 4)).toBe('p2');
    expect(t.lookup(ip4('192.168.4.5'), 0, 4)).toBeUndefined();
    expect(t.lookup(ip6('2001:db8:1::5'), 0, 6)).toBe('p2');
    expect(t.lookup(ip6('2001:db8:2::5'), 0, 6)).toBeUndefined();
    t.removeValue('nobody'); // unknown value: no-op
    expect(t.size).toBe(2);
  });

  it('IPv6: /128 host, /64, /0 default, and bits past the first word', () => {
    const t = new AllowedIps<string>();
    t.insert(ip6('::'), 0, 'default');
    t.insert(ip6('fd00:1:2:3::'), 64, 'net');
    t.insert(ip6('fd00:1:2:3::7'), 128, 'host');
    t.insert(ip6('fd00:1:2:3:8000::'), 65, 'upper');
    t.insert(ip6('fd00:1:2:3:0:0:0:6'), 127, 'pair');
    expect(t.lookup(ip6('fd00:1:2:3::7'), 0, 6)).toBe('host');
    expect(t.lookup(ip6('fd00:1:2:3::6'), 0, 6)).toBe('pair');
    expect(t.lookup(ip6('fd00:1:2:3::8'), 0, 6)).toBe('net');
    expect(t.lookup(ip6('fd00:1:2:3:ffff::1'), 0, 6)).toBe('upper');
    expect(t.lookup(ip6('fd00:1:2:4::7'), 0, 6)).toBe('default');
    // An IPv6 query never matches IPv4 prefixes and vice versa.
    expect(t.lookup(ip4('0.0.0.0'), 0, 4)).toBeUndefined();
  });

  it('reads the address in place inside a packet buffer (IPv4 dst at 16, IPv6 dst at 24)', () => {
    const t = new AllowedIps<string>();
    t.insert(ip4('10.1.2.0'), 24, 'v4');
    t.insert(ip6('fd00::'), 8, 'v6');
    const pkt4 = new Uint8Array(40);
    pkt4.set(ip4('10.1.2.9'), 16);
    pkt4.set(ip4('10.9.9.9'), 12); // the source must not be what is read
    expect(t.lookup(pkt4, 16, 4)).toBe('v4');
    expect(t.lookup(pkt4, 12, 4)).toBeUndefined();
    const pkt6 = new Uint8Array(60);
    pkt6.set(ip6('fd12::1'), 24);
    expect(t.lookup(pkt6, 24, 6)).toBe('v6');
    // A truncated buffer reads as zero bytes past its end instead of throwing.
    expect(t.lookup(new Uint8Array(18), 16, 4)).toBeUndefined();
  });

  it('rejects bad configuration with a clear error', () => {
    const t = new AllowedIps<string>();
    expect(() => t.insert(ip4('10.0.0.0'), 33, 'x')).toThrow(RangeError);
    expect(() => t.insert(ip4('10.0.0.0'), 33, 'x')).toThrow(/0–32, got 33/);
    expect(() => t.insert(ip6('::'), 129, 'x')).toThrow(/0–128, got 129/);
    expect(() => t.insert(ip4('10.0.0.0'), -1, 'x')).toThrow(RangeError);
    expect(() => t.insert(ip4('10.0.0.0'), 8.5, 'x')).toThrow(RangeError);
    expect(() => t.insert(new Uint8Array(5), 8, 'x')).toThrow(/4- or 16-byte address, got length=5/);
    expect(() => t.remove(new Uint8Array(3), 8, 'x')).toThrow(RangeError);
    expect(() => new AllowedIps<string | undefined>().insert(ip4('10.0.0.0'), 8, undefined)).toThrow(TypeError);
    expect(t.size).toBe(0);
  });
});
