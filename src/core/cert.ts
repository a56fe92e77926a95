/**
 * Mesh certificates: a mesh CA (Ed25519) binds each node's WireGuard public key (X25519) to a
 * name, overlay addresses, groups and routed subnets, for a stated validity. The engine admits a
 * peer whose certificate verifies against our CA, and forwards certificates as the bytes it got.
 * Binary layout in cert-wire.ts (magic, kind, tag/length/value, signature last); the tags of each
 * kind are below and in the README ("Mesh certificates"). Revocation lists are in crl.ts, text
 * forms (PEM and one-line) in cert-text.ts.
 *
 * API (fingerprints are lowercase hex; times are unix seconds; `verify` defaults to noble's Ed25519)
 *   createCa(fields: CaFields, seed: Uint8Array): CaCert                   self-signed CA certificate
 *   signNodeCert(fields: NodeCertFields, caSeed, ca: CaCert): NodeCert     signed by the CA
 *   encodeCaCert(c) / encodeNodeCert(c): Uint8Array                        the canonical bytes
 *   decodeCert(bytes): {ok: true, cert: Cert} | {ok: false, reason}        no signature check
 *   fingerprint(bytes): string                                             SHA-256 of the whole encoding
 *   verifyCa(ca: Cert, nowSec, verify?): CertReason | null                 kind, validity, self-signature
 *   verifyNodeCert(cert: Cert, ca: CaCert, nowSec, revoked?: Set<string> | Crl, verify?): CertReason | null
 *   checkCertKey(cert, staticKey): 'key-mismatch' | null                   against the handshake's static key
 *   inNetworks(prefix, networks), prefixContains, prefixesOverlap, networkOf, hostBitsZero
 *   certAddrs(cert) (host routes), certRoutes(cert) (+ subnets), certAddrsOf(cert, family), formatPrefix
 *   CERT_REASONS, MAX_CERT_BYTES, isLabel, isDomain, isMeshName
 * Decoded certificates keep their `bytes` (forwarded as they are) and `fingerprint`.
 *
 * Callers misusing the API (wrong lengths, fields a CA must not sign) get a thrown Error saying
 * what; bytes from the network only ever get a reason from CERT_REASONS.
 *
 * Verification is meant to run on every use (each handshake), so it is ordered cheapest first and
 * the signature comes last: a certificate refused for any other reason costs no Ed25519 check.
 * The reasons before `bad-signature` are therefore about bytes not yet authenticated — fine for
 * refusing, not for believing.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import {
  ascii,
  bytesEqual,
  compareBytes,
  ed25519PublicKey,
  ed25519Sign,
  FieldWriter,
  KIND_CA,
  KIND_NODE,
  nobleEd25519Verify,
  readAscii,
  readFields,
  readTime,
  signedPart,
  u64,
  withSignature,
  type Ed25519Verify,
} from './cert-wire.js';
import { formatAddress } from './ip.js';

export { nobleEd25519Verify, type Ed25519Verify } from './cert-wire.js';

/** Certificates larger than this are refused unread. */
export const MAX_CERT_BYTES = 4096;
export const DEFAULT_DOMAIN = 'mesh';

/** Every reason a certificate or revocation list is refused: stable codes, one counter each. */
export const CERT_REASONS = [
  'truncated', // the bytes end inside the structure (or before the signature)
  'oversized', // longer than MAX_CERT_BYTES (MAX_CRL_BYTES for a revocation list)
  'bad-magic', // not "KMC1": not a keymesh certificate, or another version of the format
  'malformed', // non-canonical or invalid: tag order, unknown tag, trailing bytes, bad field
  'wrong-kind', // a CA certificate where a node certificate belongs, a CRL for a certificate…
  'unknown-ca', // issued by another CA than ours
  'bad-signature',
  'expired',
  'not-yet-valid',
  'ca-expired',
  'ca-not-yet-valid',
  'revoked',
  'outside-networks', // an address or subnet outside the CA's networks
  'key-mismatch', // the certificate's key is not the one the peer proved in its handshake
  'stale-crl', // a revocation list older than (serial below) the one already held
] as const;
export type CertReason = (typeof CERT_REASONS)[number];

/** An IPv4 or IPv6 prefix: `bits` leading bits of `addr` (4 or 16 bytes). */
export interface IpPrefix {
  readonly family: 4 | 6;
  readonly addr: Uint8Array;
  readonly bits: number;
}

interface Signed {
  /** The canonical encoding, signature included: what is forwarded and fingerprinted. */
  readonly bytes: Uint8Array;
  /** SHA-256 of `bytes`, lowercase hex. */
  readonly fingerprint: string;
  readonly signature: Uint8Array;
}

export interface CaFields {
  /** The mesh's name: 1–64 printable ASCII characters, no space at either end. */
  name: string;
  /** Every address and subnet of the mesh's nodes lies inside one of these (host bits zero, no overlaps). */
  networks: IpPrefix[];
  /** The DNS domain of the mesh's names (default "mesh"). */
  domain?: string;
  notBefore: number;
  notAfter: number;
}

export interface CaCert extends Signed {
  readonly kind: 'ca';
  readonly name: string;
  readonly networks: readonly IpPrefix[];
  readonly domain: string;
  readonly notBefore: number;
  readonly notAfter: number;
  /** The CA's Ed25519 public key. */
  readonly publicKey: Uint8Array;
}

export interface NodeCertFields {
  /** A DNS label: a-z 0-9 and '-', 1–63 characters, no '-' at either end. */
  name: string;
  /** The node's WireGuard (X25519) public key. */
  publicKey: Uint8Array;
  /** Overlay addresses with their prefix lengths (10.99.0.5/16): at least one. */
  addresses: IpPrefix[];
  groups?: string[];
  /** Networks routed through this node (host bits zero). */
  subnets?: IpPrefix[];
  lighthouse?: boolean;
  notBefore: number;
  notAfter: number;
}

export interface NodeCert extends Signed {
  readonly kind: 'node';
  readonly name: string;
  readonly publicKey: Uint8Array;
  readonly addresses: readonly IpPrefix[];
  readonly groups: readonly string[];
  readonly subnets: readonly IpPrefix[];
  readonly lighthouse: boolean;
  readonly notBefore: number;
  readonly notAfter: number;
  /** Fingerprint of the CA certificate that signed it, lowercase hex. */
  readonly issuer: string;
}

export type Cert = CaCert | NodeCert;
export type DecodeResult = { ok: true; cert: Cert } | { ok: false; reason: CertReason };

// Field tags. The signature is tag 0xff in every kind (cert-wire.ts).
const CA_NAME = 1;
const CA_NETWORKS = 2;
const CA_DOMAIN = 3;
const CA_NOT_BEFORE = 4;
const CA_NOT_AFTER = 5;
const CA_PUBLIC_KEY = 6;
const CA_TAGS = [CA_NAME, CA_NETWORKS, CA_DOMAIN, CA_NOT_BEFORE, CA_NOT_AFTER, CA_PUBLIC_KEY];

const NODE_NAME = 1;
const NODE_PUBLIC_KEY = 2;
const NODE_ADDRESSES = 3;
const NODE_GROUPS = 4;
const NODE_SUBNETS = 5;
const NODE_FLAGS = 6;
const NODE_NOT_BEFORE = 7;
const NODE_NOT_AFTER = 8;
const NODE_ISSUER = 9;
const NODE_TAGS = [NODE_NAME, NODE_PUBLIC_KEY, NODE_ADDRESSES, NODE_GROUPS, NODE_SUBNETS, NODE_FLAGS, NODE_NOT_BEFORE, NODE_NOT_AFTER, NODE_ISSUER];
/** Flag bits; any other bit set is malformed, and a flags field of 0 is omitted. */
const FLAG_LIGHTHOUSE = 0x01;

const KEY_LEN = 32;
const FINGERPRINT_LEN = 32;

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const MESH_NAME = /^[\x21-\x7e](?:[\x20-\x7e]{0,62}[\x21-\x7e])?$/;

/** A node name or group: a lowercase DNS label (RFC 1035 §2.3.1, digits allowed first). */
export function isLabel(s: string): boolean {
  return typeof s === 'string' && LABEL.test(s);
}

/** A DNS name of lowercase labels, no trailing dot, at most 253 characters. */
export function isDomain(s: string): boolean {
  return typeof s === 'string' && s.length <= 253 && s.split('.').every(isLabel);
}

export function isMeshName(s: string): boolean {
  return typeof s === 'string' && MESH_NAME.test(s);
}

// ---- prefixes ---------------------------------------------------------------------------------

function addrLen(family: 4 | 6): number {
  return family === 4 ? 4 : 16;
}

/** The bit at `i` (0 = most significant of byte 0). */
function bitAt(a: Uint8Array, i: number): number {
  return (a[i >> 3] >> (7 - (i & 7))) & 1;
}

/** True if the first `bits` bits of a and b agree. */
function samePrefix(a: Uint8Array, b: Uint8Array, bits: number): boolean {
  const whole = bits >> 3;
  for (let i = 0; i < whole; i++) if (a[i] !== b[i]) return false;
  const rest = bits & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (a[whole] & mask) === (b[whole] & mask);
}

/** True if every bit of `p.addr` past `p.bits` is zero (a network, not an address in one). */
export function hostBitsZero(p: IpPrefix): boolean {
  for (let i = p.bits; i < p.addr.length * 8; i++) if (bitAt(p.addr, i)) return false;
  return true;
}

/** The prefix with its host bits cleared. */
export function networkOf(p: IpPrefix): IpPrefix {
  const addr = new Uint8Array(p.addr.length);
  for (let i = 0; i < p.bits; i++) if (bitAt(p.addr, i)) addr[i >> 3] |= 0x80 >> (i & 7);
  return { family: p.family, addr, bits: p.bits };
}

/** Every address of `inner` lies in `outer`. */
export function prefixContains(outer: IpPrefix, inner: IpPrefix): boolean {
  return outer.family === inner.family && outer.bits <= inner.bits && samePrefix(outer.addr, inner.addr, outer.bits);
}

export function prefixesOverlap(a: IpPrefix, b: IpPrefix): boolean {
  return a.family === b.family && samePrefix(a.addr, b.addr, Math.min(a.bits, b.bits));
}

/** `prefix` (an address, /32 or /128, or a subnet) lies wholly inside one of `networks`. */
export function inNetworks(prefix: IpPrefix, networks: readonly IpPrefix[]): boolean {
  for (const n of networks) if (prefixContains(n, prefix)) return true;
  return false;
}

export function formatPrefix(p: IpPrefix): string {
  return `${formatAddress(p.addr)}/${p.bits}`;
}

/** The address alone, as a host prefix (/32 or /128). */
export function hostPrefix(p: IpPrefix): IpPrefix {
  return { family: p.family, addr: p.addr, bits: p.addr.length * 8 };
}

/** Order: IPv4 first, then by address, then by length. The order lists are encoded in. */
export function comparePrefixes(a: IpPrefix, b: IpPrefix): number {
  if (a.family !== b.family) return a.family - b.family;
  return compareBytes(a.addr, b.addr) || a.bits - b.bits;
}

function checkPrefix(p: IpPrefix, what: string): void {
  const ok =
    p &&
    (p.family === 4 || p.family === 6) &&
    p.addr instanceof Uint8Array &&
    p.addr.length === addrLen(p.family) &&
    Number.isInteger(p.bits) &&
    p.bits >= 0 &&
    p.bits <= p.addr.length * 8;
  if (!ok) throw new TypeError(`${what}: expected {family: 4|6, addr: 4 or 16 bytes, bits: 0..32|128}`);
}

/** Each prefix: family (4 or 6), the address (4 or 16 bytes), the prefix length. */
function writePrefixes(list: readonly IpPrefix[]): Uint8Array {
  const parts: number[] = [];
  for (const p of list) parts.push(p.family, ...p.addr, p.bits);
  return new Uint8Array(parts);
}

/** Inverse of writePrefixes, requiring strictly increasing order; null on anything else. */
function readPrefixes(b: Uint8Array | undefined): IpPrefix[] | null {
  if (!b) return null;
  const out: IpPrefix[] = [];
  let pos = 0;
  while (pos < b.length) {
    const family = b[pos];
    if (family !== 4 && family !== 6) return null;
    const n = addrLen(family);
    if (pos + 1 + n + 1 > b.length) return null;
    const p: IpPrefix = { family, addr: b.slice(pos + 1, pos + 1 + n), bits: b[pos + 1 + n] };
    if (p.bits > n * 8) return null;
    if (out.length && comparePrefixes(out[out.length - 1], p) >= 0) return null;
    out.push(p);
    pos += n + 2;
  }
  return out;
}

/** True if no two prefixes of the list share an address. */
function disjoint(list: readonly IpPrefix[]): boolean {
  for (let i = 0; i < list.length; i++) for (let j = i + 1; j < list.length; j++) if (prefixesOverlap(list[i], list[j])) return false;
  return true;
}

/** Addresses: no two the same host, whatever their prefix lengths. */
function distinctHosts(list: readonly IpPrefix[]): boolean {
  for (let i = 1; i < list.length; i++) if (list[i - 1].family === list[i].family && bytesEqual(list[i - 1].addr, list[i].addr)) return false;
  return true;
}

// ---- groups -----------------------------------------------------------------------------------

/** Each group: one length byte, then the label. */
function writeGroups(groups: readonly string[]): Uint8Array {
  const parts: number[] = [];
  for (const g of groups) parts.push(g.length, ...ascii(g));
  return new Uint8Array(parts);
}

function readGroups(b: Uint8Array): string[] | null {
  const out: string[] = [];
  let pos = 0;
  while (pos < b.length) {
    const n = b[pos];
    if (pos + 1 + n > b.length) return null;
    const g = readAscii(b.subarray(pos + 1, pos + 1 + n));
    if (g === null || !isLabel(g)) return null;
    if (out.length && out[out.length - 1] >= g) return null; // sorted, unique
    out.push(g);
    pos += 1 + n;
  }
  return out;
}

// ---- encoding ---------------------------------------------------------------------------------

type CaBody = Omit<CaCert, 'bytes' | 'fingerprint' | 'signature' | 'kind'>;
type NodeBody = Omit<NodeCert, 'bytes' | 'fingerprint' | 'signature' | 'kind'>;

function caTbs(c: CaBody): Uint8Array {
  return new FieldWriter(KIND_CA)
    .field(CA_NAME, ascii(c.name))
    .field(CA_NETWORKS, writePrefixes(c.networks))
    .field(CA_DOMAIN, ascii(c.domain))
    .field(CA_NOT_BEFORE, u64(c.notBefore))
    .field(CA_NOT_AFTER, u64(c.notAfter))
    .field(CA_PUBLIC_KEY, c.publicKey)
    .bytes();
}

function nodeTbs(c: NodeBody): Uint8Array {
  return new FieldWriter(KIND_NODE)
    .field(NODE_NAME, ascii(c.name))
    .field(NODE_PUBLIC_KEY, c.publicKey)
    .field(NODE_ADDRESSES, writePrefixes(c.addresses))
    .field(NODE_GROUPS, writeGroups(c.groups))
    .field(NODE_SUBNETS, writePrefixes(c.subnets))
    .field(NODE_FLAGS, c.lighthouse ? new Uint8Array([FLAG_LIGHTHOUSE]) : new Uint8Array(0))
    .field(NODE_NOT_BEFORE, u64(c.notBefore))
    .field(NODE_NOT_AFTER, u64(c.notAfter))
    .field(NODE_ISSUER, hexBytes(c.issuer))
    .bytes();
}

/** The canonical bytes of a CA certificate (fields as decodeCert returns them; lists in order). */
export function encodeCaCert(c: Omit<CaCert, 'bytes' | 'fingerprint' | 'kind'>): Uint8Array {
  return withSignature(caTbs(c), c.signature);
}

/** The canonical bytes of a node certificate (fields as decodeCert returns them; lists in order). */
export function encodeNodeCert(c: Omit<NodeCert, 'bytes' | 'fingerprint' | 'kind'>): Uint8Array {
  return withSignature(nodeTbs(c), c.signature);
}

/** SHA-256 of a certificate's (or revocation list's) whole encoding, lowercase hex. */
export function fingerprint(bytes: Uint8Array): string {
  return bytesToHex(sha256(bytes));
}

function hexBytes(hex: string): Uint8Array {
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new TypeError('issuer: expected a fingerprint of 64 lowercase hex digits');
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

// ---- decoding ---------------------------------------------------------------------------------

const MALFORMED = { ok: false, reason: 'malformed' } as const;

/**
 * Decode a CA or node certificate, refusing every non-canonical spelling, so equal certificates
 * have equal bytes. Checks structure and field contents only: no signature, time or CA.
 */
export function decodeCert(bytes: Uint8Array): DecodeResult {
  // Decoded from a copy (a real one: Buffer's slice() is a view), since fields are views into
  // what is read, and the caller's buffer may be reused under us. Oversized input is not copied.
  const own = bytes instanceof Uint8Array && bytes.length <= MAX_CERT_BYTES ? new Uint8Array(bytes) : bytes;
  const r = readFields(own, MAX_CERT_BYTES, [KIND_CA, KIND_NODE], (k) => (k === KIND_CA ? CA_TAGS : NODE_TAGS));
  if (!r.ok) return r;
  const { kind, values: v, signature } = r.fields;
  return kind === KIND_CA ? decodeCa(v, own, signature) : decodeNode(v, own, signature);
}

function decodeCa(v: Map<number, Uint8Array>, bytes: Uint8Array, signature: Uint8Array): DecodeResult {
  const name = readAscii(v.get(CA_NAME));
  const networks = readPrefixes(v.get(CA_NETWORKS));
  const domain = readAscii(v.get(CA_DOMAIN));
  const notBefore = readTime(v.get(CA_NOT_BEFORE));
  const notAfter = readTime(v.get(CA_NOT_AFTER));
  const publicKey = v.get(CA_PUBLIC_KEY);
  if (name === null || !isMeshName(name) || domain === null || !isDomain(domain)) return MALFORMED;
  if (!networks || !networks.every(hostBitsZero) || !disjoint(networks)) return MALFORMED;
  if (notBefore === null || notAfter === null || notAfter < notBefore) return MALFORMED;
  if (!publicKey || publicKey.length !== KEY_LEN) return MALFORMED;
  const cert: CaCert = { kind: 'ca', name, networks, domain, notBefore, notAfter, publicKey, signature, bytes, fingerprint: fingerprint(bytes) };
  return { ok: true, cert };
}

function decodeNode(v: Map<number, Uint8Array>, bytes: Uint8Array, signature: Uint8Array): DecodeResult {
  const name = readAscii(v.get(NODE_NAME));
  const publicKey = v.get(NODE_PUBLIC_KEY);
  const addresses = readPrefixes(v.get(NODE_ADDRESSES));
  const g = v.get(NODE_GROUPS);
  const groups = g ? readGroups(g) : [];
  const s = v.get(NODE_SUBNETS);
  const subnets = s ? readPrefixes(s) : [];
  const flags = v.get(NODE_FLAGS);
  const notBefore = readTime(v.get(NODE_NOT_BEFORE));
  const notAfter = readTime(v.get(NODE_NOT_AFTER));
  const issuer = v.get(NODE_ISSUER);
  if (name === null || !isLabel(name) || !publicKey || publicKey.length !== KEY_LEN) return MALFORMED;
  if (!addresses || !distinctHosts(addresses) || !groups) return MALFORMED;
  if (!subnets || !subnets.every(hostBitsZero) || !disjoint(subnets)) return MALFORMED;
  if (flags && (flags.length !== 1 || flags[0] !== FLAG_LIGHTHOUSE)) return MALFORMED;
  if (notBefore === null || notAfter === null || notAfter < notBefore) return MALFORMED;
  if (!issuer || issuer.length !== FINGERPRINT_LEN) return MALFORMED;
  const cert: NodeCert = {
    kind: 'node',
    name,
    publicKey,
    addresses,
    groups,
    subnets,
    lighthouse: flags !== undefined,
    notBefore,
    notAfter,
    issuer: bytesToHex(issuer),
    signature,
    bytes,
    fingerprint: fingerprint(bytes),
  };
  return { ok: true, cert };
}

// ---- creating and signing ---------------------------------------------------------------------

function checkTimes(notBefore: number, notAfter: number, what: string): void {
  for (const t of [notBefore, notAfter]) {
    if (!Number.isSafeInteger(t) || t < 0) throw new RangeError(`${what}: notBefore and notAfter must be unix seconds (non-negative integers), got ${t}`);
  }
  if (notAfter < notBefore) throw new RangeError(`${what}: notAfter (${notAfter}) is before notBefore (${notBefore})`);
}

function checkSeed(seed: Uint8Array, what: string): void {
  if (!(seed instanceof Uint8Array) || seed.length !== 32) {
    throw new TypeError(`${what}: expected a 32-byte Ed25519 seed, got ${seed instanceof Uint8Array ? `length=${seed.length}` : typeof seed}`);
  }
}

/** A self-signed CA certificate for the Ed25519 key of `seed`. Throws on invalid fields. */
export function createCa(fields: CaFields, seed: Uint8Array): CaCert {
  checkSeed(seed, 'createCa');
  if (!isMeshName(fields.name)) throw new Error(`createCa: mesh name must be 1–64 printable ASCII characters without a space at either end`);
  const domain = fields.domain ?? DEFAULT_DOMAIN;
  if (!isDomain(domain)) throw new Error(`createCa: domain "${domain}" is not a DNS name of lowercase labels (a-z 0-9 -)`);
  if (!fields.networks?.length) throw new Error('createCa: a CA needs at least one network');
  fields.networks.forEach((p) => checkPrefix(p, 'createCa: network'));
  for (const p of fields.networks) if (!hostBitsZero(p)) throw new Error(`createCa: network ${formatPrefix(p)} has host bits set (did you mean ${formatPrefix(networkOf(p))}?)`);
  const networks = [...fields.networks].sort(comparePrefixes);
  for (let i = 0; i < networks.length; i++)
    for (let j = i + 1; j < networks.length; j++)
      if (prefixesOverlap(networks[i], networks[j])) throw new Error(`createCa: networks ${formatPrefix(networks[i])} and ${formatPrefix(networks[j])} overlap`);
  checkTimes(fields.notBefore, fields.notAfter, 'createCa');
  const body: CaBody = { name: fields.name, networks, domain, notBefore: fields.notBefore, notAfter: fields.notAfter, publicKey: ed25519PublicKey(seed) };
  const tbs = caTbs(body);
  return mustDecode(withSignature(tbs, ed25519Sign(tbs, seed)), 'createCa') as CaCert;
}

/**
 * A node certificate signed with the CA's seed. Throws (the CA must not sign it) when a field is
 * invalid, an address or subnet lies outside the CA's networks, the validity reaches outside the
 * CA's, or the seed is not the CA certificate's key.
 */
export function signNodeCert(fields: NodeCertFields, caSeed: Uint8Array, ca: CaCert): NodeCert {
  checkSeed(caSeed, 'signNodeCert');
  if (ca?.kind !== 'ca') throw new TypeError('signNodeCert: expected a decoded CA certificate');
  if (!bytesEqual(ed25519PublicKey(caSeed), ca.publicKey)) throw new Error('signNodeCert: the CA private key does not belong to this CA certificate');
  if (!isLabel(fields.name)) throw new Error(`signNodeCert: name must be a DNS label (a-z 0-9 and '-', 1–63 characters, no '-' at either end)`);
  if (!(fields.publicKey instanceof Uint8Array) || fields.publicKey.length !== KEY_LEN) throw new TypeError('signNodeCert: publicKey: expected Uint8Array of length 32');
  if (!fields.addresses?.length) throw new Error('signNodeCert: a node certificate needs at least one address');
  const addresses = [...fields.addresses].sort(comparePrefixes);
  const subnets = [...(fields.subnets ?? [])].sort(comparePrefixes);
  const groups = [...new Set(fields.groups ?? [])].sort();
  addresses.forEach((p) => checkPrefix(p, 'signNodeCert: address'));
  subnets.forEach((p) => checkPrefix(p, 'signNodeCert: subnet'));
  for (const g of groups) if (!isLabel(g)) throw new Error(`signNodeCert: group "${g}" is not a DNS label (a-z 0-9 and '-', 1–63 characters)`);
  if (!distinctHosts(addresses)) throw new Error('signNodeCert: the same address is given twice');
  for (const p of subnets) if (!hostBitsZero(p)) throw new Error(`signNodeCert: subnet ${formatPrefix(p)} has host bits set (did you mean ${formatPrefix(networkOf(p))}?)`);
  if (!disjoint(subnets)) throw new Error('signNodeCert: two subnets overlap');
  for (const p of [...addresses, ...subnets]) {
    if (!inNetworks(networkOf(p), ca.networks)) throw new Error(`signNodeCert: ${formatPrefix(p)} is outside the CA's networks (${ca.networks.map(formatPrefix).join(', ')})`);
  }
  checkTimes(fields.notBefore, fields.notAfter, 'signNodeCert');
  if (fields.notBefore < ca.notBefore || fields.notAfter > ca.notAfter) throw new RangeError('signNodeCert: the validity reaches outside the CA certificate\'s');
  const body: NodeBody = {
    name: fields.name,
    publicKey: fields.publicKey,
    addresses,
    groups,
    subnets,
    lighthouse: fields.lighthouse ?? false,
    notBefore: fields.notBefore,
    notAfter: fields.notAfter,
    issuer: ca.fingerprint,
  };
  const tbs = nodeTbs(body);
  return mustDecode(withSignature(tbs, ed25519Sign(tbs, caSeed)), 'signNodeCert') as NodeCert;
}

function mustDecode(bytes: Uint8Array, what: string): Cert {
  const r = decodeCert(bytes);
  // Only reachable if the checks above miss a rule the decoder enforces (e.g. the size cap).
  if (!r.ok) throw new Error(`${what}: the certificate would be refused (${r.reason}${r.reason === 'oversized' ? `: over ${MAX_CERT_BYTES} bytes` : ''})`);
  return r.cert;
}

// ---- verification -----------------------------------------------------------------------------

function timeReason(c: { notBefore: number; notAfter: number }, now: number, early: CertReason, late: CertReason): CertReason | null {
  if (now < c.notBefore) return early;
  if (now > c.notAfter) return late;
  return null;
}

/** A CA certificate is usable now: the right kind, valid at `nowSec`, and signed by its own key. */
export function verifyCa(ca: Cert, nowSec: number, verify: Ed25519Verify = nobleEd25519Verify): CertReason | null {
  if (ca.kind !== 'ca') return 'wrong-kind';
  return timeReason(ca, nowSec, 'ca-not-yet-valid', 'ca-expired') ?? (verify(ca.signature, signedPart(ca.bytes), ca.publicKey) ? null : 'bad-signature');
}

/** What verifyNodeCert takes as revocations: hex fingerprints, or a verified revocation list. */
export type Revocations = ReadonlySet<string> | { readonly kind: 'crl'; readonly issuer: string; readonly revokedSet: ReadonlySet<string> };

/**
 * A node certificate is acceptable now under `ca` (which the caller has checked with verifyCa
 * once; its self-signature is not checked again here, its validity is): issued by it, valid at
 * `nowSec`, not revoked, every address and subnet inside the CA's networks, and signed by it.
 * The key is checked separately (checkCertKey), against the handshake's static key.
 */
export function verifyNodeCert(cert: Cert, ca: CaCert, nowSec: number, revoked?: Revocations, verify: Ed25519Verify = nobleEd25519Verify): CertReason | null {
  if (ca?.kind !== 'ca') throw new TypeError('verifyNodeCert: ca must be a decoded CA certificate');
  if (cert.kind !== 'node') return 'wrong-kind';
  if (cert.issuer !== ca.fingerprint) return 'unknown-ca';
  const caTime = timeReason(ca, nowSec, 'ca-not-yet-valid', 'ca-expired');
  if (caTime) return caTime;
  const time = timeReason(cert, nowSec, 'not-yet-valid', 'expired');
  if (time) return time;
  if (revoked) {
    if (revoked instanceof Set) {
      if (revoked.has(cert.fingerprint)) return 'revoked';
    } else {
      const crl = revoked as Exclude<Revocations, ReadonlySet<string>>;
      if (crl.issuer !== ca.fingerprint) throw new Error('verifyNodeCert: the revocation list is not from this CA');
      if (crl.revokedSet.has(cert.fingerprint)) return 'revoked';
    }
  }
  for (const a of cert.addresses) if (!inNetworks(networkOf(a), ca.networks)) return 'outside-networks';
  for (const s of cert.subnets) if (!inNetworks(s, ca.networks)) return 'outside-networks';
  return verify(cert.signature, signedPart(cert.bytes), ca.publicKey) ? null : 'bad-signature';
}

/** The certificate is for `staticKey`, the public key the peer proved in its handshake. */
export function checkCertKey(cert: NodeCert, staticKey: Uint8Array): 'key-mismatch' | null {
  return bytesEqual(cert.publicKey, staticKey) ? null : 'key-mismatch';
}

// ---- what a certificate claims ----------------------------------------------------------------

/** The node's own addresses as host prefixes (/32, /128): where its traffic comes from and goes to. */
export function certAddrs(cert: NodeCert): IpPrefix[] {
  return cert.addresses.map(hostPrefix);
}

/** Everything routed to the node: its addresses as host prefixes, then its subnets. */
export function certRoutes(cert: NodeCert): IpPrefix[] {
  return [...certAddrs(cert), ...cert.subnets];
}

/** The node's addresses of one family, with their prefix lengths (the interface's addresses). */
export function certAddrsOf(cert: NodeCert, family: 4 | 6): IpPrefix[] {
  return cert.addresses.filter((a) => a.family === family);
}
