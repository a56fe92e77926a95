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
 *   PUNCH_OPEN      (no body; version 2)   — "I have just sent NAT openers (punch.ts) toward the
 *                     candidates a lighthouse gave me for you: your probes to me get through now".
 *                     Full-size probes to a punched IPv4 candidate wait for it, so that no probe
 *                     reaches the other side's NAT before that side's own opener left it.
 *   PMTU_PROBE      id:u32be ‖ zeros       (version 3) — a path MTU probe (pmtu.ts, RFC 8899 §4.1):
 *                     padded to the size being tried; the datagram's length is the measurement.
 *   PMTU_ACK        id:u32be ‖ size:u16be  — "your probe `id` arrived here, `size` bytes on the wire",
 *                     sent on the path the probe came from.
 *
 * Lighthouses (see lighthouse.ts), between a member and a lighthouse only:
 *   LOOKUP          key:32                  — member → lighthouse: "where can I reach this peer?"
 *   CANDIDATES      flags:u8 (bit 0 = answer to your LOOKUP; 0 = punch request) ‖ key:32 ‖
 *                   count:u8 ‖ count × (address:16 ‖ port:u16be)
 *                   — lighthouse → member: the addresses the peer `key` may be reached at (its
 *                     reflexive address as the lighthouse sees it first, then the ones it
 *                     announced); probe them now. Sent to the asker and, at the same time, to the
 *                     peer it asked about (with the asker's addresses), so both NATs open.
 *   RELAY           key:32 (to) ‖ len:u16be ‖ datagram:len
 *                   — member → lighthouse: pass this WireGuard datagram (of the member's own
 *                     session with `key`, so opaque to the lighthouse) on to `key`.
 *   RELAYED         key:32 (from) ‖ len:u16be ‖ datagram:len
 *                   — lighthouse → member: a datagram that `key` asked to be relayed to you.
 */

export const EXT_MARKER = 0x0b;
/** 2: PUNCH_OPEN. 3: PMTU_PROBE and PMTU_ACK. */
export const EXT_VERSION = 4;

export const EXT_HELLO = 1;
export const EXT_PATH_CHALLENGE = 2;
export const EXT_PATH_RESPONSE = 3;
export const EXT_ADDRESSES = 4;
export const EXT_LOOKUP = 5;
export const EXT_CANDIDATES = 6;
export const EXT_RELAY = 7;
export const EXT_RELAYED = 8;
export const EXT_PUNCH_OPEN = 9;
export const EXT_PMTU_PROBE = 10;
export const EXT_PMTU_ACK = 11;
/** Mesh membership (membership.ts): a piece of a certificate or revocation list, or a request for one. */
export const EXT_CERT = 12;
/** Mesh directory (directory.ts): where is the member holding this overlay address? */
export const EXT_LOOKUP_ADDR = 13;
/** Names (names.ts): where is the member (or a gateway's device) called this? And the answer. */
export const EXT_LOOKUP_NAME = 14;
export const EXT_NAME_ANSWER = 15;
/** A gateway tells its lighthouses the names and addresses of its stock WireGuard devices (names.ts). */
export const EXT_NAMES = 16;
/** `keymesh ping` (names.ts): answered with PONG on the path the PING came over. */
export const EXT_PING = 17;
export const EXT_PONG = 18;
/** A DNS name on the wire: length byte ‖ ASCII, at most this long (RFC 1035's 253 characters). */
export const MAX_NAME = 253;
/** Names in one EXT_NAMES message, and addresses per name. */
export const MAX_NAMES_PER_MESSAGE = 16;
export const MAX_NAME_ADDRESSES = 4;
/** What an EXT_CERT message carries. */
export const CERT_OWN = 1; // the sender's own node certificate
export const CERT_CRL = 2; // the newest revocation list the sender holds
export const CERT_INTRODUCED = 3; // a lighthouse passing on another member's certificate
export const CERT_REQUEST = 4; // "send me your certificate" (no data)
/** Bytes of a certificate or list per EXT_CERT message: well inside the smallest tunnel MTU keymesh uses. */
export const CERT_CHUNK = 480;
/** The largest blob EXT_CERT reassembles (a certificate is capped at 4 KiB; a list may be larger). */
export const MAX_BLOB = 256 * 1024;
export const KEY_LEN = 32;
/** RELAY/RELAYED header before the datagram: marker, type, key, length. */
export const RELAY_HEADER = 2 + KEY_LEN + 2;
/** Enough for every address of a well-connected host, and well inside one MTU. */
export const MAX_ADDRESSES = 32;

export const TOKEN_LEN = 8;

export type ExtMessage =
  | { type: typeof EXT_HELLO; reply: boolean; version: number }
  | { type: typeof EXT_PATH_CHALLENGE; token: Uint8Array }
  | { type: typeof EXT_PATH_RESPONSE; token: Uint8Array }
  | { type: typeof EXT_ADDRESSES; addresses: Array<{ addr: Uint8Array; port: number }> }
  | { type: typeof EXT_LOOKUP; key: Uint8Array }
  | { type: typeof EXT_CANDIDATES; answer: boolean; key: Uint8Array; addresses: Array<{ addr: Uint8Array; port: number }> }
  /** `data` is a view into the caller's buffer: valid only while the message is handled. */
  | { type: typeof EXT_RELAY; key: Uint8Array; data: Uint8Array }
  | { type: typeof EXT_RELAYED; key: Uint8Array; data: Uint8Array }
  | { type: typeof EXT_PUNCH_OPEN }
  /** PMTU_PROBE's `size` is not on the wire (the padding is): 0 when writing, the plaintext length when parsed. */
  | { type: typeof EXT_PMTU_PROBE | typeof EXT_PMTU_ACK; id: number; size: number }
  /** bytes [offset, offset + data.length) of a blob of `total` bytes; `data` is a view, valid while handled. */
  | { type: typeof EXT_CERT; purpose: number; total: number; offset: number; data: Uint8Array }
  /** `addr`: 16 bytes, IPv4-mapped for IPv4. */
  | { type: typeof EXT_LOOKUP_ADDR; addr: Uint8Array }
  | { type: typeof EXT_LOOKUP_NAME; name: string }
  /** `key`: the holder (a member, or the gateway of a device); `addresses`: 16 bytes each, IPv4-mapped. */
  | { type: typeof EXT_NAME_ANSWER; name: string; found: boolean; key: Uint8Array; addresses: Uint8Array[] }
  /** `first`: the first message of a full list (the receiver drops what the sender told it before). */
  | { type: typeof EXT_NAMES; first: boolean; names: Array<{ name: string; addresses: Uint8Array[] }> }
  | { type: typeof EXT_PING | typeof EXT_PONG; token: Uint8Array };

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
      const addresses = parseAddressList(b, off + 2, len - 2);
      return addresses ? { type, addresses } : null;
    }
    case EXT_LOOKUP:
      if (len < 2 + KEY_LEN) return null;
      return { type, key: b.slice(off + 2, off + 2 + KEY_LEN) };
    case EXT_CANDIDATES: {
      if (len < 3 + KEY_LEN) return null;
      const addresses = parseAddressList(b, off + 3 + KEY_LEN, len - 3 - KEY_LEN);
      if (!addresses) return null;
      return { type, answer: (b[off + 2] & 1) === 1, key: b.slice(off + 3, off + 3 + KEY_LEN), addresses };
    }
    case EXT_RELAY:
    case EXT_RELAYED: {
      if (len < RELAY_HEADER) return null;
      const n = (b[off + 2 + KEY_LEN] << 8) | b[off + 3 + KEY_LEN];
      if (n === 0 || len < RELAY_HEADER + n) return null;
      return { type, key: b.slice(off + 2, off + 2 + KEY_LEN), data: b.subarray(off + RELAY_HEADER, off + RELAY_HEADER + n) } as ExtMessage;
    }
    case EXT_PUNCH_OPEN:
      return { type };
    case EXT_PMTU_PROBE:
      if (len < 6) return null;
      return { type, id: readU32(b, off + 2), size: len };
    case EXT_PMTU_ACK:
      if (len < 8) return null;
      return { type, id: readU32(b, off + 2), size: (b[off + 6] << 8) | b[off + 7] };
    case EXT_CERT: {
      // purpose:u8 ‖ total:u24be ‖ offset:u24be ‖ data
      if (len < 9) return null;
      const total = (b[off + 3] << 16) | (b[off + 4] << 8) | b[off + 5];
      const offset = (b[off + 6] << 16) | (b[off + 7] << 8) | b[off + 8];
      const purpose = b[off + 2];
      if (purpose < CERT_OWN || purpose > CERT_REQUEST || total > MAX_BLOB || offset > total) return null;
      // the transport padding follows the data: take exactly what is left of the blob, or one chunk
      const n = Math.min(len - 9, total - offset, CERT_CHUNK);
      if (purpose !== CERT_REQUEST && (n <= 0 || (offset + n < total && n < CERT_CHUNK))) return null;
      return { type, purpose, total, offset, data: b.subarray(off + 9, off + 9 + Math.max(n, 0)) };
    }
    case EXT_LOOKUP_ADDR:
      if (len < 18) return null;
      return { type, addr: b.slice(off + 2, off + 18) };
    case EXT_LOOKUP_NAME: {
      const n = readName(b, off + 2, off + len);
      return n ? { type, name: n.name } : null;
    }
    case EXT_NAME_ANSWER: {
      // found:u8 ‖ key:32 ‖ name ‖ count:u8 ‖ count × address:16
      if (len < 3 + KEY_LEN) return null;
      const n = readName(b, off + 3 + KEY_LEN, off + len);
      if (!n) return null;
      const a = readAddrs(b, n.end, off + len);
      return a ? { type, found: (b[off + 2] & 1) === 1, key: b.slice(off + 3, off + 3 + KEY_LEN), name: n.name, addresses: a.addrs } : null;
    }
    case EXT_NAMES: {
      // flags:u8 (1: first) ‖ count:u8 ‖ count × (name ‖ count:u8 ‖ addresses)
      if (len < 4) return null;
      const count = b[off + 3];
      if (count > MAX_NAMES_PER_MESSAGE) return null;
      const names: Array<{ name: string; addresses: Uint8Array[] }> = [];
      let at = off + 4;
      for (let i = 0; i < count; i++) {
        const n = readName(b, at, off + len);
        if (!n) return null;
        const a = readAddrs(b, n.end, off + len);
        if (!a) return null;
        names.push({ name: n.name, addresses: a.addrs });
        at = a.end;
      }
      return { type, first: (b[off + 2] & 1) === 1, names };
    }
    case EXT_PING:
    case EXT_PONG:
      if (len < 2 + TOKEN_LEN) return null;
      return { type, token: b.slice(off + 2, off + 2 + TOKEN_LEN) };
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
  if (m.type === EXT_PUNCH_OPEN) return 2;
  if (m.type === EXT_PMTU_PROBE || m.type === EXT_PMTU_ACK) {
    writeU32(b, off + 2, m.id);
    if (m.type === EXT_PMTU_PROBE) return 6;
    b[off + 6] = (m.size >> 8) & 0xff;
    b[off + 7] = m.size & 0xff;
    return 8;
  }
  if (m.type === EXT_CERT) {
    b[off + 2] = m.purpose;
    for (const [at, v] of [[3, m.total], [6, m.offset]]) {
      b[off + at] = (v >>> 16) & 0xff;
      b[off + at + 1] = (v >>> 8) & 0xff;
      b[off + at + 2] = v & 0xff;
    }
    b.set(m.data, off + 9);
    return 9 + m.data.length;
  }
  if (m.type === EXT_LOOKUP_ADDR) {
    b.set(m.addr, off + 2);
    return 18;
  }
  if (m.type === EXT_LOOKUP_NAME) return 2 + writeName(b, off + 2, m.name);
  if (m.type === EXT_NAME_ANSWER) {
    b[off + 2] = m.found ? 1 : 0;
    b.set(m.key, off + 3);
    let at = off + 3 + KEY_LEN;
    at += writeName(b, at, m.name);
    at += writeAddrs(b, at, m.addresses);
    return at - off;
  }
  if (m.type === EXT_NAMES) {
    const list = m.names.slice(0, MAX_NAMES_PER_MESSAGE);
    b[off + 2] = m.first ? 1 : 0;
    b[off + 3] = list.length;
    let at = off + 4;
    for (const e of list) {
      at += writeName(b, at, e.name);
      at += writeAddrs(b, at, e.addresses);
    }
    return at - off;
  }
  if (m.type === EXT_ADDRESSES) return 2 + writeAddressList(b, off + 2, m.addresses);
  if (m.type === EXT_LOOKUP) {
    b.set(m.key, off + 2);
    return 2 + KEY_LEN;
  }
  if (m.type === EXT_CANDIDATES) {
    b[off + 2] = m.answer ? 1 : 0;
    b.set(m.key, off + 3);
    return 3 + KEY_LEN + writeAddressList(b, off + 3 + KEY_LEN, m.addresses);
  }
  if (m.type === EXT_RELAY || m.type === EXT_RELAYED) {
    b.set(m.key, off + 2);
    b[off + 2 + KEY_LEN] = m.data.length >> 8;
    b[off + 3 + KEY_LEN] = m.data.length & 0xff;
    b.set(m.data, off + RELAY_HEADER);
    return RELAY_HEADER + m.data.length;
  }
  b.set((m as { token: Uint8Array }).token, off + 2);
  return 2 + TOKEN_LEN;
}

function readU32(b: Uint8Array, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}

function writeU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
}

/** count:u8 ‖ count × (address:16 ‖ port:u16be) at b[off..off+len); null when malformed. */
function parseAddressList(b: Uint8Array, off: number, len: number): Array<{ addr: Uint8Array; port: number }> | null {
  if (len < 1) return null;
  const n = b[off];
  if (n > MAX_ADDRESSES || len < 1 + n * 18) return null;
  const addresses: Array<{ addr: Uint8Array; port: number }> = [];
  for (let i = 0; i < n; i++) {
    const o = off + 1 + i * 18;
    addresses.push({ addr: b.slice(o, o + 16), port: (b[o + 16] << 8) | b[o + 17] });
  }
  return addresses;
}

function writeAddressList(b: Uint8Array, off: number, list: Array<{ addr: Uint8Array; port: number }>): number {
  const n = Math.min(list.length, MAX_ADDRESSES);
  b[off] = n;
  for (let i = 0; i < n; i++) {
    const o = off + 1 + i * 18;
    b.set(list[i].addr, o);
    b[o + 16] = list[i].port >> 8;
    b[o + 17] = list[i].port & 0xff;
  }
  return 1 + n * 18;
}

/** length:u8 ‖ ASCII name (lowercase letters, digits, '-', '.'), within b[off..end); null when malformed. */
function readName(b: Uint8Array, off: number, end: number): { name: string; end: number } | null {
  if (off >= end) return null;
  const n = b[off];
  if (n === 0 || n > MAX_NAME || off + 1 + n > end) return null;
  let name = '';
  for (let i = 0; i < n; i++) {
    const c = b[off + 1 + i];
    // a-z 0-9 - .
    if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2e)) return null;
    name += String.fromCharCode(c);
  }
  return { name, end: off + 1 + n };
}

function writeName(b: Uint8Array, off: number, name: string): number {
  const n = Math.min(name.length, MAX_NAME);
  b[off] = n;
  for (let i = 0; i < n; i++) b[off + 1 + i] = name.charCodeAt(i) & 0x7f;
  return 1 + n;
}

/** count:u8 ‖ count × address:16 within b[off..end); null when malformed. */
function readAddrs(b: Uint8Array, off: number, end: number): { addrs: Uint8Array[]; end: number } | null {
  if (off >= end) return null;
  const n = b[off];
  if (n > MAX_NAME_ADDRESSES || off + 1 + n * 16 > end) return null;
  const addrs: Uint8Array[] = [];
  for (let i = 0; i < n; i++) addrs.push(b.slice(off + 1 + i * 16, off + 17 + i * 16));
  return { addrs, end: off + 1 + n * 16 };
}

function writeAddrs(b: Uint8Array, off: number, addrs: Uint8Array[]): number {
  const n = Math.min(addrs.length, MAX_NAME_ADDRESSES);
  b[off] = n;
  for (let i = 0; i < n; i++) b.set(addrs[i], off + 1 + i * 16);
  return 1 + n * 16;
}
