/**
 * The binary layer shared by keymesh certificates (cert.ts) and revocation lists (crl.ts).
 *
 *   magic   4 bytes  "KMC1" (0x4b 0x4d 0x43 0x31): format and version
 *   kind    1 byte   1 = CA certificate, 2 = node certificate, 3 = revocation list
 *   fields  tag (1 byte) ‖ length (LEB128, minimal, 1–3 bytes) ‖ value (length bytes)
 *           tags strictly increasing, each at most once, no empty value, only the kind's tags
 *   last    tag 0xff, length 64, the Ed25519 signature over every byte before this field
 *
 * Canonical by construction: integers are fixed-width big-endian, lengths have one spelling,
 * field order is fixed and absent optional fields are omitted rather than empty, so a decoder
 * that refuses everything else gives each document exactly one encoding (and one fingerprint).
 * Every reader here returns a tagged result or null: hostile bytes are data, never an exception.
 */
import { ed25519 } from '@noble/curves/ed25519.js';

export const MAGIC = new Uint8Array([0x4b, 0x4d, 0x43, 0x31]); // "KMC1"
export const KIND_CA = 1;
export const KIND_NODE = 2;
export const KIND_CRL = 3;
export const TAG_SIGNATURE = 0xff;
export const SIGNATURE_LEN = 64;
/** The signature field: tag, one length byte (64 < 128) and the signature. */
export const SIGNATURE_FIELD_LEN = 2 + SIGNATURE_LEN;
const HEADER_LEN = MAGIC.length + 1;
/** Lengths are at most 3 LEB128 bytes: 2^21 − 1, above any size cap. */
const MAX_LENGTH_BYTES = 3;

/** Why a document was refused: the structural subset, shared by certificates and revocation lists. */
export type WireReason = 'truncated' | 'oversized' | 'bad-magic' | 'malformed' | 'wrong-kind';

/**
 * Ed25519 signature check, swappable so the runtime can use a faster backend (the core's default
 * is noble's pure-TS one, ~1 ms on a small VM). Must be strict RFC 8032 (canonical S, no ZIP-215
 * leniency), return false on any bad input and never throw.
 */
export type Ed25519Verify = (signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array) => boolean;

export const nobleEd25519Verify: Ed25519Verify = (signature, message, publicKey) => {
  try {
    return ed25519.verify(signature, message, publicKey, { zip215: false });
  } catch {
    return false;
  }
};

/** Ed25519 public key of a 32-byte seed (RFC 8032 §5.1.5). */
export function ed25519PublicKey(seed: Uint8Array): Uint8Array {
  return ed25519.getPublicKey(seed);
}

export function ed25519Sign(message: Uint8Array, seed: Uint8Array): Uint8Array {
  return ed25519.sign(message, seed);
}

/** Appends fields in the order they are given; the caller gives them in tag order. */
export class FieldWriter {
  private readonly chunks: Uint8Array[] = [];
  private size = 0;
  private lastTag = 0;

  constructor(kind: number) {
    this.push(MAGIC);
    this.push(new Uint8Array([kind]));
  }

  /** A field; an empty value is skipped, which is how absent optional fields are written. */
  field(tag: number, value: Uint8Array): this {
    if (tag <= this.lastTag) throw new Error(`FieldWriter: tag ${tag} after ${this.lastTag} (tags must increase)`);
    if (value.length === 0) return this;
    this.lastTag = tag;
    const len: number[] = [];
    let n = value.length;
    do {
      const b = n & 0x7f;
      n >>>= 7;
      len.push(n ? b | 0x80 : b);
    } while (n);
    this.push(new Uint8Array([tag, ...len]));
    this.push(value);
    return this;
  }

  bytes(): Uint8Array {
    const out = new Uint8Array(this.size);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }

  private push(b: Uint8Array): void {
    this.chunks.push(b);
    this.size += b.length;
  }
}

/** The fields of a structurally valid document, each a view into the input. */
export interface Fields {
  kind: number;
  values: Map<number, Uint8Array>;
  signature: Uint8Array;
}

/**
 * Split `bytes` into fields, refusing anything non-canonical in the structure. `kinds` are the
 * kinds the caller decodes (a known kind outside them is `wrong-kind`); `tagsOf(kind)` lists the
 * tags each allows, besides the signature. Field contents are the caller's to check.
 */
export function readFields(
  bytes: Uint8Array,
  maxBytes: number,
  kinds: readonly number[],
  tagsOf: (kind: number) => readonly number[],
): { ok: true; fields: Fields } | { ok: false; reason: WireReason } {
  if (!(bytes instanceof Uint8Array)) return { ok: false, reason: 'malformed' };
  if (bytes.length > maxBytes) return { ok: false, reason: 'oversized' };
  for (let i = 0; i < MAGIC.length; i++) {
    if (i >= bytes.length) return { ok: false, reason: 'truncated' };
    if (bytes[i] !== MAGIC[i]) return { ok: false, reason: 'bad-magic' };
  }
  if (bytes.length < HEADER_LEN) return { ok: false, reason: 'truncated' };
  const kind = bytes[MAGIC.length];
  if (kind !== KIND_CA && kind !== KIND_NODE && kind !== KIND_CRL) return { ok: false, reason: 'malformed' };
  if (!kinds.includes(kind)) return { ok: false, reason: 'wrong-kind' };
  const allowed = tagsOf(kind);
  const values = new Map<number, Uint8Array>();
  let pos = HEADER_LEN;
  let lastTag = 0;
  for (;;) {
    if (pos >= bytes.length) return { ok: false, reason: 'truncated' }; // no signature yet
    const tag = bytes[pos++];
    if (tag <= lastTag || (tag !== TAG_SIGNATURE && !allowed.includes(tag))) return { ok: false, reason: 'malformed' };
    lastTag = tag;
    let len = 0;
    for (let i = 0; ; i++) {
      if (i === MAX_LENGTH_BYTES) return { ok: false, reason: 'malformed' };
      if (pos >= bytes.length) return { ok: false, reason: 'truncated' };
      const b = bytes[pos++];
      len |= (b & 0x7f) << (7 * i);
      if (!(b & 0x80)) {
        // a continuation byte carrying nothing would be a second spelling of the same length
        if (b === 0 && i > 0) return { ok: false, reason: 'malformed' };
        break;
      }
    }
    if (len === 0) return { ok: false, reason: 'malformed' }; // absent fields are omitted, not empty
    if (len > bytes.length - pos) return { ok: false, reason: 'truncated' };
    const value = bytes.subarray(pos, pos + len);
    pos += len;
    if (tag === TAG_SIGNATURE) {
      if (len !== SIGNATURE_LEN || pos !== bytes.length) return { ok: false, reason: 'malformed' };
      return { ok: true, fields: { kind, values, signature: value } };
    }
    values.set(tag, value);
  }
}

/** The signed part of a decoded document: everything before its signature field. */
export function signedPart(bytes: Uint8Array): Uint8Array {
  return bytes.subarray(0, bytes.length - SIGNATURE_FIELD_LEN);
}

/** Append the signature field to the signed part. */
export function withSignature(tbs: Uint8Array, signature: Uint8Array): Uint8Array {
  if (signature.length !== SIGNATURE_LEN) throw new TypeError(`signature: expected Uint8Array of length ${SIGNATURE_LEN}, got length=${signature.length}`);
  const out = new Uint8Array(tbs.length + SIGNATURE_FIELD_LEN);
  out.set(tbs);
  out[tbs.length] = TAG_SIGNATURE;
  out[tbs.length + 1] = SIGNATURE_LEN;
  out.set(signature, tbs.length + 2);
  return out;
}

/** Unix seconds as a fixed 8-byte big-endian field; the range is JavaScript's safe integers. */
export function u64(n: number | bigint): Uint8Array {
  const out = new Uint8Array(8);
  let v = BigInt(n);
  if (v < 0n || v >= 1n << 64n) throw new RangeError(`u64: ${n} is outside 0..2^64-1`);
  for (let i = 7; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

export function readU64(b: Uint8Array | undefined): bigint | null {
  if (!b || b.length !== 8) return null;
  let v = 0n;
  for (let i = 0; i < 8; i++) v = (v << 8n) | BigInt(b[i]);
  return v;
}

/** A time field: 8 bytes whose value is a safe integer, else null. */
export function readTime(b: Uint8Array | undefined): number | null {
  const v = readU64(b);
  return v !== null && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : null;
}

/** Printable-ASCII bytes as a string, or null if any byte is outside 0x20–0x7e. */
export function readAscii(b: Uint8Array | undefined): string | null {
  if (!b) return null;
  let s = '';
  for (let i = 0; i < b.length; i++) {
    if (b[i] < 0x20 || b[i] > 0x7e) return null;
    s += String.fromCharCode(b[i]);
  }
  return s;
}

export function ascii(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** -1, 0 or 1 as a compares to b byte by byte, a shorter prefix first. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}
