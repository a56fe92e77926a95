/**
 * TAI64N timestamps (cr.yp.to/libtai/tai64.html) as WireGuard uses them in handshake initiations
 * (whitepaper §5.4.2): 8 bytes big-endian seconds since 1970 offset by 2^62 + 10 (the TAI64 label
 * plus the 10 s TAI−UTC difference at 1970), then 4 bytes big-endian nanoseconds.
 *
 * The responder only accepts an initiation whose timestamp is strictly greater than the last one
 * it accepted from that peer, which defeats replay of captured initiations. As wireguard-go and
 * the kernel do, the nanoseconds are rounded down to a multiple of 2^24 ns (~16.8 ms) so the
 * timestamp does not leak a fine-grained clock reading to an observer who can decrypt it.
 */

const TAI64_BASE = 2n ** 62n + 10n;
const WHITENING_MASK = 0xffffff; // 2^24 − 1 ns

export function tai64n(unixMillis: number, out: Uint8Array = new Uint8Array(12)): Uint8Array {
  const ms = Math.floor(unixMillis);
  const seconds = BigInt(Math.floor(ms / 1000)) + TAI64_BASE;
  let nanos = (ms - Math.floor(ms / 1000) * 1000) * 1_000_000;
  nanos -= nanos & WHITENING_MASK;
  let s = seconds;
  for (let i = 7; i >= 0; i--) {
    out[i] = Number(s & 0xffn);
    s >>= 8n;
  }
  out[8] = (nanos >>> 24) & 0xff;
  out[9] = (nanos >>> 16) & 0xff;
  out[10] = (nanos >>> 8) & 0xff;
  out[11] = nanos & 0xff;
  return out;
}

/** Big-endian comparison of two 12-byte timestamps: negative, zero or positive. */
export function compareTai64n(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < 12; i++) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return 0;
}
