/**
 * Just enough of IPv4 (RFC 791) and IPv6 (RFC 8200) headers to route inner packets: version,
 * the length the header claims, and where the source and destination addresses sit. Used on the
 * hot path, so nothing here allocates.
 */

export const IPV4_HEADER_MIN = 20;
export const IPV6_HEADER_SIZE = 40;
export const IPV4_SRC_OFFSET = 12;
export const IPV4_DST_OFFSET = 16;
export const IPV6_SRC_OFFSET = 8;
export const IPV6_DST_OFFSET = 24;

/** 4 or 6 for a packet whose header is complete; 0 otherwise. */
export function ipVersion(b: Uint8Array, off: number, len: number): 0 | 4 | 6 {
  if (len < 1) return 0;
  const v = b[off] >>> 4;
  if (v === 4) return len >= IPV4_HEADER_MIN ? 4 : 0;
  if (v === 6) return len >= IPV6_HEADER_SIZE ? 6 : 0;
  return 0;
}

/** The packet length the header declares (IPv4 total length, IPv6 40 + payload length). */
export function ipDeclaredLength(b: Uint8Array, off: number, version: 4 | 6): number {
  if (version === 4) return (b[off + 2] << 8) | b[off + 3];
  return IPV6_HEADER_SIZE + ((b[off + 4] << 8) | b[off + 5]);
}

/** Format an IPv4 or IPv6 address held in bytes (for logs and tests, not the hot path). */
export function formatAddress(a: Uint8Array): string {
  if (a.length === 4) return `${a[0]}.${a[1]}.${a[2]}.${a[3]}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((a[i] << 8) | a[i + 1]).toString(16));
  // compress the longest run of zero groups (RFC 5952 §4.2)
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}
