/**
 * TAI64N timestamps of handshake initiations (src/core/tai64n.ts). Expected bytes were computed
 * independently with Python: struct.pack('>QI', 2**62 + 10 + s, ns & ~0xffffff), the layout and
 * whitening of wireguard-go's tai64n.stamp.
 */
import { describe, expect, it } from 'vitest';
import { TAI64N_WHITENER_MASK, compareTai64n, tai64n } from '../../src/core/tai64n.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

describe('tai64n', () => {
  it('encodes 2^62 + 10 + Unix seconds, then whitened nanoseconds, big-endian', () => {
    expect(hex(tai64n(0))).toBe('400000000000000a00000000');
    expect(hex(tai64n(999))).toBe('400000000000000a3b000000');
    expect(hex(tai64n(1_700_000_000_123))).toBe('400000006553f10a07000000');
    expect(hex(tai64n(4_102_444_800_000))).toBe('40000000f486570a00000000'); // 2100-01-01
    // Seconds past 2^32 carry into the high half; before 1970 the label borrows.
    expect(hex(tai64n(2 ** 32 * 1000 + 5))).toBe('400000010000000a00000000');
    expect(hex(tai64n(-1))).toBe('40000000000000093b000000');
    // Fractions of a millisecond are dropped.
    expect(hex(tai64n(1_700_000_000_123.9))).toBe(hex(tai64n(1_700_000_000_123)));
  });

  it('rounds nanoseconds down to a multiple of 2^24 ns (whitening, as wireguard-go)', () => {
    expect(TAI64N_WHITENER_MASK).toBe(2 ** 24 - 1);
    expect(hex(tai64n(1_700_000_000_016))).toBe('400000006553f10a00000000'); // 16.0 ms < 2^24 ns
    expect(hex(tai64n(1_700_000_000_017))).toBe('400000006553f10a01000000'); // 17.0 ms ≥ 2^24 ns
    expect(hex(tai64n(1_700_000_000_999))).toBe('400000006553f10a3b000000');
    for (let ms = 0; ms < 1000; ms++) {
      const t = tai64n(1_700_000_000_000 + ms);
      const nanos = new DataView(t.buffer, t.byteOffset).getUint32(8);
      expect(nanos & TAI64N_WHITENER_MASK).toBe(0);
      expect(nanos).toBeLessThanOrEqual(ms * 1_000_000);
      expect(ms * 1_000_000 - nanos).toBeLessThan(2 ** 24);
    }
  });

  it('writes into a caller buffer and returns it', () => {
    const out = new Uint8Array(12).fill(0xee);
    expect(tai64n(0, out)).toBe(out);
    expect(hex(out)).toBe('400000000000000a00000000');
    const big = new Uint8Array(16).fill(0xee);
    tai64n(0, big);
    expect(hex(big)).toBe('400000000000000a00000000eeeeeeee');
  });

  it('throws on misuse: a short buffer or a non-finite time', () => {
    expect(() => tai64n(0, new Uint8Array(11))).toThrow(/at least 12 bytes, got length=11/);
    expect(() => tai64n(Number.NaN)).toThrow(RangeError);
    expect(() => tai64n(Number.POSITIVE_INFINITY)).toThrow(RangeError);
  });
});

describe('compareTai64n', () => {
  it('orders timestamps as time, with equality inside one whitening bucket', () => {
    const a = tai64n(1_700_000_000_000);
    expect(compareTai64n(a, a)).toBe(0);
    expect(compareTai64n(tai64n(1_700_000_000_010), a)).toBe(0); // same ~16.8 ms bucket
    expect(compareTai64n(tai64n(1_700_000_000_020), a)).toBeGreaterThan(0); // 20 ms: initiations' minimum spacing
    expect(compareTai64n(a, tai64n(1_700_000_000_020))).toBeLessThan(0);
    expect(compareTai64n(tai64n(1_700_000_001_000), tai64n(1_700_000_000_999))).toBeGreaterThan(0);
    // Across a byte carry of the seconds, and across the 2^32-second carry.
    expect(compareTai64n(tai64n(256_000), tai64n(255_999))).toBeGreaterThan(0);
    expect(compareTai64n(tai64n(2 ** 32 * 1000), tai64n(2 ** 32 * 1000 - 1000))).toBeGreaterThan(0);
    expect(compareTai64n(tai64n(-1000), tai64n(0))).toBeLessThan(0);
  });

  it('agrees with numeric order on random times 20 ms or more apart', () => {
    let seed = 99;
    const rnd = () => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) / 2 ** 32;
    };
    for (let i = 0; i < 5000; i++) {
      const x = Math.floor(rnd() * 5e12);
      const y = x + 20 + Math.floor(rnd() * (rnd() < 0.5 ? 1000 : 1e11));
      expect(Math.sign(compareTai64n(tai64n(y), tai64n(x)))).toBe(1);
      expect(Math.sign(compareTai64n(tai64n(x), tai64n(y)))).toBe(-1);
    }
  });
});
