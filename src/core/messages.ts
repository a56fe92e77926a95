/**
 * Wire formats of WireGuard's four messages (whitepaper §5.4.2–§5.4.6). All integers are
 * little-endian. Parsers take hostile bytes and return null on any size or type mismatch; they
 * never throw and never copy — fields are views into the datagram.
 *
 *   initiation   (148 B)  type=1 ‖ 3×0 ‖ sender:u32 ‖ ephemeral:32 ‖ static:32+16 ‖ timestamp:12+16 ‖ mac1:16 ‖ mac2:16
 *   response     ( 92 B)  type=2 ‖ 3×0 ‖ sender:u32 ‖ receiver:u32 ‖ ephemeral:32 ‖ empty:0+16 ‖ mac1:16 ‖ mac2:16
 *   cookie reply ( 64 B)  type=3 ‖ 3×0 ‖ receiver:u32 ‖ nonce:24 ‖ cookie:16+16
 *   transport    (≥32 B)  type=4 ‖ 3×0 ‖ receiver:u32 ‖ counter:u64 ‖ packet:n+16
 */
import {
  COOKIE_REPLY_SIZE,
  INITIATION_SIZE,
  MESSAGE_COOKIE_REPLY,
  MESSAGE_INITIATION,
  MESSAGE_RESPONSE,
  MESSAGE_TRANSPORT_DATA,
  RESPONSE_SIZE,
  TRANSPORT_MIN_SIZE,
} from './constants.js';

export interface Initiation {
  senderIndex: number;
  ephemeral: Uint8Array;
  encryptedStatic: Uint8Array;
  encryptedTimestamp: Uint8Array;
  mac1: Uint8Array;
  mac2: Uint8Array;
  /** The whole message, for MAC computation. */
  bytes: Uint8Array;
}

export interface Response {
  senderIndex: number;
  receiverIndex: number;
  ephemeral: Uint8Array;
  encryptedNothing: Uint8Array;
  mac1: Uint8Array;
  mac2: Uint8Array;
  bytes: Uint8Array;
}

export interface CookieReply {
  receiverIndex: number;
  nonce: Uint8Array;
  encryptedCookie: Uint8Array;
}

/** Offsets of mac1 and mac2 in the two handshake messages. */
export const INITIATION_MAC1_OFFSET = 116;
export const INITIATION_MAC2_OFFSET = 132;
export const RESPONSE_MAC1_OFFSET = 60;
export const RESPONSE_MAC2_OFFSET = 76;

export function readU32(b: Uint8Array, o: number): number {
  return (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
}

export function writeU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
  b[o + 2] = (v >>> 16) & 0xff;
  b[o + 3] = (v >>> 24) & 0xff;
}

/** The first four bytes of every message: type then three reserved zero bytes. */
function header(b: Uint8Array, type: number): boolean {
  return b[0] === type && b[1] === 0 && b[2] === 0 && b[3] === 0;
}

/**
 * The message type of the datagram b[off .. off+len), or 0 when it is not a well-formed
 * WireGuard message (unknown type, non-zero reserved bytes, or a size the type does not allow).
 */
export function messageType(b: Uint8Array, off = 0, len = b.length - off): number {
  if (len < 4 || b[off + 1] !== 0 || b[off + 2] !== 0 || b[off + 3] !== 0) return 0;
  const t = b[off];
  if (t === MESSAGE_INITIATION) return len === INITIATION_SIZE ? t : 0;
  if (t === MESSAGE_RESPONSE) return len === RESPONSE_SIZE ? t : 0;
  if (t === MESSAGE_COOKIE_REPLY) return len === COOKIE_REPLY_SIZE ? t : 0;
  if (t === MESSAGE_TRANSPORT_DATA) return len >= TRANSPORT_MIN_SIZE ? t : 0;
  return 0;
}

export function parseInitiation(b: Uint8Array): Initiation | null {
  if (b.length !== INITIATION_SIZE || !header(b, MESSAGE_INITIATION)) return null;
  return {
    senderIndex: readU32(b, 4),
    ephemeral: b.subarray(8, 40),
    encryptedStatic: b.subarray(40, 88),
    encryptedTimestamp: b.subarray(88, 116),
    mac1: b.subarray(116, 132),
    mac2: b.subarray(132, 148),
    bytes: b,
  };
}

export function serializeInitiation(m: {
  senderIndex: number;
  ephemeral: Uint8Array;
  encryptedStatic: Uint8Array;
  encryptedTimestamp: Uint8Array;
}): Uint8Array {
  const b = new Uint8Array(INITIATION_SIZE);
  b[0] = MESSAGE_INITIATION;
  writeU32(b, 4, m.senderIndex);
  b.set(m.ephemeral, 8);
  b.set(m.encryptedStatic, 40);
  b.set(m.encryptedTimestamp, 88);
  return b; // mac1 and mac2 are filled in by the cookie module
}

export function parseResponse(b: Uint8Array): Response | null {
  if (b.length !== RESPONSE_SIZE || !header(b, MESSAGE_RESPONSE)) return null;
  return {
    senderIndex: readU32(b, 4),
    receiverIndex: readU32(b, 8),
    ephemeral: b.subarray(12, 44),
    encryptedNothing: b.subarray(44, 60),
    mac1: b.subarray(60, 76),
    mac2: b.subarray(76, 92),
    bytes: b,
  };
}

export function serializeResponse(m: {
  senderIndex: number;
  receiverIndex: number;
  ephemeral: Uint8Array;
  encryptedNothing: Uint8Array;
}): Uint8Array {
  const b = new Uint8Array(RESPONSE_SIZE);
  b[0] = MESSAGE_RESPONSE;
  writeU32(b, 4, m.senderIndex);
  writeU32(b, 8, m.receiverIndex);
  b.set(m.ephemeral, 12);
  b.set(m.encryptedNothing, 44);
  return b;
}

export function parseCookieReply(b: Uint8Array): CookieReply | null {
  if (b.length !== COOKIE_REPLY_SIZE || !header(b, MESSAGE_COOKIE_REPLY)) return null;
  return { receiverIndex: readU32(b, 4), nonce: b.subarray(8, 32), encryptedCookie: b.subarray(32, 64) };
}

export function serializeCookieReply(m: CookieReply): Uint8Array {
  const b = new Uint8Array(COOKIE_REPLY_SIZE);
  b[0] = MESSAGE_COOKIE_REPLY;
  writeU32(b, 4, m.receiverIndex);
  b.set(m.nonce, 8);
  b.set(m.encryptedCookie, 32);
  return b;
}

/** Transport header fields, read without allocating. Returns false if not a transport message. */
export function isTransport(b: Uint8Array): boolean {
  return b.length >= TRANSPORT_MIN_SIZE && header(b, MESSAGE_TRANSPORT_DATA);
}

/** Write a transport header (type 4, receiver index, 64-bit counter as two halves) at `o`. */
export function writeTransportHeader(b: Uint8Array, o: number, receiver: number, hi: number, lo: number): void {
  b[o] = MESSAGE_TRANSPORT_DATA;
  b[o + 1] = 0;
  b[o + 2] = 0;
  b[o + 3] = 0;
  writeU32(b, o + 4, receiver);
  writeU32(b, o + 8, lo);
  writeU32(b, o + 12, hi);
}
