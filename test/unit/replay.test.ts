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

  // The kernel's follow-up scenarios after the numbered cases, each on a fresh window (T_INIT).
  it('kernel scenario: ascending 1..W, then 0 (exactly W behind) once', () => {
    const w = new ReplayWindow();
    for (let i = 1; i <= REPLAY_WINDOW_SIZE; i++) expect(accept(w, i), `counter ${i}`).toBe(true);
    expect(accept(w, 0)).toBe(true);
    expect(accept(w, 0)).toBe(false);
  });

  it('kernel scenario: ascending 2..W+1, then 1 (W behind) in, 0 (W+1 behind) out', () => {
    const w = new ReplayWindow();
    for (let i = 2; i <= REPLAY_WINDOW_SIZE + 1; i++) expect(accept(w, i), `counter ${i}`).toBe(true);
    expect(accept(w, 1)).toBe(true);
    expect(accept(w, 0)).toBe(false);
  });

  it('kernel scenario: descending W..0 all accepted', () => {
    const w = new ReplayWindow();
    for (let i = REPLAY_WINDOW_SIZE + 1; i-- > 0; ) expect(accept(w, i), `counter ${i}`).toBe(true);
  });

  it('kernel scenario: descending W+1..1 accepted, then 0 is out', () => {
    const w = new ReplayWindow();
    for (let i = REPLAY_WINDOW_SIZE + 2; i-- > 1; ) expect(accept(w, i), `counter ${i}`).toBe(true);
    expect(accept(w, 0)).toBe(false);
  });

  it('kernel scenario: descending W..1, then W+1 slides the window so 0 is out', () => {
    const w = new ReplayWindow();
    for (let i = REPLAY_WINDOW_SIZE + 1; i-- > 1; ) expect(accept(w, i), `counter ${i}`).toBe(true);
    expect(accept(w, REPLAY_WINDOW_SIZE + 1)).toBe(true);
    expect(accept(w, 0)).toBe(false);
  });

  it('kernel scenario: descending W..1, 0 in, then W+1', () => {
    const w = new ReplayWindow();
    for (let i = REPLAY_WINDOW_SIZE + 1; i-- > 1; ) expect(accept(w, i), `counter ${i}`).toBe(true);
    expect(accept(w, 0)).toBe(true);
    expect(accept(w, REPLAY_WINDOW_SIZE + 1)).toBe(true);
  });

  it('a full sliding burst: every counter once, then none again', () => {
    const w = new ReplayWindow();
    for (let i = 1; i <= REPLAY_WINDOW_SIZE + 1; i++) expect(accept(w, i)).toBe(true);
    for (let i = 1; i <= REPLAY_WINDOW_SIZE + 1; i++) expect(accept(w, i)).toBe(false);
    expect(accept(w, 0)).toBe(false);
  });

  it('REJECT_AFTER_MESSAGES is 2^64 − 2^13 − 1 = (hi 0xffffffff, lo 0xffffdfff) and is refused', () => {
    expect(halves(REJECT)).toEqual([0xffffffff, 0xffffdfff]);
    const w = new ReplayWindow();
    expect(w.check(0xffffffff, 0xffffdfff)).toBe(false);
    expect(w.check(0xffffffff, 0xffffffff)).toBe(false);
    expect(w.check(0xffffffff, 0xffffdffe)).toBe(true);
    expect(w.commit(0xffffffff, 0xffffdfff)).toBe(false);
    expect(w.commit(0xffffffff, 0xffffdffe)).toBe(true);
  });

  it('remembers the whole window at counters near 2^59, 2^63 and 2^64 (no rounding of word distances)', () => {
    for (const base of [2n ** 59n, 2n ** 63n + 12345n, REJECT - 3n * 8192n - 7n]) {
      const w = new ReplayWindow();
      const wrong: string[] = [];
      for (let i = 0n; i < 3n * 8192n; i++) {
        const c = base + i;
        if (!accept(w, c)) wrong.push(`${c} refused`);
        // A sample of counters already seen inside the window must stay refused.
        for (let d = 1n; d <= BigInt(REPLAY_WINDOW_SIZE) && d <= i; d += 997n) {
          const [hi, lo] = halves(c - d);
          if (w.check(hi, lo)) wrong.push(`replay of ${c - d} accepted after ${c}`);
        }
      }
      expect(wrong.slice(0, 5), `base ${base}`).toEqual([]);
    }
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
    expect(accept(w, TWO32 + 100 - REPLAY_WINDOW_SIZE)).toBe(true);
    // A jump of exactly one unit of the high half, and back inside the window below it.
    expect(accept(w, 2 * TWO32 + 100)).toBe(true);
    expect(accept(w, 2 * TWO32 + 100 - REPLAY_WINDOW_SIZE)).toBe(true);
    expect(accept(w, TWO32 + 101)).toBe(false);
  });

  it('check does not record: only commit does', () => {
    const w = new ReplayWindow();
    expect(w.check(0, 5)).toBe(true);
    expect(w.check(0, 5)).toBe(true);
    expect(w.commit(0, 5)).toBe(true);
    expect(w.check(0, 5)).toBe(false);
    expect(w.commit(0, 5)).toBe(false);
    // A forged packet far ahead that failed AEAD (checked, never committed) does not move the window.
    expect(w.check(0, 1_000_000)).toBe(true);
    expect(accept(w, 4)).toBe(true);
  });

  it('two packets with one counter racing between check and commit: only the first commit wins', () => {
    const w = new ReplayWindow();
    expect(accept(w, 100)).toBe(true);
    expect(w.check(0, 42)).toBe(true); // packet A passes the pre-AEAD check
    expect(w.check(0, 42)).toBe(true); // so does its duplicate B
    expect(w.commit(0, 42)).toBe(true); // A authenticated first
    expect(w.commit(0, 42)).toBe(false); // B is a replay after all
    // A counter that fell out of the window while its packet was being decrypted is refused too.
    expect(w.check(0, 101)).toBe(true);
    expect(accept(w, 101 + REPLAY_WINDOW_SIZE + 1)).toBe(true);
    expect(w.commit(0, 101)).toBe(false);
  });

  it('reset forgets everything', () => {
    const w = new ReplayWindow();
    expect(accept(w, 5000)).toBe(true);
    w.reset();
    expect(accept(w, 5000)).toBe(true);
    expect(accept(w, 0)).toBe(true);
  });

  for (const [name, start] of [
    ['across the 2^32 boundary', BigInt(TWO32 - 20_000)],
    ['near 2^63', 2n ** 63n - 20_000n],
  ] as const) {
    it(`matches a naive twin (a set of seen counters) over 100,000 random reordered operations ${name}`, () => {
      let seed = 12345;
      const rnd = () => {
        seed ^= seed << 13;
        seed ^= seed >>> 17;
        seed ^= seed << 5;
        return (seed >>> 0) / 2 ** 32;
      };
      const W = BigInt(REPLAY_WINDOW_SIZE);
      const w = new ReplayWindow();
      const seen = new Set<bigint>();
      let max = -1n;
      let next = start;
      for (let i = 0; i < 100_000; i++) {
        let c: bigint;
        const r = rnd();
        if (r < 0.6) c = next++; // in order
        else if (r < 0.9) c = next - BigInt(Math.floor(rnd() * (REPLAY_WINDOW_SIZE + 200))); // late, near the edge
        else if (r < 0.99) c = next - BigInt(Math.floor(rnd() * 50)); // slightly reordered or duplicated
        else {
          next += BigInt(Math.floor(rnd() * 20_000)); // a burst of loss
          c = next;
        }
        const naive = c >= 0n && !seen.has(c) && (max < 0n || c > max || max - c <= W);
        const got = accept(w, c);
        expect(got, `op ${i}: counter ${c}, max ${max}`).toBe(naive);
        if (naive) {
          seen.add(c);
          if (c > max) max = c;
        }
      }
    });
  }
});
