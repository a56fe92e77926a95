/**
 * TAI64N timestamps (cr.yp.to/libtai/tai64.html) as WireGuard puts them in handshake initiations
 * (whitepaper §5.4.2, the encrypted {t} field): 8 bytes big-endian seconds, labelled 2^62 + 10 +
 * Unix seconds (the TAI64 label of 1970 plus the 10 s TAI−UTC offset of that year, the label the
 * kernel and wireguard-go use; leap seconds since are ignored), then 4 bytes big-endian
 * nanoseconds.
 *
 * The responder accepts an initiation only if its timestamp is strictly greater than that of the
 * last initiation it accepted from the peer (whitepaper §5.1), which defeats replay of a captured
 * initiation. Only the order matters, so compareTai64n is a plain bytewise comparison.
 *
 * Whitening: as wireguard-go (`stamp`, whitenerMask = 2^24 − 1) and the kernel (ALIGN_DOWN of
 * tv_nsec to rounddown_pow_of_two(NSEC_PER_SEC / INITIATIONS_PER_SECOND)) do, the nanoseconds
 * are rounded down to a multiple of 2^24 ns (~16.8 ms). The timestamp is readable by the
 * responder (and by anyone who later learns the static keys); a fine-grained clock reading would
 * leak the sender's clock precisely and could help fingerprint the host or time side channels.
 * ~16.8 ms is the largest power of two below the 20 ms that responders require between two
 * initiations of a peer anyway (INITIATIONS_PER_SECOND = 50), so initiations far enough apart
 * to be accepted still carry strictly increasing timestamps.
 */

/** Nanosecond bits cleared by whitening: 2^24 − 1. */
export const TAI64N_WHITENER_MASK = 0xffffff;
/** High 32 bits of the TAI64 label 2^62 (the label of 1970-01-01 00:00:00 TAI is 2^62 + 10). */
const LABEL_HI = 0x40000000;
const TAI_MINUS_UTC_1970 = 10;
const TWO32 = 0x100000000;

/**
 * The whitened TAI64N timestamp of a Unix time in milliseconds, written into `out` (12 bytes,
 * allocated if not given) and returned.
 */
export function tai64n(unixMillis: number, out: Uint8Array = new Uint8Array(12)): Uint8Array {
  if (!Number.isFinite(unixMillis)) throw new RangeError(`tai64n: expected a finite time in milliseconds, got ${unixMillis}`);
  if (out.length < 12) throw new RangeError(`tai64n: expected an output of at least 12 bytes, got length=${out.length}`);
  const ms = Math.floor(unixMillis);
  const unixSeconds = Math.floor(ms / 1000);
  const nanos = (ms - unixSeconds * 1000) * 1_000_000; // 0 … 999,000,000 < 2^30
  const whitened = nanos - (nanos & TAI64N_WHITENER_MASK);
  // Seconds as two 32-bit halves: exact for any time a double holds in milliseconds.
  const s = unixSeconds + TAI_MINUS_UTC_1970;
  const carry = Math.floor(s / TWO32);
  writeU32(out, 0, LABEL_HI + carry);
  writeU32(out, 4, s - carry * TWO32);
  writeU32(out, 8, whitened);
  return out;
}

/** Bytewise big-endian comparison of two timestamps: negative, zero or positive. */
export function compareTai64n(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < 12; i++) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return 0;
}

function writeU32(out: Uint8Array, off: number, v: number): void {
  out[off] = v >>> 24;
  out[off + 1] = v >>> 16;
  out[off + 2] = v >>> 8;
  out[off + 3] = v;
}
