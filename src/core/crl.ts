/**
 * Revocation lists: the CA's signed list of certificate fingerprints no longer to accept. Same
 * binary layout as certificates (cert-wire.ts), kind 3:
 *
 *   tag 1  issuer      32 bytes   fingerprint of the CA certificate
 *   tag 2  serial      8 bytes    u64, grows by one with each list the CA issues
 *   tag 3  issued-at   8 bytes    unix seconds
 *   tag 4  revoked     32·n bytes fingerprints, strictly increasing (sorted, unique); omitted if n = 0
 *   0xff   signature   64 bytes   Ed25519 by the CA over everything before this field
 *
 * A list replaces the previous one whole, so a node keeps the highest serial it has seen and
 * refuses an older list (`stale-crl`): an attacker replaying last month's list cannot un-revoke.
 *
 * API
 *   signCrl(fields, caSeed, ca)          → Crl
 *   encodeCrl(c)                          → Uint8Array
 *   decodeCrl(bytes)                      → {ok, crl} | {ok: false, reason}
 *   verifyCrl(crl, ca, heldSerial?)       → null | reason
 */
import { bytesToHex } from '@noble/hashes/utils.js';
import { fingerprint, type CaCert, type CertReason } from './cert.js';
import {
  bytesEqual,
  ed25519PublicKey,
  ed25519Sign,
  FieldWriter,
  KIND_CRL,
  nobleEd25519Verify,
  readFields,
  readTime,
  readU64,
  signedPart,
  u64,
  withSignature,
  type Ed25519Verify,
} from './cert-wire.js';

/** 256 KiB: about 8000 revoked certificates. */
export const MAX_CRL_BYTES = 256 * 1024;

const CRL_ISSUER = 1;
const CRL_SERIAL = 2;
const CRL_ISSUED_AT = 3;
const CRL_REVOKED = 4;
const CRL_TAGS = [CRL_ISSUER, CRL_SERIAL, CRL_ISSUED_AT, CRL_REVOKED];
const FP_LEN = 32;
const HEX_FP = /^[0-9a-f]{64}$/;

export interface CrlFields {
  serial: bigint;
  issuedAt: number;
  /** Fingerprints (hex) of the revoked certificates, in any order; duplicates are dropped. */
  revoked: Iterable<string>;
}

export interface Crl {
  readonly kind: 'crl';
  /** Fingerprint of the CA certificate, lowercase hex. */
  readonly issuer: string;
  readonly serial: bigint;
  readonly issuedAt: number;
  /** Revoked fingerprints, lowercase hex, sorted. */
  readonly revoked: readonly string[];
  readonly revokedSet: ReadonlySet<string>;
  readonly signature: Uint8Array;
  readonly bytes: Uint8Array;
  readonly fingerprint: string;
}

function hexToBytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function tbs(c: { issuer: string; serial: bigint; issuedAt: number; revoked: readonly string[] }): Uint8Array {
  const list = new Uint8Array(c.revoked.length * FP_LEN);
  c.revoked.forEach((fp, i) => list.set(hexToBytes(fp), i * FP_LEN));
  return new FieldWriter(KIND_CRL)
    .field(CRL_ISSUER, hexToBytes(c.issuer))
    .field(CRL_SERIAL, u64(c.serial))
    .field(CRL_ISSUED_AT, u64(c.issuedAt))
    .field(CRL_REVOKED, list)
    .bytes();
}

/** The canonical bytes of a revocation list (fields as decodeCrl returns them). */
export function encodeCrl(c: Omit<Crl, 'bytes' | 'fingerprint' | 'kind' | 'revokedSet'>): Uint8Array {
  return withSignature(tbs(c), c.signature);
}

/** Decode a revocation list, refusing every non-canonical spelling. No signature check. */
export function decodeCrl(bytes: Uint8Array): { ok: true; crl: Crl } | { ok: false; reason: CertReason } {
  // A copy, as in decodeCert: fields are views into what is read.
  const own = bytes instanceof Uint8Array && bytes.length <= MAX_CRL_BYTES ? new Uint8Array(bytes) : bytes;
  const r = readFields(own, MAX_CRL_BYTES, [KIND_CRL], () => CRL_TAGS);
  if (!r.ok) return r;
  const v = r.fields.values;
  const issuer = v.get(CRL_ISSUER);
  const serial = readU64(v.get(CRL_SERIAL));
  const issuedAt = readTime(v.get(CRL_ISSUED_AT));
  const list = v.get(CRL_REVOKED) ?? new Uint8Array(0);
  if (!issuer || issuer.length !== FP_LEN || serial === null || issuedAt === null || list.length % FP_LEN) return { ok: false, reason: 'malformed' };
  const revoked: string[] = [];
  for (let o = 0; o < list.length; o += FP_LEN) {
    const fp = bytesToHex(list.subarray(o, o + FP_LEN));
    // Same length lowercase hex sorts as the bytes do.
    if (revoked.length && revoked[revoked.length - 1] >= fp) return { ok: false, reason: 'malformed' };
    revoked.push(fp);
  }
  const crl: Crl = {
    kind: 'crl',
    issuer: bytesToHex(issuer),
    serial,
    issuedAt,
    revoked,
    revokedSet: new Set(revoked),
    signature: r.fields.signature,
    bytes: own,
    fingerprint: fingerprint(own),
  };
  return { ok: true, crl };
}

/** A revocation list signed with the CA's seed. Throws on a bad fingerprint, serial or seed. */
export function signCrl(fields: CrlFields, caSeed: Uint8Array, ca: CaCert): Crl {
  if (ca?.kind !== 'ca') throw new TypeError('signCrl: expected a decoded CA certificate');
  if (!(caSeed instanceof Uint8Array) || caSeed.length !== 32) throw new TypeError('signCrl: expected a 32-byte Ed25519 seed');
  if (!bytesEqual(ed25519PublicKey(caSeed), ca.publicKey)) throw new Error('signCrl: the CA private key does not belong to this CA certificate');
  if (typeof fields.serial !== 'bigint' || fields.serial < 0n || fields.serial >= 1n << 64n) throw new RangeError('signCrl: serial must be a bigint in 0..2^64-1');
  if (!Number.isSafeInteger(fields.issuedAt) || fields.issuedAt < 0) throw new RangeError('signCrl: issuedAt must be unix seconds');
  const revoked = [...new Set(fields.revoked)].sort();
  for (const fp of revoked) if (!HEX_FP.test(fp)) throw new Error('signCrl: a revoked fingerprint is not 64 lowercase hex digits');
  const body = { issuer: ca.fingerprint, serial: fields.serial, issuedAt: fields.issuedAt, revoked };
  const t = tbs(body);
  const r = decodeCrl(withSignature(t, ed25519Sign(t, caSeed)));
  if (!r.ok) throw new Error(`signCrl: the list would be refused (${r.reason}${r.reason === 'oversized' ? `: over ${MAX_CRL_BYTES} bytes` : ''})`);
  return r.crl;
}

/**
 * A revocation list is from `ca` and signed by it; with `heldSerial` (the serial of the list
 * already in force), an older one is `stale-crl`. The same serial again is accepted (a reload).
 * A list has no expiry: the CA's validity bounds it, and the newest one stays in force.
 */
export function verifyCrl(crl: Crl, ca: CaCert, heldSerial?: bigint, verify: Ed25519Verify = nobleEd25519Verify): CertReason | null {
  if (crl.kind !== 'crl') return 'wrong-kind';
  if (crl.issuer !== ca.fingerprint) return 'unknown-ca';
  if (heldSerial !== undefined && crl.serial < heldSerial) return 'stale-crl';
  return verify(crl.signature, signedPart(crl.bytes), ca.publicKey) ? null : 'bad-signature';
}
