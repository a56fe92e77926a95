/** The allowed-IPs trie against a naive twin (linear scan over prefixes), v4 and v6. */
import { describe, expect, it } from 'vitest';
import { AllowedIps } from '../../src/core/allowedips.js';

/** The dumb reference: a list of (masked prefix, length, value), scanned in full for every lookup. */
class NaiveAllowedIps<T> {
  private readonly byKey = new Map<string, { addr: Uint8Array; cidr: number; value: T }>();
  private static masked(a: Uint8Array, cidr: number): Uint8Array {
    const out = new Uint8Array(a.length);
    for (let i = 0; i < a.length * 8 && i < cidr; i++) if ((a[i >> 3] >> (7 - (i & 7))) & 1) out[i >> 3] |= 1 << (7 - (i & 7));
    return out;
  }
  private static key(m: Uint8Array, cidr: number): string {
    return `${Buffer.from(m).toString('hex')}/${cidr}`;
  }
  get entries() {
    return [...this.byKey.values()];
  }
  insert(addr: Uint8Array, cidr: number, value: T) {
    const m = NaiveAllowedIps.masked(addr, cidr);
    this.byKey.set(NaiveAllowedIps.key(m, cidr), { addr: m, cidr, value });
  }
  remove(addr: Uint8Array, cidr: number, value: T): boolean {
    const k = NaiveAllowedIps.key(NaiveAllowedIps.masked(addr, cidr), cidr);
    if (this.byKey.get(k)?.value !== value) return false;
    return this.byKey.delete(k);
  }
  removeValue(value: T) {
    for (const [k, e] of this.byKey) if (e.value === value) this.byKey.delete(k);
  }
  lookup(a: Uint8Array): T | undefined {
    let best: { cidr: number; value: T } | undefined;
    for (const e of this.byKey.values()) {
      if (e.addr.length !== a.length || (best && e.cidr <= best.cidr)) continue;
      let ok = true;
      for (let i = 0; i < e.cidr && ok; i++) ok = ((a[i >> 3] ^ e.addr[i >> 3]) >> (7 - (i & 7))) & 1 ? false : true;
      if (ok) best = e;
    }
    return best?.value;
  }
}

let seed = 42;
/** xorshift32: a small deterministic PRNG so failures reproduce. */
function rnd(n: number): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) % n;
}
function randAddr(len: number, pool: Uint8Array[]): Uint8Array {
  // Half the time derive from an existing prefix so lookups hit overlapping prefixes.
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
    it(`IPv${family}: 10,000 random prefixes, 10,000 lookups, random removals`, () => {
      const trie = new AllowedIps<number>();
      const naive = new NaiveAllowedIps<number>();
      const pool: Uint8Array[] = [];
      for (let i = 0; i < 10_000; i++) {
        const a = randAddr(len, pool);
        pool.push(a);
        const cidr = rnd(10) === 0 ? [0, bits, bits - 1][rnd(3)] : rnd(bits + 1);
        const v = rnd(200);
        trie.insert(a, cidr, v);
        naive.insert(a, cidr, v);
      }
      expect(trie.size).toBe(naive.entries.length);
      const check = () => {
        for (let i = 0; i < 10_000; i++) {
          const q = randAddr(len, pool);
          expect(trie.lookup(q, 0, family), `lookup ${Buffer.from(q).toString('hex')}`).toBe(naive.lookup(q));
        }
      };
      check();
      for (let i = 0; i < 2000; i++) {
        const k = rnd(naive.entries.length);
        const e = naive.entries[k];
        if (!e) throw new Error(`no entry ${k} of ${naive.entries.length}`);
        expect(trie.remove(e.addr, e.cidr, e.value)).toBe(true);
        naive.remove(e.addr, e.cidr, e.value);
      }
      for (let v = 0; v < 20; v++) {
        trie.removeValue(v);
        naive.removeValue(v);
      }
      expect(trie.size).toBe(naive.entries.length);
      check();
    });
  }

  it('the most specific prefix wins, /0 is a default, values can be moved and listed', () => {
    const t = new AllowedIps<string>();
    const ip = (s: string) => new Uint8Array(s.split('.').map(Number));
    t.insert(ip('0.0.0.0'), 0, 'default');
    t.insert(ip('10.0.0.0'), 8, 'ten');
    t.insert(ip('10.1.2.3'), 24, 'ten-one'); // host bits are masked off
    expect(t.lookup(ip('10.1.2.200'), 0, 4)).toBe('ten-one');
    expect(t.lookup(ip('10.9.9.9'), 0, 4)).toBe('ten');
    expect(t.lookup(ip('192.0.2.1'), 0, 4)).toBe('default');
    expect(t.entriesFor('ten-one')).toEqual([{ addr: ip('10.1.2.0'), cidr: 24, family: 4 }]);
    t.insert(ip('10.0.0.0'), 8, 'moved');
    expect(t.entriesFor('ten')).toEqual([]);
    expect(t.lookup(ip('10.9.9.9'), 0, 4)).toBe('moved');
    expect(t.remove(ip('10.0.0.0'), 8, 'ten')).toBe(false);
    t.removeValue('moved');
    expect(t.lookup(ip('10.9.9.9'), 0, 4)).toBe('default');
    // lookup reads the address in place inside a packet buffer
    const pkt = new Uint8Array(20);
    pkt.set(ip('10.1.2.9'), 16);
    expect(t.lookup(pkt, 16, 4)).toBe('ten-one');
    expect(() => t.insert(ip('10.0.0.0'), 33, 'x')).toThrow(/0–32/);
    expect(t.lookup(new Uint8Array(16), 0, 6)).toBeUndefined();
  });
});
