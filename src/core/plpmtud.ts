/**
 * Packetization Layer Path MTU Discovery for one path (RFC 8899, "DPLPMTUD"), as a pure state
 * machine: no engine, no I/O, no clock — the caller says what it sent, what came back and what
 * time it is, and asks what to probe next. pmtu.ts sends the probes (padded PMTU_PROBE messages on
 * the extension channel, so their acknowledgements are authenticated: an attacker can neither
 * forge an answer nor make us believe a path carries more than it does) and applies the result.
 *
 * Sizes here are WireGuard datagram sizes — the UDP payload on this path, what we hand to the
 * socket. `overhead` is what the outer packet adds (IP and UDP headers, and on a relay path the
 * RELAY wrapping to the lighthouse), so the IP-level path MTU is `size + overhead`.
 *
 *                     ┌───────── ack of the largest probe ──────────┐
 *                     │                                              ▼
 *   BASE ──start──▶ SEARCHING (a volley, then halving) ──range < G──▶ SEARCH_COMPLETE
 *                     ▲          │                                    │  │
 *                     │          │ base lost too: leave it to the     │  │ PMTU_RAISE_TIMER (600 s),
 *                     │          ▼ liveness checks (path dead)        │  │ or the path becomes active
 *                     │        ERROR                                  │  ▼
 *                     └─────── BLACK HOLE: MAX_PROBES confirmations ◀─┘ SEARCHING (from the result)
 *                              of `current` lost while smaller
 *                              packets still arrive → current = base
 *
 * A search first tries the largest size alone (an untried path usually carries it: one probe, one
 * round trip). If that is lost — or the search follows a black hole — a volley goes next: one probe
 * at each common path MTU between what is confirmed and what is not ruled out, sent together, so
 * one round trip and one timeout find the step (most paths carry one of a few sizes: 1500, 1492
 * PPPoE, 1480, ~1420–1460 LTE, 1400, 1280). Halving between the largest acknowledged and the
 * smallest lost size then refines it to SEARCH_GRANULARITY. Why a volley rather than RFC 8899's one
 * probe at a time: a host told a smaller MTU by an ICMP message keeps it for ten minutes (Linux's
 * mtu_expires), so the first size we tell it should already be the right one, and soon.
 *
 * An untried path is used at full size (`optimistic`): most paths carry it, and a search that
 * finds less lowers `current` one timeout later. After a black hole, `current` is the base until
 * the volley says more; during that round (`settling`) pmtu.ts drops oversized packets silently
 * instead of sending the ICMP that would pin the host to the base.
 */

/** RFC 8899 §5.1.2: BASE_PLPMTU for IPv4 (1200 recommended) and IPv6 (the IPv6 minimum MTU), as IP-level sizes. */
export const BASE_PMTU_V4 = 1200;
export const BASE_PMTU_V6 = 1280;
/** RFC 8899 §5.1.2 MAX_PROBES: unacknowledged probes of one size before it is taken as too big. */
export const MAX_PROBES = 3;
/** Search rounds (after the volley) give up on a size after this many misses: a size is re-probed once before it is ruled out. */
export const SEARCH_MAX_PROBES = 2;
/** RFC 8899 §5.1.1 PMTU_RAISE_TIMER: a completed search tries again for more this often. */
export const PMTU_RAISE_INTERVAL = 600_000;
/** While datagrams above the base go out on the path, `current` is confirmed this often (black hole detection). */
export const CONFIRM_INTERVAL = 100;
/** "Big datagrams are being sent": one went out within this window. */
export const BIG_SENT_WINDOW = 1000;
/** A probe unanswered after max(PROBE_TIMEOUT_RTTS × srtt, PROBE_TIMEOUT_MIN) ms is lost. */
export const PROBE_TIMEOUT_RTTS = 3;
export const PROBE_TIMEOUT_MIN = 100;
/** The search ends when the range left is smaller than this (bytes). */
export const SEARCH_GRANULARITY = 8;
/** Common IP-level path MTUs, probed together at the start of a search (RFC 8899 §5.3.2 suggests a table of common sizes). */
export const COMMON_PMTUS = [1280, 1340, 1380, 1400, 1420, 1440, 1460, 1472, 1480, 1492, 1500] as const;

export type PlpmtudState = 'base' | 'searching' | 'complete' | 'error';

export interface Probe {
  id: number;
  size: number;
  sentAt: number;
}

export class Plpmtud {
  state: PlpmtudState = 'base';
  /** The datagram size traffic may use on this path now. */
  current: number;
  /** Largest size acknowledged (or the base, assumed). */
  low: number;
  /** Largest size not yet ruled out. */
  high: number;
  /** A volley round is out and `current` may still rise with its answers (see the top). */
  settling = false;
  /** The search started from full size (a path never searched): `current` stays there until the volley is answered. */
  optimistic = false;
  /** This search's first rounds: the largest size alone (optimistic searches), then the volley. */
  private triedTop = false;
  private volleySent = false;
  /** Probes in flight, and misses per size in the search since it started. */
  readonly outstanding: Probe[] = [];
  private readonly misses = new Map<number, number>();
  /** When the next probe (search step, confirmation or raise) is due; Infinity: none armed. */
  nextProbeAt = Infinity;
  /** Confirmation of `current` (black hole detection): consecutive losses, when the first of them went out. */
  confirmMisses = 0;
  firstMissAt = -Infinity;
  /** Last time a datagram larger than the base went out on this path. */
  bigSentAt = -Infinity;
  searchedAt = -Infinity;
  /** Statistics: probes and their bytes sent, black holes found. */
  probesSent = 0;
  probeBytes = 0;
  blackHoles = 0;
  private nextId = 1;

  constructor(
    /** Smallest size assumed to work (BASE_PLPMTU less overhead). */
    public base: number,
    /** Largest size worth having (the tunnel MTU plus WireGuard's 32 bytes), within the local interface's MTU. */
    public max: number,
    /** What the outer packet adds to a datagram (IP + UDP [+ relay]): IP-level PMTU = size + overhead. */
    public overhead: number,
  ) {
    if (this.max < this.base) this.max = this.base;
    this.current = this.max;
    this.low = this.base;
    this.high = this.max;
  }

  /** The IP-level path MTU in use (for `keymesh show`). */
  get pmtu(): number {
    return this.current + this.overhead;
  }

  /** The local interface (or the kernel's route) allows at most `max` now; a lower limit takes effect at once. */
  setMax(max: number, now: number): void {
    max = Math.max(this.base, max);
    if (max === this.max) return;
    const grew = max > this.max;
    this.max = max;
    if (this.current > max) this.current = max;
    if (this.low > max) this.low = max;
    this.high = Math.min(this.high, max);
    if (grew && this.state === 'complete') this.start(now, false);
  }

  /**
   * A Packet Too Big that quoted one of our datagrams said the path carries `size` (RFC 8899
   * §4.6.2): use it at once (never below the base) and confirm it with a search below it.
   */
  tooBig(size: number, now: number): void {
    size = Math.max(this.base, Math.min(size, this.max));
    if (size >= this.current) return;
    if (this.low > size) this.low = this.base;
    this.start(now, true);
    this.high = size;
    this.current = size;
  }

  /**
   * Start a search. `optimistic` (a path never searched): traffic uses the largest size until the
   * volley says otherwise. Otherwise traffic keeps what is confirmed (`low`, at least the base).
   */
  start(now: number, optimistic: boolean): void {
    this.state = 'searching';
    this.outstanding.length = 0;
    this.misses.clear();
    this.confirmMisses = 0;
    this.high = this.max;
    this.low = Math.max(this.base, Math.min(this.low, this.max));
    this.current = optimistic ? this.max : this.low;
    this.optimistic = optimistic;
    this.settling = true;
    this.triedTop = !optimistic;
    this.volleySent = false;
    this.searchedAt = now;
    this.nextProbeAt = now;
  }

  private timeout(srtt: number | null): number {
    return Math.max(PROBE_TIMEOUT_RTTS * (srtt ?? 0), PROBE_TIMEOUT_MIN);
  }

  /**
   * What to probe at `now` (sizes; empty when nothing is due). The caller sends each one and
   * reports it with sent(). `srtt` is the path's smoothed RTT (ms) or null; `heardAt` the last
   * time anything authenticated arrived on the path.
   */
  due(now: number, srtt: number | null, heardAt: number): number[] {
    this.expire(now, srtt, heardAt);
    if (now < this.nextProbeAt) return [];
    this.nextProbeAt = Infinity;
    if (this.state === 'searching') {
      if (this.outstanding.length > 0) return [];
      if (this.settling && !this.triedTop) {
        // most paths carry full size: one probe says so in a round trip
        this.triedTop = true;
        return [this.high];
      }
      if (this.settling && !this.volleySent) {
        // the volley: every common size between what is confirmed and what is not ruled out
        this.volleySent = true;
        const sizes: number[] = [];
        for (const m of COMMON_PMTUS) {
          const s = m - this.overhead;
          if (s > this.low && s <= this.high) sizes.push(s);
        }
        if (sizes.length === 0 && this.high > this.low) sizes.push(this.high);
        if (sizes.length === 0) return this.complete(now);
        return sizes;
      }
      if (this.high - this.low < SEARCH_GRANULARITY) return this.complete(now);
      // the largest size not ruled out yet, if it was lost only once; else halve the range
      const top = this.misses.get(this.high) ?? 0;
      if (top > 0 && top < SEARCH_MAX_PROBES) return [this.high];
      return [Math.floor((this.low + this.high + 1) / 2)];
    }
    if (this.state === 'complete' || this.state === 'error') {
      if (this.state === 'complete' && now - this.searchedAt >= PMTU_RAISE_INTERVAL && this.current < this.max) {
        this.start(now, false);
        return this.due(now, srtt, heardAt);
      }
      // confirm the size in use while packets of that size are being sent (black hole detection)
      if (this.outstanding.length === 0 && this.current > this.base && now - this.bigSentAt < BIG_SENT_WINDOW) {
        this.nextProbeAt = now + CONFIRM_INTERVAL;
        return [this.current];
      }
      this.armRaise();
    }
    return [];
  }

  /** The caller sent a probe of `size` bytes; returns its id (to put in the probe). */
  sent(size: number, now: number): number {
    const id = this.nextId;
    this.nextId = (this.nextId + 1) >>> 0 || 1;
    this.outstanding.push({ id, size, sentAt: now });
    this.probesSent++;
    this.probeBytes += size + this.overhead;
    return id;
  }

  /** When the next thing is due (a probe's timeout or the next probe). */
  deadline(srtt: number | null): number {
    let t = this.nextProbeAt;
    const to = this.timeout(srtt);
    for (const p of this.outstanding) t = Math.min(t, p.sentAt + to);
    return t;
  }

  /** A datagram of `size` bytes went out on the path (the data path calls this once per batch with its largest). */
  bigSent(size: number, now: number): boolean {
    if (size <= this.base) return false;
    this.bigSentAt = now;
    // a completed search not confirming (no big traffic lately) starts again now that there is some
    if ((this.state === 'complete' || this.state === 'error') && this.nextProbeAt > now + CONFIRM_INTERVAL && this.current > this.base) {
      this.nextProbeAt = now + CONFIRM_INTERVAL;
      return true;
    }
    return false;
  }

  /** The peer acknowledged probe `id` (it arrived with `size` bytes). Returns true when `current` changed. */
  acked(id: number, size: number, now: number): boolean {
    const i = this.outstanding.findIndex((p) => p.id === id);
    if (i < 0) return false;
    const p = this.outstanding[i];
    this.outstanding.splice(i, 1);
    if (size !== p.size) return false; // (a datagram that arrived at another size proves nothing about this one)
    const before = this.current;
    if (this.state === 'complete' || this.state === 'error') {
      if (p.size >= this.current) {
        this.confirmMisses = 0;
        this.firstMissAt = -Infinity;
        if (this.state === 'error') this.state = 'complete';
      }
      return false;
    }
    if (this.state !== 'searching') return false;
    this.low = Math.max(this.low, p.size);
    this.misses.delete(p.size);
    if (this.low >= this.high) {
      this.complete(now);
      return this.current !== before;
    }
    // traffic may use what is confirmed; an optimistic start keeps the top until the volley is answered
    if (!(this.settling && this.optimistic)) this.current = this.low;
    if (this.outstanding.length === 0) this.roundDone(now);
    return this.current !== before;
  }

  /** Probes out longer than the timeout are lost. */
  private expire(now: number, srtt: number | null, heardAt: number): void {
    const to = this.timeout(srtt);
    let lost = false;
    for (let i = 0; i < this.outstanding.length; ) {
      const p = this.outstanding[i];
      if (now - p.sentAt < to) {
        i++;
        continue;
      }
      this.outstanding.splice(i, 1);
      lost = true;
      this.lost(p, now, heardAt);
    }
    if (lost && this.state === 'searching' && this.outstanding.length === 0) this.roundDone(now);
  }

  private lost(p: Probe, now: number, heardAt: number): void {
    if (this.state === 'searching') {
      const n = (this.misses.get(p.size) ?? 0) + 1;
      this.misses.set(p.size, n);
      // the volley's sizes are ruled out at their first loss (only the largest lost below an acknowledged one is wrong, and that cannot be); later rounds allow one retry
      if (this.settling || n >= SEARCH_MAX_PROBES) this.high = Math.min(this.high, p.size - 1);
      return;
    }
    if (this.state !== 'complete' && this.state !== 'error') return;
    if (p.size < this.current) return;
    if (this.confirmMisses === 0) this.firstMissAt = p.sentAt;
    this.confirmMisses++;
    if (this.confirmMisses < MAX_PROBES) {
      this.nextProbeAt = now; // again at once: a lost confirmation is either loss or a black hole
      return;
    }
    if (heardAt > this.firstMissAt) {
      // Black hole (RFC 8899 §4.3): packets of the size in use vanish while smaller ones arrive.
      this.blackHoles++;
      const was = this.current;
      this.low = this.base;
      this.start(now, false);
      this.high = Math.max(this.base, was - 1);
    } else {
      // nothing at all comes back: not an MTU problem (the liveness checks deal with a dead path)
      this.state = 'error';
      this.confirmMisses = 0;
      this.nextProbeAt = now + CONFIRM_INTERVAL;
    }
  }

  /** Every probe of a round is answered or lost: settle `current`, and go on or finish. */
  private roundDone(now: number): void {
    if (this.settling && !this.volleySent && this.low < this.high) {
      this.nextProbeAt = now; // the largest size was lost: the volley next, `current` unchanged meanwhile
      return;
    }
    this.settling = this.optimistic = false;
    this.current = this.low;
    if (this.low >= this.high || this.high - this.low < SEARCH_GRANULARITY) {
      this.complete(now);
      return;
    }
    this.nextProbeAt = now;
  }

  private complete(now: number): number[] {
    this.state = 'complete';
    this.settling = this.optimistic = false;
    this.current = this.low;
    this.outstanding.length = 0;
    this.misses.clear();
    this.confirmMisses = 0;
    this.searchedAt = now;
    this.armRaise();
    return [];
  }

  private armRaise(): void {
    this.nextProbeAt = this.current < this.max ? this.searchedAt + PMTU_RAISE_INTERVAL : Infinity;
  }
}
