/** PendingIntroductions against a naive twin (a plain list of every question ever asked). */
import { describe, expect, it } from 'vitest';
import { INTRODUCTION_TTL, MAX_ASKERS_PER_TARGET, PendingIntroductions } from '../../src/core/introductions.js';
import { seeded } from './support/pair.js';

describe('pending introductions', () => {
  it('a question is answered once, when its target registers, within its lifetime', () => {
    const p = new PendingIntroductions();
    p.remember('B', 'A', 0);
    p.remember('B', 'C', 10);
    expect(p.take('X', 20)).toEqual([]);
    expect(p.take('B', 20)).toEqual(['A', 'C']);
    expect(p.take('B', 30)).toEqual([]);
    p.remember('B', 'A', 0);
    expect(p.take('B', INTRODUCTION_TTL + 1)).toEqual([]);
  });

  it('asking again refreshes the question; the oldest askers go first when a target has too many', () => {
    const p = new PendingIntroductions();
    for (let i = 0; i < MAX_ASKERS_PER_TARGET + 3; i++) p.remember('B', `m${i}`, i);
    p.remember('B', 'm3', 100); // m3 asked again: newest now
    const got = p.take('B', 200);
    expect(got).toHaveLength(MAX_ASKERS_PER_TARGET);
    expect(got[got.length - 1]).toBe('m3');
    expect(got).not.toContain('m0');
  });

  it('matches a naive twin over 20,000 random operations', () => {
    const rnd = seeded(11);
    const p = new PendingIntroductions();
    let naive: Array<{ target: string; asker: string; at: number }> = [];
    let now = 0;
    for (let i = 0; i < 20_000; i++) {
      now += Math.floor(rnd() * 200);
      const target = `t${Math.floor(rnd() * 5)}`;
      const asker = `a${Math.floor(rnd() * 12)}`;
      if (rnd() < 0.7) {
        p.remember(target, asker, now);
        naive = naive.filter((q) => !(q.target === target && q.asker === asker));
        naive.push({ target, asker, at: now });
        const mine = naive.filter((q) => q.target === target);
        if (mine.length > MAX_ASKERS_PER_TARGET) naive.splice(naive.indexOf(mine[0]), 1);
      } else {
        const want = naive.filter((q) => q.target === target && now - q.at <= INTRODUCTION_TTL).map((q) => q.asker);
        naive = naive.filter((q) => q.target !== target);
        expect(p.take(target, now)).toEqual(want);
      }
    }
  });
});
