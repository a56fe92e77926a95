/**
 * Per-source token bucket for handshake messages while under load (the kernel's ratelimiter.c):
 * each source host may start RATELIMIT_PACKETS_PER_SECOND handshakes a second with a burst of
 * RATELIMIT_BURST, so one flooding host cannot starve the others even with valid cookies.
 */
import { RATELIMIT_BURST, RATELIMIT_PACKETS_PER_SECOND } from './constants.js';

const COST = 1000 / RATELIMIT_PACKETS_PER_SECOND; // ms of credit one packet costs
const MAX_CREDIT = COST * RATELIMIT_BURST;

export class RateLimiter {
  private readonly buckets = new Map<string, { credit: number; last: number }>();

  allow(key: string, now: number): boolean {
    let b = this.buckets.get(key);
    if (!b) {
      b = { credit: MAX_CREDIT, last: now };
      this.buckets.set(key, b);
    }
    b.credit = Math.min(MAX_CREDIT, b.credit + (now - b.last));
    b.last = now;
    if (b.credit < COST) return false;
    b.credit -= COST;
    return true;
  }

  /** Forget sources idle for a second or more (called from the engine's tick). */
  collect(now: number): void {
    for (const [k, b] of this.buckets) if (now - b.last >= 1000) this.buckets.delete(k);
  }

  get size(): number {
    return this.buckets.size;
  }
}
