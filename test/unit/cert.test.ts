/**
 * Mesh certificates (src/core/cert.ts, crl.ts, cert-text.ts): round trips, every refusal reason
 * from a real case, every single-bit flip and every truncation of a valid certificate refused,
 * 100,000 seeded random mutations through decode + verify (none throws, none verifies unless it
 * is the original), the canonical-encoding rules one by one (each on a document the CA really
 * signed, so only the decoder stands in the way), inNetworks against a bit-by-bit naive twin,
 * and the committed test vectors.
 */
import { readFileSync } from 'node:fs';
import { ed25519 } from '@noble/curves/ed25519.js';
import { describe, expect, it } from 'vitest';
import {
  CERT_REASONS,
  MAX_CERT_BYTES,
  certAddrs,
  certRoutes,
  checkCertKey,
  createCa,
  decodeCert,
  encodeCaCert,
  encodeNodeCert,
  fingerprint,
  formatPrefix,
  inNetworks,
  prefixContains,
  prefixesOverlap,
  signNodeCert,
  verifyCa,
  verifyNodeCert,
  nobleEd25519Verify,
  type Ed25519Verify,
  type CaCert,
  type CertReason,
  type IpPrefix,
  type NodeCert,
  type NodeCertFields,
} from '../../src/core/cert.js';
import { caKeyToPem, decodeCertText, parseCaKey, parseCertText, toOneLine, toPem, unbase64, base64 } from '../../src/core/cert-text.js';
import { decodeCrl, encodeCrl, signCrl, verifyCrl, MAX_CRL_BYTES, type Crl } from '../../src/core/crl.js';
import { nobleCrypto } from '../../src/core/crypto.js';
import { encodeKey } from '../../src/config/keys.js';
import { prefixFromText } from '../../src/config/mesh.js';
import { buildVectors } from '../../scripts/cert-vectors.js';
import { createNodeEd25519Verify } from '../../src/io/ed25519-verify.js';
import { prng } from './support/naive-inet.js';

const T0 = 1_750_000_000;
const DAY = 86400;
const NOW = T0 + 10 * DAY;
const seed = (b: number) => new Uint8Array(32).fill(b);
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

function P(text: string): IpPrefix {
  const p = prefixFromText(text);
  if (typeof p === 'string') throw new Error(p);
  return p;
}

const CA_SEED = seed(1);
const CA = createCa({ name: 'Test mesh', networks: [P('10.99.0.0/16'), P('fd99::/48')], notBefore: T0, notAfter: T0 + 3650 * DAY }, CA_SEED);
const OTHER_CA_SEED = seed(2);
const OTHER_CA = createCa({ name: 'Other mesh', networks: [P('10.99.0.0/16'), P('fd99::/48')], notBefore: T0, notAfter: T0 + 3650 * DAY }, OTHER_CA_SEED);
const NODE_PRIV = nobleCrypto.generatePrivateKey(() => seed(3));
const NODE_PUB = nobleCrypto.publicKey(NODE_PRIV);

function fields(over: Partial<NodeCertFields> = {}): NodeCertFields {
  return { name: 'laptop', publicKey: NODE_PUB, addresses: [P('10.99.0.5/16'), P('fd99::5/48')], notBefore: T0, notAfter: T0 + 365 * DAY, ...over };
}
const NODE = signNodeCert(fields({ groups: ['ops', 'dev'], subnets: [P('10.99.200.0/24')], lighthouse: true }), CA_SEED, CA);

function decoded(bytes: Uint8Array): NodeCert | CaCert {
  const r = decodeCert(bytes);
  if (!r.ok) throw new Error(`expected to decode, got ${r.reason}`);
  return r.cert;
}

/** decode + verify as the engine will: null = accepted, else the reason. Never throws. */
function check(bytes: Uint8Array, verify: Ed25519Verify = nobleEd25519Verify): CertReason | null {
  const r = decodeCert(bytes);
  return r.ok ? verifyNodeCert(r.cert, CA, NOW, undefined, verify) : r.reason;
}
const opensslVerify = createNodeEd25519Verify();

/** A raw TLV document, signed by `signer`: lets the CA "sign" what our signer would refuse. */
function raw(kind: number, fieldsList: Array<[number, number[] | Uint8Array]>, signer = CA_SEED, lengthBytes?: (n: number) => number[]): Uint8Array {
  const out: number[] = [0x4b, 0x4d, 0x43, 0x31, kind];
  for (const [tag, v] of fieldsList) {
    const len = lengthBytes ? lengthBytes(v.length) : v.length < 128 ? [v.length] : [(v.length & 0x7f) | 0x80, v.length >> 7];
    out.push(tag, ...len, ...v);
  }
  const sig = ed25519.sign(new Uint8Array(out), signer);
  return new Uint8Array([...out, 0xff, 64, ...sig]);
}

const u64 = (n: number) => [...Buffer.from(BigInt(n).toString(16).padStart(16, '0'), 'hex')];
const ascii = (s: string) => [...Buffer.from(s, 'ascii')];
const pfx = (...ps: IpPrefix[]) => ps.flatMap((p) => [p.family, ...p.addr, p.bits]);
const fp = (c: CaCert) => [...Buffer.from(c.fingerprint, 'hex')];

/** A node certificate's fields as raw TLV, to change one thing at a time. */
function nodeFieldsRaw(over: Record<number, number[] | null> = {}): Array<[number, number[]]> {
  const base: Record<number, number[]> = {
    1: ascii('laptop'),
    2: [...NODE_PUB],
    3: pfx(P('10.99.0.5/16')),
    7: u64(T0),
    8: u64(T0 + 365 * DAY),
    9: fp(CA),
  };
  const merged: Record<number, number[] | null> = { ...base, ...over };
  return Object.entries(merged)
    .filter(([, v]) => v !== null)
    .map(([t, v]) => [Number(t), v!] as [number, number[]])
    .sort((a, b) => a[0] - b[0]);
}

describe('round trips', () => {
  it('a CA certificate decodes to its fields and re-encodes byte for byte', () => {
    const c = decoded(CA.bytes) as CaCert;
    expect(c.kind).toBe('ca');
    expect(c.name).toBe('Test mesh');
    expect(c.domain).toBe('mesh');
    expect(c.networks.map(formatPrefix)).toEqual(['10.99.0.0/16', 'fd99::/48']);
    expect([c.notBefore, c.notAfter]).toEqual([T0, T0 + 3650 * DAY]);
    expect(hex(c.publicKey)).toBe(hex(ed25519.getPublicKey(CA_SEED)));
    expect(encodeCaCert(c)).toEqual(CA.bytes);
    expect(c.fingerprint).toBe(fingerprint(CA.bytes));
    expect(verifyCa(c, NOW)).toBeNull();
  });

  it('a node certificate keeps every field, sorted, and its raw bytes', () => {
    const c = decoded(NODE.bytes) as NodeCert;
    expect(c.kind).toBe('node');
    expect(c.name).toBe('laptop');
    expect(encodeKey(c.publicKey)).toBe(encodeKey(NODE_PUB));
    expect(c.addresses.map(formatPrefix)).toEqual(['10.99.0.5/16', 'fd99::5/48']);
    expect(c.groups).toEqual(['dev', 'ops']);
    expect(c.subnets.map(formatPrefix)).toEqual(['10.99.200.0/24']);
    expect(c.lighthouse).toBe(true);
    expect(c.issuer).toBe(CA.fingerprint);
    expect(encodeNodeCert(c)).toEqual(NODE.bytes);
    expect(verifyNodeCert(c, CA, NOW)).toBeNull();
    expect(certAddrs(c).map(formatPrefix)).toEqual(['10.99.0.5/32', 'fd99::5/128']);
    expect(certRoutes(c).map(formatPrefix)).toEqual(['10.99.0.5/32', 'fd99::5/128', '10.99.200.0/24']);
    expect(checkCertKey(c, NODE_PUB)).toBeNull();
  });

  it('the same fields in another order give the same bytes; optional fields absent are omitted', () => {
    const a = signNodeCert(fields({ addresses: [P('fd99::5/48'), P('10.99.0.5/16')], groups: ['b', 'a', 'b'] }), CA_SEED, CA);
    const b = signNodeCert(fields({ groups: ['a', 'b'] }), CA_SEED, CA);
    expect(a.bytes).toEqual(b.bytes);
    const plain = signNodeCert(fields(), CA_SEED, CA);
    expect(plain.groups).toEqual([]);
    expect(plain.subnets).toEqual([]);
    expect(plain.lighthouse).toBe(false);
    // tags present: 1 2 3 7 8 9 and the signature
    const tags: number[] = [];
    for (let pos = 5; pos < plain.bytes.length; ) {
      tags.push(plain.bytes[pos]);
      pos += 2 + plain.bytes[pos + 1];
    }
    expect(tags).toEqual([1, 2, 3, 7, 8, 9, 0xff]);
  });

  it('decoding keeps its own copy: a reused Buffer does not change the certificate', () => {
    const buf = Buffer.from(NODE.bytes);
    const c = decoded(buf) as NodeCert;
    buf.fill(0);
    expect(c.bytes).toEqual(NODE.bytes);
    expect(hex(c.publicKey)).toBe(hex(NODE_PUB));
    expect(c.addresses.map(formatPrefix)).toEqual(['10.99.0.5/16', 'fd99::5/48']);
    expect(verifyNodeCert(c, CA, NOW)).toBeNull();
    const crl = signCrl({ serial: 1n, issuedAt: NOW, revoked: [NODE.fingerprint] }, CA_SEED, CA);
    const cbuf = Buffer.from(crl.bytes);
    const d = (decodeCrl(cbuf) as { crl: Crl }).crl;
    cbuf.fill(0);
    expect(verifyCrl(d, CA)).toBeNull();
  });

  it('a revocation list round-trips, sorted and unique', () => {
    const other = signNodeCert(fields({ name: 'phone', addresses: [P('10.99.0.6/16')] }), CA_SEED, CA);
    const crl = signCrl({ serial: 3n, issuedAt: NOW, revoked: [other.fingerprint, NODE.fingerprint, other.fingerprint] }, CA_SEED, CA);
    expect(crl.revoked).toEqual([other.fingerprint, NODE.fingerprint].sort());
    const r = decodeCrl(crl.bytes);
    expect(r.ok).toBe(true);
    const d = (r as { crl: Crl }).crl;
    expect(d.serial).toBe(3n);
    expect(d.issuedAt).toBe(NOW);
    expect(encodeCrl(d)).toEqual(crl.bytes);
    expect(verifyCrl(d, CA)).toBeNull();
    expect(verifyNodeCert(NODE, CA, NOW, d)).toBe('revoked');
    const empty = signCrl({ serial: 0n, issuedAt: NOW, revoked: [] }, CA_SEED, CA);
    expect((decodeCrl(empty.bytes) as { crl: Crl }).crl.revoked).toEqual([]);
  });

  it('text forms: PEM (64-character lines) and one-line, each kind, and the CA key', () => {
    const crl = signCrl({ serial: 1n, issuedAt: NOW, revoked: [NODE.fingerprint] }, CA_SEED, CA);
    for (const doc of [CA, NODE, crl]) {
      const pem = toPem(doc);
      const lines = pem.trim().split('\n');
      expect(lines[0]).toBe(`-----BEGIN ${{ ca: 'KEYMESH CA CERTIFICATE', node: 'KEYMESH CERTIFICATE', crl: 'KEYMESH REVOCATION LIST' }[doc.kind]}-----`);
      for (const l of lines.slice(1, -2)) expect(l).toHaveLength(64);
      const one = toOneLine(doc);
      expect(one).toMatch(/^km(ca|cert|crl)1:[A-Za-z0-9_-]+$/);
      for (const t of [pem, one, `\n  ${pem.replace(/\n/g, '\r\n')}  \n`]) {
        const r = decodeCertText(t);
        expect(r.ok && r.doc.fingerprint).toBe(doc.fingerprint);
      }
    }
    expect(toOneLine(NODE).startsWith('kmcert1:')).toBe(true);
    expect(toOneLine(CA).startsWith('kmca1:')).toBe(true);
    expect(parseCaKey(caKeyToPem(CA_SEED))).toEqual(CA_SEED);
    expect(parseCaKey(toPem(CA))).toBeNull();
    expect(parseCaKey('')).toBeNull();
  });

  it('text forms refuse a label that names another kind, stray characters and other blocks', () => {
    expect(parseCertText(toPem(NODE).replace(/KEYMESH CERTIFICATE/g, 'KEYMESH CA CERTIFICATE'))).toEqual({ ok: false, reason: 'wrong-kind' });
    expect(parseCertText(toOneLine(NODE).replace('kmcert1:', 'kmca1:'))).toEqual({ ok: false, reason: 'wrong-kind' });
    expect(parseCertText(toOneLine(NODE) + '=').ok).toBe(false);
    expect(parseCertText(toOneLine(NODE).replace('kmcert1:', 'kmcert1: ')).ok).toBe(false);
    expect(parseCertText(toPem(NODE).replace(/CERTIFICATE-----$/m, 'CERT-----')).ok).toBe(false);
    expect(parseCertText(`junk\n${toPem(NODE)}`).ok).toBe(false);
    expect(parseCertText(caKeyToPem(CA_SEED))).toEqual({ ok: false, reason: 'malformed' });
    expect(parseCertText('').ok).toBe(false);
    expect(parseCertText('kmcert1:' + 'A'.repeat(8000))).toEqual({ ok: false, reason: 'oversized' });
  });

  it('base64 is strict: one spelling per byte string', () => {
    const r = prng(77);
    for (let n = 0; n < 40; n++) {
      const b = new Uint8Array(n).map(() => r(256));
      for (const url of [false, true]) {
        const t = base64(b, url);
        expect(t).toBe(Buffer.from(b).toString(url ? 'base64url' : 'base64'));
        expect(unbase64(t, url)).toEqual(b);
      }
    }
    expect(unbase64('AA==')).toEqual(new Uint8Array([0]));
    expect(unbase64('AB==')).toBeNull(); // pad bits set
    expect(unbase64('AA')).toBeNull(); // padding required in the standard form
    expect(unbase64('AA', true)).toEqual(new Uint8Array([0]));
    expect(unbase64('AB', true)).toBeNull();
    expect(unbase64('AA==', true)).toBeNull();
    expect(unbase64('A', true)).toBeNull();
    expect(unbase64('A+/B', true)).toBeNull();
  });
});

describe('refusal reasons, each from a real case', () => {
  const seen = new Set<string>();
  const expectReason = (got: string | null, want: CertReason) => {
    expect(got).toBe(want);
    seen.add(want);
  };
  const reason = (r: ReturnType<typeof decodeCert>) => (r.ok ? null : r.reason);

  it('codes are distinct strings', () => {
    expect(new Set(CERT_REASONS).size).toBe(CERT_REASONS.length);
  });

  it('structure: truncated, oversized, bad-magic, malformed, wrong-kind', () => {
    expectReason(reason(decodeCert(NODE.bytes.subarray(0, 40))), 'truncated');
    expectReason(reason(decodeCert(new Uint8Array([...NODE.bytes.subarray(0, 5), ...new Uint8Array(MAX_CERT_BYTES)]))), 'oversized');
    expectReason(reason(decodeCert(new Uint8Array([0x30, 0x82, 0x01, 0x0a, 0x02]))), 'bad-magic'); // an X.509 DER start
    expectReason(reason(decodeCert(new Uint8Array([...NODE.bytes, 0]))), 'malformed');
    const crl = signCrl({ serial: 1n, issuedAt: NOW, revoked: [] }, CA_SEED, CA);
    expectReason(reason(decodeCert(crl.bytes)), 'wrong-kind');
    expectReason(decodeCrl(NODE.bytes).ok ? null : (decodeCrl(NODE.bytes) as { reason: string }).reason, 'wrong-kind');
    expectReason(verifyCa(NODE, NOW), 'wrong-kind');
    expectReason(verifyNodeCert(CA, CA, NOW), 'wrong-kind');
    expect(decodeCrl(new Uint8Array([...crl.bytes.subarray(0, 5), ...new Uint8Array(MAX_CRL_BYTES)]))).toEqual({ ok: false, reason: 'oversized' });
  });

  it('unknown-ca and bad-signature', () => {
    const foreign = signNodeCert(fields(), OTHER_CA_SEED, OTHER_CA);
    expectReason(verifyNodeCert(foreign, CA, NOW), 'unknown-ca');
    const forged = NODE.bytes.slice();
    forged[forged.length - 10] ^= 0x01;
    expectReason(check(forged), 'bad-signature');
    // the issuer field names our CA but another key signed it
    const byOther = raw(2, nodeFieldsRaw(), OTHER_CA_SEED);
    expectReason(check(byOther), 'bad-signature');
    const badCa = CA.bytes.slice();
    badCa[badCa.length - 1] ^= 0x40;
    expectReason(verifyCa(decoded(badCa), NOW), 'bad-signature');
    const crl = signCrl({ serial: 1n, issuedAt: NOW, revoked: [] }, CA_SEED, CA);
    const badCrl = crl.bytes.slice();
    badCrl[badCrl.length - 5] ^= 1;
    expectReason(verifyCrl((decodeCrl(badCrl) as { crl: Crl }).crl, CA), 'bad-signature');
    expectReason(verifyCrl(signCrl({ serial: 1n, issuedAt: NOW, revoked: [] }, OTHER_CA_SEED, OTHER_CA), CA), 'unknown-ca');
  });

  it('times: expired, not-yet-valid, ca-expired, ca-not-yet-valid (bounds inclusive)', () => {
    const c = signNodeCert(fields({ notBefore: T0 + DAY, notAfter: T0 + 2 * DAY }), CA_SEED, CA);
    expect(verifyNodeCert(c, CA, T0 + DAY)).toBeNull();
    expect(verifyNodeCert(c, CA, T0 + 2 * DAY)).toBeNull();
    expectReason(verifyNodeCert(c, CA, T0 + 2 * DAY + 1), 'expired');
    expectReason(verifyNodeCert(c, CA, T0 + DAY - 1), 'not-yet-valid');
    expectReason(verifyCa(CA, T0 + 3650 * DAY + 1), 'ca-expired');
    expectReason(verifyCa(CA, T0 - 1), 'ca-not-yet-valid');
    expect(verifyNodeCert(signNodeCert(fields({ notAfter: T0 + 3650 * DAY }), CA_SEED, CA), CA, T0 + 3650 * DAY + 1)).toBe('ca-expired');
    expect(verifyNodeCert(NODE, CA, T0 - 1)).toBe('ca-not-yet-valid');
  });

  it('revoked (a set of fingerprints or a revocation list), stale-crl', () => {
    expectReason(verifyNodeCert(NODE, CA, NOW, new Set([NODE.fingerprint])), 'revoked');
    expect(verifyNodeCert(NODE, CA, NOW, new Set(['00'.repeat(32)]))).toBeNull();
    const crl = signCrl({ serial: 5n, issuedAt: NOW, revoked: [NODE.fingerprint] }, CA_SEED, CA);
    expect(verifyNodeCert(NODE, CA, NOW, crl)).toBe('revoked');
    expect(verifyCrl(crl, CA, 5n)).toBeNull();
    expectReason(verifyCrl(crl, CA, 6n), 'stale-crl');
    expect(() => verifyNodeCert(NODE, CA, NOW, signCrl({ serial: 1n, issuedAt: NOW, revoked: [] }, OTHER_CA_SEED, OTHER_CA))).toThrow(/not from this CA/);
  });

  it('outside-networks: an address or subnet the CA signed outside its networks (another signer)', () => {
    expectReason(check(raw(2, nodeFieldsRaw({ 3: pfx(P('10.100.0.5/16')) }))), 'outside-networks');
    // the address is inside, its prefix reaches beyond the network
    expect(check(raw(2, nodeFieldsRaw({ 3: pfx(P('10.99.0.5/8')) })))).toBe('outside-networks');
    expect(check(raw(2, nodeFieldsRaw({ 5: pfx(P('192.168.1.0/24')) })))).toBe('outside-networks');
    expect(check(raw(2, nodeFieldsRaw()))).toBeNull(); // the same construction, inside
  });

  it('key-mismatch', () => {
    expectReason(checkCertKey(NODE, nobleCrypto.publicKey(seed(9))), 'key-mismatch');
  });

  it('every reason in CERT_REASONS was produced above', () => {
    expect([...seen].sort()).toEqual([...CERT_REASONS].sort());
  });
});

describe('canonical encoding: each rule on a document the CA signed', () => {
  const bad = (over: Record<number, number[] | null>) => check(raw(2, nodeFieldsRaw(over)));

  it('structure: order, duplicates, unknown tags, empty fields, lengths, trailing bytes', () => {
    const f = nodeFieldsRaw();
    expect(check(raw(2, [f[1], f[0], ...f.slice(2)]))).toBe('malformed'); // out of order
    expect(check(raw(2, [f[0], f[0], ...f.slice(1)]))).toBe('malformed'); // duplicate
    expect(check(raw(2, [...f, [10, [1]]]))).toBe('malformed'); // unknown tag
    expect(check(raw(2, [...f.slice(0, 3), [4, []], ...f.slice(3)]))).toBe('malformed'); // empty optional field
    expect(check(raw(2, f, CA_SEED, (n) => [(n & 0x7f) | 0x80, n >> 7]))).toBe('malformed'); // non-minimal lengths
    expect(check(raw(2, f, CA_SEED, (n) => [(n & 0x7f) | 0x80, 0x80, 0x80, 0]))).toBe('malformed'); // 4 length bytes
    expect(check(raw(2, [[0, [1]], ...f]))).toBe('malformed'); // tag 0
    expect(check(raw(9, f))).toBe('malformed'); // unknown kind
    const sigShort = raw(2, f).subarray(0, -1).slice();
    sigShort[sigShort.length - 64] = 63; // signature field of length 63
    expect(check(sigShort)).toBe('malformed');
    for (const missing of [1, 2, 3, 7, 8, 9]) expect(bad({ [missing]: null })).toBe('malformed');
  });

  it('fields: names, keys, prefixes, groups, flags, times', () => {
    expect(bad({})).toBeNull();
    for (const name of ['Laptop', '-a', 'a-', 'a_b', 'a.b', 'x'.repeat(64), 'é']) expect(bad({ 1: [...Buffer.from(name)] })).toBe('malformed');
    expect(bad({ 1: ascii('x'.repeat(63)) })).toBeNull();
    expect(bad({ 2: [...NODE_PUB, 0] })).toBe('malformed');
    expect(bad({ 3: pfx(P('fd99::5/48'), P('10.99.0.5/16')) })).toBe('malformed'); // unsorted
    expect(bad({ 3: pfx(P('10.99.0.5/16'), P('10.99.0.5/24')) })).toBe('malformed'); // same host twice
    expect(bad({ 3: [4, 10, 99, 0, 5, 33] })).toBe('malformed'); // prefix > 32
    expect(bad({ 3: [5, 10, 99, 0, 5, 16] })).toBe('malformed'); // family 5
    expect(bad({ 3: [4, 10, 99, 0, 5] })).toBe('malformed'); // cut entry
    expect(bad({ 5: pfx(P('10.99.200.1/24')) })).toBe('malformed'); // host bits set in a subnet
    expect(bad({ 5: pfx(P('10.99.200.0/24'), P('10.99.200.128/25')) })).toBe('malformed'); // overlapping subnets
    expect(bad({ 4: [2, ...ascii('ok'), 2, ...ascii('ab')] })).toBe('malformed'); // unsorted groups
    expect(bad({ 4: [2, ...ascii('ab'), 2, ...ascii('ab')] })).toBe('malformed'); // duplicate group
    expect(bad({ 4: [3, ...ascii('ab')] })).toBe('malformed'); // group runs past the field
    expect(bad({ 4: [2, ...ascii('ab'), 2, ...ascii('ok')] })).toBeNull();
    expect(bad({ 6: [0] })).toBe('malformed'); // flags 0 must be omitted
    expect(bad({ 6: [3] })).toBe('malformed'); // unknown flag
    expect(bad({ 6: [1, 0] })).toBe('malformed');
    expect(bad({ 6: [1] })).toBeNull();
    expect(bad({ 8: u64(T0 - 1) })).toBe('malformed'); // notAfter < notBefore
    expect(bad({ 7: [0x00, 0x20, 0, 0, 0, 0, 0, 0], 8: [0x00, 0x20, 0, 0, 0, 0, 0, 0] })).toBe('malformed'); // 2^53: not a safe integer
    expect(bad({ 7: u64(T0).slice(1) })).toBe('malformed'); // 7-byte time
    expect(bad({ 9: fp(CA).slice(1) })).toBe('malformed');
  });

  it('CA certificates: networks with host bits or overlapping, names, domains', () => {
    const caFields = (over: Record<number, number[]>): Array<[number, number[]]> => {
      const pub = [...ed25519.getPublicKey(CA_SEED)];
      const base: Record<number, number[]> = { 1: ascii('m'), 2: pfx(P('10.99.0.0/16')), 3: ascii('mesh'), 4: u64(T0), 5: u64(T0 + DAY), 6: pub, ...over };
      return Object.entries(base).map(([t, v]) => [Number(t), v] as [number, number[]]);
    };
    const verdict = (over: Record<number, number[]>) => {
      const r = decodeCert(raw(1, caFields(over)));
      return r.ok ? verifyCa(r.cert, T0) : r.reason;
    };
    expect(verdict({})).toBeNull();
    expect(verdict({ 2: pfx(P('10.99.0.1/16')) })).toBe('malformed');
    expect(verdict({ 2: pfx(P('10.0.0.0/8'), P('10.99.0.0/16')) })).toBe('malformed');
    expect(verdict({ 1: ascii(' m') })).toBe('malformed');
    expect(verdict({ 1: [0x6d, 0x0a] })).toBe('malformed');
    expect(verdict({ 3: ascii('Mesh') })).toBe('malformed');
    expect(verdict({ 3: ascii('mesh.') })).toBe('malformed');
    expect(verdict({ 3: ascii('corp.example') })).toBeNull();
    expect(verdict({ 6: [...ed25519.getPublicKey(OTHER_CA_SEED)] })).toBe('bad-signature');
  });

  it('revocation lists: sorted unique fingerprints, whole entries', () => {
    const a = [...new Uint8Array(32).fill(1)];
    const b = [...new Uint8Array(32).fill(2)];
    const crlOf = (revoked: number[]) => {
      const f: Array<[number, number[]]> = [[1, fp(CA)], [2, u64(1)], [3, u64(NOW)]];
      if (revoked.length) f.push([4, revoked]);
      const r = decodeCrl(raw(3, f));
      return r.ok ? verifyCrl(r.crl, CA) : r.reason;
    };
    expect(crlOf([...a, ...b])).toBeNull();
    expect(crlOf([])).toBeNull();
    expect(crlOf([...b, ...a])).toBe('malformed');
    expect(crlOf([...a, ...a])).toBe('malformed');
    expect(crlOf([...a, 1])).toBe('malformed');
  });
});

describe('hostile bytes', () => {
  const docs: Array<[string, Uint8Array, (b: Uint8Array) => string | null]> = [
    ['node certificate', NODE.bytes, check],
    [
      'CA certificate',
      CA.bytes,
      (b) => {
        const r = decodeCert(b);
        return r.ok ? verifyCa(r.cert, NOW) : r.reason;
      },
    ],
    [
      'revocation list',
      signCrl({ serial: 2n, issuedAt: NOW, revoked: [NODE.fingerprint] }, CA_SEED, CA).bytes,
      (b) => {
        const r = decodeCrl(b);
        return r.ok ? verifyCrl(r.crl, CA) : r.reason;
      },
    ],
  ];

  for (const [what, good, verdict] of docs) {
    it(`${what}: every single-bit flip is refused`, () => {
      expect(verdict(good)).toBeNull();
      for (let i = 0; i < good.length; i++) {
        for (let bit = 0; bit < 8; bit++) {
          const b = good.slice();
          b[i] ^= 1 << bit;
          expect(verdict(b), `byte ${i} bit ${bit}`).not.toBeNull();
        }
      }
    });

    it(`${what}: every truncation is refused as truncated`, () => {
      for (let n = 0; n < good.length; n++) expect(verdict(good.subarray(0, n)), `length ${n}`).toBe('truncated');
    });
  }

  // With the runtime's (OpenSSL) signature check: noble's costs ~1 ms, and about one mutation in
  // eight gets as far as the signature. The two backends are compared below.
  it('100,000 random mutations: none throws, none verifies unless it is the original', () => {
    const rnd = prng(20250117);
    const original = NODE.bytes;
    const counts: Record<string, number> = {};
    let identical = 0;
    const started = performance.now();
    for (let n = 0; n < 100_000; n++) {
      let b = Array.from(original);
      const ops = 1 + rnd(3);
      for (let k = 0; k < ops; k++) {
        const at = rnd(b.length + 1);
        switch (rnd(6)) {
          case 0: // flip a bit
          case 1:
            if (b.length) b[at % b.length] ^= 1 << rnd(8);
            break;
          case 2: // replace a byte
            if (b.length) b[at % b.length] = rnd(256);
            break;
          case 3: // insert
            b.splice(at, 0, rnd(256));
            break;
          case 4: // delete
            b.splice(at % Math.max(1, b.length), 1);
            break;
          case 5: // truncate
            b = b.slice(0, at);
            break;
        }
      }
      const m = new Uint8Array(b);
      const same = m.length === original.length && m.every((x, i) => x === original[i]);
      const r = check(m, opensslVerify);
      if (same) {
        identical++;
        expect(r).toBeNull();
      } else {
        if (r === null) throw new Error(`mutation ${n} verified: ${hex(m)}`);
        counts[r] = (counts[r] ?? 0) + 1;
      }
    }
    const ms = performance.now() - started;
    console.log(`100k mutations in ${ms.toFixed(0)} ms; ${identical} identical; refused:`, counts);
    expect(Object.values(counts).reduce((a, b) => a + b, 0) + identical).toBe(100_000);
  });
});

describe('the OpenSSL signature check (src/io/ed25519-verify.ts) against noble', () => {
  it('same verdict on valid, tampered, non-canonical and malformed signatures and keys', () => {
    const rnd = prng(99);
    const L = (1n << 252n) + 27742317777372353535851937790883648493n;
    const le = (b: Uint8Array) => b.reduceRight((acc, x) => (acc << 8n) | BigInt(x), 0n);
    const toLe = (n: bigint) => new Uint8Array(32).map((_, i) => Number((n >> BigInt(8 * i)) & 0xffn));
    for (let n = 0; n < 300; n++) {
      const sk = new Uint8Array(32).map(() => rnd(256));
      const pk = ed25519.getPublicKey(sk);
      const msg = new Uint8Array(rnd(300)).map(() => rnd(256));
      const sig = ed25519.sign(msg, sk);
      const cases: Array<[Uint8Array, Uint8Array, Uint8Array]> = [[sig, msg, pk]];
      const flipped = sig.slice();
      flipped[rnd(64)] ^= 1 << rnd(8);
      cases.push([flipped, msg, pk]);
      const nonCanonical = sig.slice();
      nonCanonical.set(toLe(le(sig.subarray(32)) + L), 32); // S + L: the same point equation, refused by RFC 8032
      cases.push([nonCanonical, msg, pk]);
      const badKey = pk.slice();
      badKey[rnd(32)] ^= 1 << rnd(8);
      cases.push([sig, msg, badKey], [sig.subarray(0, 63), msg, pk], [sig, msg, pk.subarray(0, 31)]);
      if (msg.length) cases.push([sig, msg.subarray(1), pk]);
      for (const [s, m, k] of cases) expect(opensslVerify(s, m, k)).toBe(nobleEd25519Verify(s, m, k));
      expect(opensslVerify(sig, msg, pk)).toBe(true);
    }
  });
});

describe('signing refuses what the CA must not sign', () => {
  it('throws with a clear message', () => {
    expect(() => signNodeCert(fields({ addresses: [P('10.100.0.5/16')] }), CA_SEED, CA)).toThrow(/10\.100\.0\.5\/16 is outside the CA's networks/);
    expect(() => signNodeCert(fields({ addresses: [P('10.99.0.5/8')] }), CA_SEED, CA)).toThrow(/outside/);
    expect(() => signNodeCert(fields({ subnets: [P('10.99.7.1/24')] }), CA_SEED, CA)).toThrow(/host bits set \(did you mean 10\.99\.7\.0\/24\?\)/);
    expect(() => signNodeCert(fields({ subnets: [P('10.99.7.0/24'), P('10.99.0.0/17')] }), CA_SEED, CA)).toThrow(/overlap/);
    expect(() => signNodeCert(fields({ name: 'Bad_Name' }), CA_SEED, CA)).toThrow(/DNS label/);
    expect(() => signNodeCert(fields({ groups: ['a b'] }), CA_SEED, CA)).toThrow(/group "a b"/);
    expect(() => signNodeCert(fields({ addresses: [] }), CA_SEED, CA)).toThrow(/at least one address/);
    expect(() => signNodeCert(fields({ addresses: [P('10.99.0.5/16'), P('10.99.0.5/24')] }), CA_SEED, CA)).toThrow(/twice/);
    expect(() => signNodeCert(fields({ notAfter: T0 + 4000 * DAY }), CA_SEED, CA)).toThrow(/outside the CA/);
    expect(() => signNodeCert(fields({ notBefore: T0 + 2, notAfter: T0 + 1 }), CA_SEED, CA)).toThrow(/before notBefore/);
    expect(() => signNodeCert(fields({ notBefore: 1.5 }), CA_SEED, CA)).toThrow(/unix seconds/);
    expect(() => signNodeCert(fields(), OTHER_CA_SEED, CA)).toThrow(/does not belong/);
    expect(() => signNodeCert(fields({ publicKey: new Uint8Array(31) }), CA_SEED, CA)).toThrow(/length 32/);
    expect(() => signNodeCert(fields({ groups: Array.from({ length: 500 }, (_, i) => `group-${i}`) }), CA_SEED, CA)).toThrow(/oversized/);
    expect(() => createCa({ name: 'm', networks: [P('10.0.0.1/8')], notBefore: 0, notAfter: 1 }, CA_SEED)).toThrow(/did you mean 10\.0\.0\.0\/8/);
    expect(() => createCa({ name: 'm', networks: [P('10.0.0.0/8'), P('10.1.0.0/16')], notBefore: 0, notAfter: 1 }, CA_SEED)).toThrow(/overlap/);
    expect(() => createCa({ name: 'm', networks: [], notBefore: 0, notAfter: 1 }, CA_SEED)).toThrow(/at least one network/);
    expect(() => createCa({ name: 'm', networks: [P('10.0.0.0/8')], domain: 'Bad', notBefore: 0, notAfter: 1 }, CA_SEED)).toThrow(/domain/);
    expect(() => createCa({ name: '', networks: [P('10.0.0.0/8')], notBefore: 0, notAfter: 1 }, CA_SEED)).toThrow(/mesh name/);
    expect(() => createCa({ name: 'm', networks: [P('10.0.0.0/8')], notBefore: 0, notAfter: 1 }, new Uint8Array(31))).toThrow(/32-byte/);
  });
});

describe('prefixes against a bit-by-bit naive twin', () => {
  const bit = (a: Uint8Array, i: number) => (a[Math.floor(i / 8)] >> (7 - (i % 8))) & 1;
  /** The reference: inner ⊆ outer iff same family, outer no longer, and every outer bit agrees. */
  function naiveContains(o: IpPrefix, i: IpPrefix): boolean {
    if (o.family !== i.family || o.bits > i.bits) return false;
    for (let k = 0; k < o.bits; k++) if (bit(o.addr, k) !== bit(i.addr, k)) return false;
    return true;
  }
  function naiveOverlap(a: IpPrefix, b: IpPrefix): boolean {
    return naiveContains(a, b) || naiveContains(b, a);
  }
  const rnd = prng(4242);
  /** Random prefixes that share leading bits with a few bases, so containment is common. */
  function randomPrefix(): IpPrefix {
    const family = rnd(2) ? 4 : 6;
    const len = family === 4 ? 4 : 16;
    const base = new Uint8Array(len).fill(rnd(3) * 0x55);
    const addr = base.map((x, i) => (i < rnd(len + 1) ? x : rnd(256)));
    return { family, addr, bits: rnd(len * 8 + 1) };
  }

  it('inNetworks, prefixContains and prefixesOverlap agree with the reference on 20,000 cases', () => {
    for (let n = 0; n < 20_000; n++) {
      const p = randomPrefix();
      const nets = Array.from({ length: rnd(4) }, randomPrefix);
      expect(inNetworks(p, nets)).toBe(nets.some((o) => naiveContains(o, p)));
      const q = randomPrefix();
      expect(prefixContains(q, p)).toBe(naiveContains(q, p));
      expect(prefixesOverlap(q, p)).toBe(naiveOverlap(q, p));
    }
  });

  it('edges: /0, full length, across families', () => {
    expect(inNetworks(P('192.0.2.1/32'), [P('0.0.0.0/0')])).toBe(true);
    expect(inNetworks(P('::1/128'), [P('0.0.0.0/0')])).toBe(false);
    expect(inNetworks(P('10.99.0.5/32'), [P('10.99.0.5/32')])).toBe(true);
    expect(inNetworks(P('10.99.0.4/31'), [P('10.99.0.5/32')])).toBe(false);
    expect(inNetworks(P('fd99::5/128'), [P('10.99.0.0/16'), P('fd99::/48')])).toBe(true);
  });
});

describe('test vectors (test/vectors/certificates.json)', () => {
  const v = JSON.parse(readFileSync(new URL('../vectors/certificates.json', import.meta.url), 'utf8'));
  const bytes = (h: string) => new Uint8Array(Buffer.from(h, 'hex'));

  it('the file is what scripts/cert-vectors.ts generates', () => {
    expect(JSON.parse(JSON.stringify(buildVectors()))).toEqual(v);
  });

  it('decode, fields, byte-identical re-encoding, fingerprints, signatures', () => {
    const caR = decodeCert(bytes(v.ca.hex));
    expect(caR.ok).toBe(true);
    const ca = (caR as { cert: CaCert }).cert;
    expect(hex(ed25519.getPublicKey(bytes(v.ca.seed)))).toBe(v.ca.publicKey);
    expect(hex(ca.publicKey)).toBe(v.ca.publicKey);
    expect({ name: ca.name, networks: ca.networks.map(formatPrefix), domain: ca.domain, notBefore: ca.notBefore, notAfter: ca.notAfter }).toEqual(v.ca.fields);
    expect(hex(encodeCaCert(ca))).toBe(v.ca.hex);
    expect(fingerprint(bytes(v.ca.hex))).toBe(v.ca.fingerprint);
    expect(verifyCa(ca, v.verifyAt)).toBeNull();
    expect(hex(parseCaKey(v.ca.privateKeyPem)!)).toBe(v.ca.seed);

    const crlR = decodeCrl(bytes(v.crl.hex));
    expect(crlR.ok).toBe(true);
    const crl = (crlR as { crl: Crl }).crl;
    expect({ issuer: crl.issuer, serial: crl.serial.toString(), issuedAt: crl.issuedAt, revoked: crl.revoked }).toEqual(v.crl.fields);
    expect(hex(encodeCrl(crl))).toBe(v.crl.hex);
    expect(crl.fingerprint).toBe(v.crl.fingerprint);
    expect(verifyCrl(crl, ca)).toBeNull();

    for (const [entry, expected] of [
      [v.node, null],
      [v.lighthouse, 'revoked'],
    ] as const) {
      const r = decodeCert(bytes(entry.hex));
      expect(r.ok).toBe(true);
      const c = (r as { cert: NodeCert }).cert;
      expect({
        name: c.name,
        publicKey: encodeKey(c.publicKey),
        addresses: c.addresses.map(formatPrefix),
        groups: c.groups,
        subnets: c.subnets.map(formatPrefix),
        lighthouse: c.lighthouse,
        notBefore: c.notBefore,
        notAfter: c.notAfter,
        issuer: c.issuer,
      }).toEqual(entry.fields);
      expect(hex(encodeNodeCert(c))).toBe(entry.hex);
      expect(c.fingerprint).toBe(entry.fingerprint);
      expect(verifyNodeCert(c, ca, v.verifyAt)).toBeNull();
      expect(verifyNodeCert(c, ca, v.verifyAt, crl)).toBe(expected);
      expect(encodeKey(nobleCrypto.publicKey(Buffer.from(entry.privateKey, 'base64')))).toBe(entry.fields.publicKey);
    }
    for (const entry of [v.ca, v.node, v.lighthouse, v.crl, v.emptyCrl]) {
      for (const t of [entry.pem, entry.oneLine]) {
        const r = parseCertText(t);
        expect(r.ok && hex(r.bytes)).toBe(entry.hex);
      }
    }
  });

  it('every refused encoding gets its reason', () => {
    const ca = (decodeCert(bytes(v.ca.hex)) as { cert: CaCert }).cert;
    for (const r of v.refused) {
      const d = decodeCert(bytes(r.hex));
      if (r.decode === 'ok') {
        expect(d.ok, r.why).toBe(true);
        expect(verifyNodeCert((d as { cert: NodeCert }).cert, ca, v.verifyAt), r.why).toBe(r.verify);
      } else expect(d.ok ? 'ok' : d.reason, r.why).toBe(r.decode);
    }
  });
});
