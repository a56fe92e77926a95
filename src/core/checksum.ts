/**
 * The Internet checksum (RFC 1071): the 16-bit one's complement of the one's complement sum of
 * the data taken as big-endian 16-bit words, an odd last byte padded with a zero byte. Shared by
 * the tunnel-edge builders (icmp.ts, fragment.ts, mss.ts); nothing here allocates.
 *
 * Sums are carried in a plain JS number and folded only at the end: every addend is at most
 * 0xffff, so a sum over a 64 KiB packet stays far below 2^53 and no carry is ever lost.
 */

/** Add the bytes b[off..off+len) to the running sum `acc` (unfolded). */
export function sumWords(b: Uint8Array, off: number, len: number, acc: number): number {
  const end = off + len;
  let i = off;
  for (; i + 1 < end; i += 2) acc += (b[i] << 8) | b[i + 1];
  if (i < end) acc += b[i] << 8;
  return acc;
}

/** Fold an unfolded sum into 16 bits with end-around carries (RFC 1071 §4.1). */
export function foldSum(acc: number): number {
  while (acc > 0xffff) acc = (acc & 0xffff) + Math.floor(acc / 0x10000);
  return acc;
}

/** The checksum field for a running sum taken with the checksum field itself zero. */
export function finishChecksum(acc: number): number {
  return ~foldSum(acc) & 0xffff;
}

/** The IPv6 pseudo-header sum (RFC 8200 §8.1) for an upper-layer packet of `upperLen` bytes. */
export function sumIPv6Pseudo(
  src: Uint8Array,
  srcOff: number,
  dst: Uint8Array,
  dstOff: number,
  upperLen: number,
  nextHeader: number,
): number {
  let acc = sumWords(src, srcOff, 16, 0);
  acc = sumWords(dst, dstOff, 16, acc);
  // upper-layer length as 32 bits, three zero bytes, then the next header value
  return acc + Math.floor(upperLen / 0x10000) + (upperLen & 0xffff) + nextHeader;
}

/** The IPv4 pseudo-header sum (RFC 9293 §3.1) for an upper-layer packet of `upperLen` bytes. */
export function sumIPv4Pseudo(b: Uint8Array, ipOff: number, upperLen: number, protocol: number): number {
  // source and destination addresses are adjacent at offsets 12..19
  return sumWords(b, ipOff + 12, 8, 0) + protocol + upperLen;
}
