/**
 * The path MTU search (src/core/plpmtud.ts) against simulated paths: each carries datagrams up to
 * some size, loses a share of them, delays them (reordering acks), and may shrink or grow. The
 * naive twin is the definition itself — the largest size the path carries — which the search must
 * reach within SEARCH_GRANULARITY and never exceed once it has settled.
 */
import { describe, expect, it } from 'vitest';
import {
  BASE_PMTU_V4,
  CONFIRM_INTERVAL,
  PMTU_RAISE_INTERVAL,
  Plpmtud,
  SEARCH_GRANULARITY,
} from '../../src/core/plpmtud.js';
import { seeded } from './support/pair.js';

const OVERHEAD = 28; // IPv4 + UDP
const BASE = BASE_PMTU_V4 - OVERHEAD;
const MAX = 1420 + 32;

interface SimPath {
  /** Largest datagram the path carries now. */
  carries: number;
  loss: number;
  rtt: number;
  /** Extra delay drawn per ack, up to this (so acks overtake each other). */
  jitter: number;
  /** Small packets get through (the path is alive). */
  alive: boolean;
}

/** Drive one Plpmtud over a simulated path for `ms`, with big traffic when `busy`; returns a log of `current` over time. */
function run(m: Plpmtud, p: SimPath, ms: number, clock: { now: number }, rnd: () => number, busy = true, srtt = 1): Array<[number, number]> {
  const acks: Array<{ at: number; id: number; size: number }> = [];
  const trace: Array<[number, number]> = [];
  let heardAt = -Infinity;
  const end = clock.now + ms;
  for (; clock.now <= end; clock.now += 1) {
    const now = clock.now;
    if (p.alive && now % 10 === 0 && rnd() >= p.loss) heardAt = now + p.rtt / 2;
    if (busy && now % 5 === 0) m.bigSent(m.current, now);
    for (let i = 0; i < acks.length; ) {
      if (acks[i].at <= now) {
        m.acked(acks[i].id, acks[i].size, now);
        acks.splice(i, 1);
      } else i++;
    }
    if (m.deadline(srtt) <= now) {
      for (const size of m.due(now, srtt, heardAt)) {
        const id = m.sent(size, now);
        if (size <= p.carries && rnd() >= p.loss && rnd() >= p.loss) acks.push({ at: now + p.rtt + Math.floor(rnd() * (p.jitter + 1)), id, size });
      }
    }
    if (trace.length === 0 || trace[trace.length - 1][1] !== m.current) trace.push([now, m.current]);
  }
  return trace;
}

const path = (carries: number, o: Partial<SimPath> = {}): SimPath => ({ carries, loss: 0, rtt: 2, jitter: 0, alive: true, ...o });

describe('plpmtud: the search', () => {
  it('a path that carries full size costs one probe and one round trip', () => {
    const m = new Plpmtud(BASE, MAX, OVERHEAD);
    const clock = { now: 1000 };
    m.start(clock.now, true);
    run(m, path(1500), 100, clock, seeded(1));
    expect(m.state).toBe('complete');
    expect(m.current).toBe(MAX);
    expect(m.pmtu).toBe(MAX + OVERHEAD);
    // the one probe of the search, and confirmations while big traffic flows (every CONFIRM_INTERVAL)
    expect(m.probesSent).toBeLessThanOrEqual(1 + Math.ceil(100 / CONFIRM_INTERVAL));
  });

  it('finds every path MTU between the base and full size (the largest size the path carries, within the granularity)', () => {
    const rnd = seeded(7);
    const sizes = [1280, 1300, 1340, 1380, 1400, 1420, 1440, 1460, 1472, 1479];
    for (let i = 0; i < 60; i++) sizes.push(BASE_PMTU_V4 + Math.floor(rnd() * (MAX + OVERHEAD - BASE_PMTU_V4)));
    for (const pmtu of sizes) {
      const carries = pmtu - OVERHEAD;
      const truth = Math.min(carries, MAX); // the naive twin: what the path carries, within what is worth having
      const m = new Plpmtud(BASE, MAX, OVERHEAD);
      const clock = { now: 5000 };
      m.start(clock.now, true);
      const trace = run(m, path(carries), 4000, clock, rnd);
      expect(m.state, `pmtu ${pmtu}`).toBe('complete');
      expect(m.current, `pmtu ${pmtu}`).toBeLessThanOrEqual(truth);
      expect(m.current, `pmtu ${pmtu}`).toBeGreaterThan(truth - SEARCH_GRANULARITY);
      // settled (no longer above what the path carries) within the first probe's and the volley's timeouts
      const settled = trace.find(([, c]) => c <= truth)![0] - 5000;
      expect(settled, `pmtu ${pmtu}`).toBeLessThanOrEqual(400);
      // and it never went above it again
      for (const [t, c] of trace) if (t - 5000 > settled) expect(c).toBeLessThanOrEqual(truth);
    }
  });

  it('with loss and reordered acknowledgements it never settles above what the path carries, and mostly finds it', () => {
    let found = 0;
    const runs = 40;
    for (let seed = 1; seed <= runs; seed++) {
      const rnd = seeded(seed * 31);
      const carries = 1280 - OVERHEAD + Math.floor(rnd() * 200);
      const m = new Plpmtud(BASE, MAX, OVERHEAD);
      const clock = { now: 0 };
      m.start(clock.now, true);
      run(m, path(carries, { loss: 0.03, rtt: 20, jitter: 30 }), 8000, clock, rnd, true, 20);
      expect(m.current).toBeLessThanOrEqual(carries);
      expect(m.current).toBeGreaterThanOrEqual(BASE);
      if (m.current > carries - SEARCH_GRANULARITY) found++;
    }
    expect(found).toBeGreaterThanOrEqual(runs * 0.8);
  });

  it('a search after a black hole keeps the base (and says it is settling) until its volley is answered', () => {
    const m = new Plpmtud(BASE, MAX, OVERHEAD);
    m.start(0, false);
    expect(m.current).toBe(BASE);
    expect(m.settling && !m.optimistic).toBe(true);
    const sizes = m.due(0, 1, 0);
    // the volley: common sizes above the base, none above the largest worth having
    expect(sizes.length).toBeGreaterThan(3);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(MAX);
    expect(Math.min(...sizes)).toBeGreaterThan(BASE);
    const ids = sizes.map((s) => m.sent(s, 0));
    m.acked(ids[0], sizes[0], 5);
    expect(m.current).toBe(sizes[0]); // confirmed sizes may be used at once
    expect(m.settling).toBe(true);
  });

  it('an acknowledgement that arrived with another size than the probe proves nothing', () => {
    const m = new Plpmtud(BASE, MAX, OVERHEAD);
    m.start(0, false);
    const [s] = m.due(0, 1, 0);
    const id = m.sent(s, 0);
    m.acked(id, s - 1, 1);
    expect(m.low).toBe(BASE);
    m.acked(id + 1000, s, 1); // and one for a probe never sent
    expect(m.low).toBe(BASE);
  });
});

describe('plpmtud: black holes and raises', () => {
  it('a path that shrinks under traffic is noticed and left within ~1 s; the search then finds the new size', () => {
    const m = new Plpmtud(BASE, MAX, OVERHEAD);
    const clock = { now: 0 };
    const p = path(1500);
    m.start(0, true);
    run(m, p, 500, clock, seeded(3));
    expect(m.current).toBe(MAX);
    p.carries = 1280 - OVERHEAD;
    const shrunk = clock.now;
    const trace = run(m, p, 4000, clock, seeded(4));
    const below = trace.find(([, c]) => c <= p.carries)!;
    expect(below[0] - shrunk).toBeLessThanOrEqual(1000);
    expect(m.blackHoles).toBe(1);
    expect(m.state).toBe('complete');
    expect(m.current).toBeLessThanOrEqual(p.carries);
    expect(m.current).toBeGreaterThan(p.carries - SEARCH_GRANULARITY);
  });

  it('random loss on a full-size path is not a black hole', () => {
    const m = new Plpmtud(BASE, MAX, OVERHEAD);
    const clock = { now: 0 };
    m.start(0, true);
    run(m, path(1500, { loss: 0.01 }), 60_000, clock, seeded(11));
    expect(m.blackHoles).toBe(0);
    expect(m.current).toBe(MAX);
  });

  it('a path where nothing at all comes back is not an MTU problem (the liveness checks deal with it)', () => {
    const m = new Plpmtud(BASE, MAX, OVERHEAD);
    const clock = { now: 0 };
    const p = path(1500);
    m.start(0, true);
    run(m, p, 300, clock, seeded(5));
    p.carries = 0;
    p.alive = false;
    run(m, p, 2000, clock, seeded(6));
    expect(m.blackHoles).toBe(0);
    expect(m.state).toBe('error');
    expect(m.current).toBe(MAX);
    p.carries = 1500;
    p.alive = true;
    run(m, p, 1000, clock, seeded(6));
    expect(m.state).toBe('complete');
  });

  it('no confirmations while no big packets are sent', () => {
    const m = new Plpmtud(BASE, MAX, OVERHEAD);
    const clock = { now: 0 };
    m.start(0, true);
    run(m, path(1500), 100, clock, seeded(2), false);
    const n = m.probesSent;
    run(m, path(1500), 10_000, clock, seeded(2), false);
    expect(m.probesSent).toBe(n);
  });

  it('a path that grows is found at the raise timer (RFC 8899 PMTU_RAISE_TIMER)', () => {
    const m = new Plpmtud(BASE, MAX, OVERHEAD);
    const clock = { now: 0 };
    const p = path(1280 - OVERHEAD);
    m.start(0, true);
    run(m, p, 3000, clock, seeded(8), false);
    expect(m.current).toBe(1280 - OVERHEAD);
    p.carries = 1500;
    run(m, p, 10_000, clock, seeded(8), false);
    expect(m.current).toBe(1280 - OVERHEAD); // not before the timer
    clock.now = PMTU_RAISE_INTERVAL + 100;
    run(m, p, 3000, clock, seeded(8), false);
    expect(m.current).toBe(MAX);
  });

  it('a Packet Too Big lowers the size at once and a search below it confirms it', () => {
    const m = new Plpmtud(BASE, MAX, OVERHEAD);
    const clock = { now: 0 };
    const p = path(1500);
    m.start(0, true);
    run(m, p, 200, clock, seeded(9));
    p.carries = 1400 - OVERHEAD;
    m.tooBig(1400 - OVERHEAD, clock.now);
    expect(m.current).toBe(1400 - OVERHEAD);
    run(m, p, 3000, clock, seeded(9));
    expect(m.current).toBe(1400 - OVERHEAD);
    // one below the base is taken as the base
    m.tooBig(100, clock.now);
    expect(m.current).toBe(BASE);
  });

  it('a lower local limit (setMax) takes effect at once', () => {
    const m = new Plpmtud(BASE, MAX, OVERHEAD);
    m.start(0, true);
    m.setMax(1300, 0);
    expect(m.current).toBe(1300);
    expect(m.max).toBe(1300);
    m.setMax(10, 0);
    expect(m.max).toBe(BASE);
  });
});
