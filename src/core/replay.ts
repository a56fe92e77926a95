/**
 * Sliding-window replay filter for transport counters (RFC 6479's bitmap ring, as the kernel's
 * counter.c and wireguard-go's replay.Filter). The ring holds RING_BITS bits in 32-bit words; the
 * window is the ring less one word, so advancing never clears bits still inside the window.
 *
 * Counters are 64-bit and arrive as two unsigned 32-bit halves (hi, lo): no bigint and no 2^53
 * shortcut on the hot path. check() runs before AEAD and records nothing; commit() runs after the
 * packet authenticated, so forged packets can neither advance nor poison the window.
 */
import { REJECT_AFTER_MESSAGES_HI, REJECT_AFTER_MESSAGES_LO } from './constants.js';

const WORD_BITS = 32;
const RING_WORDS = 256; // 8192 bits
const RING_BITS = RING_WORDS * WORD_BITS;
/** A counter up to this far behind the newest accepted one is still accepted: 8160 (≥ the kernel's 8128). */
export const REPLAY_WINDOW_SIZE = RING_BITS - WORD_BITS;
const TWO32 = 0x100000000;
const RING_MASK = RING_WORDS - 1;
/** Ring words per unit of the high half: 2^32 / 32. */
const WORDS_PER_HI = TWO32 / WORD_BITS;

export class ReplayWindow {
  private readonly ring = new Uint32Array(RING_WORDS);
  /** The greatest counter accepted so far, as halves; `empty` until the first commit. */
  private lastHi = 0;
  private lastLo = 0;
  private empty = true;

  /** True if (hi, lo) has not been seen, is inside the window, and is below REJECT_AFTER_MESSAGES. */
  check(hi: number, lo: number): boolean {
    if (hi > REJECT_AFTER_MESSAGES_HI || (hi === REJECT_AFTER_MESSAGES_HI && lo >= REJECT_AFTER_MESSAGES_LO)) return false;
    if (this.empty) return true;
    // distance = last − counter, computed in doubles: exact while hi differences are small, and
    // any huge difference is simply "far outside the window".
    const ahead = (hi - this.lastHi) * TWO32 + (lo - this.lastLo);
    if (ahead > 0) return true;
    if (-ahead > REPLAY_WINDOW_SIZE) return false;
    return (this.ring[wordIndex(lo)] & bit(lo)) === 0;
  }

  /** True if (hi, lo) is above every counter accepted so far (ask before commit). */
  isNewest(hi: number, lo: number): boolean {
    return this.empty || (hi - this.lastHi) * TWO32 + (lo - this.lastLo) > 0;
  }

  /** Record (hi, lo) as seen. Returns false if it was already seen or is now outside the window. */
  commit(hi: number, lo: number): boolean {
    if (!this.check(hi, lo)) return false;
    if (this.empty) {
      this.empty = false;
      this.lastHi = hi;
      this.lastLo = lo;
      this.ring.fill(0);
      this.ring[wordIndex(lo)] |= bit(lo);
      return true;
    }
    const ahead = (hi - this.lastHi) * TWO32 + (lo - this.lastLo);
    if (ahead > 0) {
      // Clear the ring words the window slides over, i.e. those after the newest counter's word
      // up to and including the new counter's word (all of them if it jumps a whole ring). The
      // word distance is built from the differences of the halves, so it is exact whenever it is
      // below the ring size, at any counter value up to 2^64. (Subtracting two absolute word
      // numbers held in doubles would round once counters pass 2^58 and clear the wrong number
      // of words — forgetting counters still inside the window, i.e. accepting replays.)
      const words = (hi - this.lastHi) * WORDS_PER_HI + ((lo >>> 5) - (this.lastLo >>> 5));
      const steps = words < RING_WORDS ? words : RING_WORDS;
      const from = wordIndex(this.lastLo);
      for (let i = 1; i <= steps; i++) this.ring[(from + i) & RING_MASK] = 0;
      this.lastHi = hi;
      this.lastLo = lo;
    }
    this.ring[wordIndex(lo)] |= bit(lo);
    return true;
  }

  reset(): void {
    this.ring.fill(0);
    this.lastHi = this.lastLo = 0;
    this.empty = true;
  }
}

/** Ring slot of a counter: (counter / 32) mod RING_WORDS. 2^32 / 32 is a multiple of RING_WORDS, so only lo matters. */
function wordIndex(lo: number): number {
  return (lo >>> 5) & RING_MASK;
}

/** The counter's bit inside its ring word. */
function bit(lo: number): number {
  return 1 << (lo & 31);
}
