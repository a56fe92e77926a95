/**
 * The replay window against the Linux kernel's numbered counter test sequence (selftest in
 * counter.c, re-expressed with this window's size), the 2^32 boundary of the low half, the
 * REJECT_AFTER_MESSAGES limit, and a naive twin under random reordering.
 */
import { describe, expect, it } from 'vitest';
import { REPLAY_WINDOW_SIZE, ReplayWindow } from '../../src/core/replay.js';

const TWO32 = 2 ** 32;
/** REJECT_AFTER_MESSAGES = 2^64 − 2^13 − 1 as a bigint (tests only). */
const REJECT = 2n ** 64n - 2n ** 13n - 1n;

function halves(c: bigint | number): [number, number] {
  const b = BigInt(c);
  return [Number(b >> 32n), Number(b & 0xffffffffn)];
}

/** The receive path: check, then (the packet authenticated) commit. */
function accept(w: ReplayWindow, c: bigint | number): boolean {
  const [hi, lo] = halves(c);
  return w.check(hi, lo) && w.commit(hi, lo);
}

describe('ReplayWindow', () => {
  it('is at least as wide as the kernel’s and wireguard-go’s (8128)', () => {
    expect(REPLAY_WINDOW_SIZE).toBeGreaterThanOrEqual(8128);
  });

  it('passes the kernel’s numbered counter cases', () => {
    const w = new ReplayWindow();
    const LIM = REPLAY_WINDOW_SIZE + 1;
    const cases: Array<[bigint | number, boolean]> = [
      [0, true], //  1
      [1, true], //  2
      [1, false], //  3
      [9, true], //  4
      [8, true], //  5
      [7, true], //  6
      [7, false], //  7
      [LIM, true], //  8
      [LIM - 1, true], //  9
      [LIM - 1, false], // 10
      [LIM - 2, true], // 11
      [2, true], // 12
      [2, false], // 13
      [LIM + 16, true], // 14
      [3, false], // 15
      [LIM + 16, false], // 16
      [LIM * 4, true], // 17
      [LIM * 4 - (LIM - 1), true], // 18
      [10, false], // 19
      [LIM * 4 - LIM, false], // 20
      [LIM * 4 - (LIM + 1), false], // 21
      [LIM * 4 - (LIM - 2), true], // 22
      [LIM * 4 + 1 - LIM, false], // 23
      [0, false], // 24
      [REJECT, false], // 25
      [REJECT - 1n, true], // 26
      [REJECT, false], // 27
      [REJECT - 1n, false], // 28
      [REJECT - 2n, true], // 29
      [REJECT + 1n, false], // 30
      [REJECT + 2n, false], // 31
      [REJECT - 2n, false], // 32
      [REJECT - 3n, true], // 33
      [0, false], // 34
    ];
    cases.forEach(([c, want], i) => expect(accept(w, c), `case ${i + 1}: counter ${c}`).toBe(want));
  });

  it('accepts every counter once in a sliding burst and rejects what fell out of the window', () => {
    const w = new ReplayWindow();
    for (let i = 1; i <= REPLAY_WINDOW_SIZE + 1; i++) expect(accept(w, i)).toBe(true);
    for (let i = 1; i <= REPLAY_WINDOW_SIZE + 1; i++) expect(accept(w, i)).toBe(false);
    // 0 is exactly REPLAY_WINDOW_SIZE + 1 behind: outside.
    expect(accept(w, 0)).toBe(false);
    const w2 = new ReplayWindow();
    for (let i = 1; i <= REPLAY_WINDOW_SIZE; i++) expect(accept(w2, i)).toBe(true);
    expect(accept(w2, 0)).toBe(true); // exactly REPLAY_WINDOW_SIZE behind: inside
  });

  it('works across the 2^32 boundary of the low half', () => {
    const w = new ReplayWindow();
    const base = TWO32 - 5;
    for (let i = 0; i < 10; i++) expect(accept(w, base + i)).toBe(true);
    expect(accept(w, base + 3)).toBe(false);
    expect(accept(w, TWO32)).toBe(false);
    expect(accept(w, TWO32 + 100)).toBe(true);
    expect(accept(w, TWO32 + 50)).toBe(true);
    expect(accept(w, base - 1)).toBe(true);
    expect(accept(w, TWO32 + 100 - REPLAY_WINDOW_SIZE - 1)).toBe(false);
  });

  it('check does not record: only commit does', () => {
    const w = new ReplayWindow();
    expect(w.check(0, 5)).toBe(true);
    expect(w.check(0, 5)).toBe(true);
    expect(w.commit(0, 5)).toBe(true);
    expect(w.check(0, 5)).toBe(false);
    expect(w.commit(0, 5)).toBe(false);
  });

  it('matches a naive twin (a set of seen counters) over 100,000 random reordered operations', () => {
    let seed = 12345;
    const rnd = () => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) / 2 ** 32;
    };
    const w = new ReplayWindow();
    const seen = new Set<number>();
    let max = -1;
    let next = TWO32 - 20_000; // cross the 2^32 boundary along the way
    for (let i = 0; i < 100_000; i++) {
      let c: number;
      const r = rnd();
      if (r < 0.6) c = next++;
      else if (r < 0.9) c = next - Math.floor(rnd() * (REPLAY_WINDOW_SIZE + 200));
      else if (r < 0.99) c = next - Math.floor(rnd() * 50);
      else {
        next += Math.floor(rnd() * 20_000);
        c = next;
      }
      const naive = !seen.has(c) && (max < 0 || c > max || max - c <= REPLAY_WINDOW_SIZE);
      const got = accept(w, c);
      expect(got, `op ${i}: counter ${c}, max ${max}`).toBe(naive);
      if (naive) {
        seen.add(c);
        if (c > max) max = c;
      }
    }
  });
});
