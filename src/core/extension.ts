/**
 * The keymesh extension channel: control messages between two keymesh nodes, carried as
 * WireGuard transport payloads — so they are encrypted, authenticated and replay-protected by the
 * session's keys exactly like tunnel traffic — but shaped so they can never be mistaken for an IP
 * packet: the first byte's high nibble (the IP version field) is 0. A stock WireGuard peer
 * decrypts such a payload, sees IP version 0 and drops it (wireguard-go and the kernel both count
 * it as an invalid packet), so probing a stock peer costs it a few dropped packets and nothing else.
 *
 *   byte 0     EXT_MARKER (0x0b)
 *   byte 1     message type
 *   bytes 2…   body (fixed size per type; the transport padding after it is ignored)
 *
 *   HELLO           flags:u8 (bit 0 = this is a reply) ‖ version:u8
 *                   — "I speak keymesh"; sent after each handshake until the peer answers.
 *   PATH_CHALLENGE  token:8                 (RFC 9000 §8.2 in spirit)
 *   PATH_RESPONSE   token:8                 — echoes a challenge's token on the path it came from.
 *   ADDRESSES       count:u8 ‖ count × (address:16 ‖ port:u16be)
 *                   — every local address the sender can be reached at (IPv4 as ::ffff:a.b.c.d);
 *                     sent when a session with a keymesh peer starts and whenever the set changes.
 */

export const EXT_MARKER = 0x0b;
export const EXT_VERSION = 1;

export const EXT_HELLO = 1;
export const EXT_PATH_CHALLENGE = 2;
export const EXT_PATH_RESPONSE = 3;
export const EXT_ADDRESSES = 4;
/** Enough for every address of a well-connected host, and well inside one MTU. */
export const MAX_ADDRESSES = 32;

export const TOKEN_LEN = 8;

export type ExtMessage =
  | { type: typeof EXT_HELLO; reply: boolean; version: number }
  | { type: typeof EXT_PATH_CHALLENGE; token: Uint8Array }
  | { type: typeof EXT_PATH_RESPONSE; token: Uint8Array }
  | { type: typeof EXT_ADDRESSES; addresses: Array<{ addr: Uint8Array; port: number }> };

/** True if the decrypted payload at b[off..off+len) is an extension message (not an IP packet). */
export function isExtension(b: Uint8Array, off: number, len: number): boolean {
  return len >= 2 && b[off] === EXT_MARKER;
}

/** Parse an extension payload; null when malformed (hostile input is data). */
export function parseExtension(b: Uint8Array, off: number, len: number): ExtMessage | null {
  if (!isExtension(b, off, len)) return null;
  const type = b[off + 1];
  switch (type) {
    case EXT_HELLO:
      if (len < 4) return null;
      return { type, reply: (b[off + 2] & 1) === 1, version: b[off + 3] };
    case EXT_PATH_CHALLENGE:
    case EXT_PATH_RESPONSE:
      if (len < 2 + TOKEN_LEN) return null;
      return { type, token: b.slice(off + 2, off + 2 + TOKEN_LEN) };
    case EXT_ADDRESSES: {
      if (len < 3) return null;
      const n = b[off + 2];
      if (n > MAX_ADDRESSES || len < 3 + n * 18) return null;
      const addresses: Array<{ addr: Uint8Array; port: number }> = [];
      for (let i = 0; i < n; i++) {
        const o = off + 3 + i * 18;
        addresses.push({ addr: b.slice(o, o + 16), port: (b[o + 16] << 8) | b[o + 17] });
      }
      return { type, addresses };
    }
    default:
      return null;
  }
}

/** Write an extension message at b[off..]; returns its length. */
export function writeExtension(b: Uint8Array, off: number, m: ExtMessage): number {
  b[off] = EXT_MARKER;
  b[off + 1] = m.type;
  if (m.type === EXT_HELLO) {
    b[off + 2] = m.reply ? 1 : 0;
    b[off + 3] = m.version;
    return 4;
  }
  if (m.type === EXT_ADDRESSES) {
    const n = Math.min(m.addresses.length, MAX_ADDRESSES);
    b[off + 2] = n;
    for (let i = 0; i < n; i++) {
      const o = off + 3 + i * 18;
      b.set(m.addresses[i].addr, o);
      b[o + 16] = m.addresses[i].port >> 8;
      b[o + 17] = m.addresses[i].port & 0xff;
    }
    return 3 + n * 18;
  }
  b.set(m.token, off + 2);
  return 2 + TOKEN_LEN;
}
