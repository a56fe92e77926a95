/**
 * Mesh membership in a wg-quick file: three keymesh keys in [Interface].
 *
 *   Certificate = PATH | kmcert1:…   this node's certificate (file in either text form, or inline)
 *   CA          = PATH | kmca1:…     the mesh CA's certificate
 *   Revocations = PATH               the CA's revocation list; a file not there yet means none
 *
 * Relative paths are relative to the config file's directory. parseWgQuick decodes inline values
 * and, when both are inline, checks them at once; loadWgQuick reads the files (completeMeshFiles).
 * The checks, each an error naming the file and line: one of Certificate/CA without the other; a
 * value that does not decode; a CA that is not validly self-signed or not valid now; a certificate
 * not signed by that CA, not valid now, or for another key than PrivateKey's; `Address` given
 * and not the certificate's addresses. Without `Address` the interface takes the certificate's
 * addresses, prefixes included, so the CA's networks are routed to the interface.
 */
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';
import { formatPrefix, verifyCa, verifyNodeCert, type CaCert, type CertReason, type IpPrefix, type NodeCert } from '../core/cert.js';
import { decodeCertText, type Doc } from '../core/cert-text.js';
import { verifyCrl, type Crl } from '../core/crl.js';
import { publicKeyOf } from './keys.js';
import { createNodeEd25519Verify } from '../io/ed25519-verify.js';
import { formatAddress } from '../core/ip.js';

/** A mesh key's value as written in the file, and where. */
export interface MeshKeyValue {
  value: string;
  line: number;
}

/** The mesh keys as written: what SaveConfig writes back, and what loadWgQuick resolves. */
export interface MeshKeys {
  certificate?: MeshKeyValue;
  ca?: MeshKeyValue;
  revocations?: MeshKeyValue;
  /** The line of the first Address, for the message when it disagrees with the certificate. */
  addressLine?: number;
}

/** Mesh membership, decoded and checked. */
export interface MeshConfig {
  ca: CaCert;
  cert: NodeCert;
  /** Revocations = PATH, resolved against the config's directory. */
  revocationsPath?: string;
  /** The revocation list read from revocationsPath, if the file exists (verified against `ca`). */
  crl?: Crl;
  /** Address was not in the file: the interface's addresses are the certificate's (SaveConfig leaves it out). */
  addressesFromCert: boolean;
}

/** What mesh checking needs of the interface being parsed. */
export interface MeshInterface {
  privateKey: Uint8Array;
  addresses: Array<{ addr: string; cidr: number; family: 4 | 6 }>;
  meshKeys?: MeshKeys;
  mesh?: MeshConfig;
}

type Fail = (line: number, problem: string) => never;

/** Signatures checked through OpenSSL, as the runtime does (noble's first, cold check costs ~50 ms of start-up). */
const verifyEd25519 = createNodeEd25519Verify();

const INLINE = /^km(ca|cert|crl)1:/;

export function isInlineValue(v: string): boolean {
  return INLINE.test(v);
}

const REASON_TEXT: Partial<Record<CertReason, string>> = {
  truncated: 'is cut short',
  oversized: 'is too large',
  'bad-magic': 'is not a keymesh certificate',
  malformed: 'is not a valid keymesh certificate',
  'wrong-kind': 'is another kind of document',
};

function iso(sec: number): string {
  return new Date(sec * 1000).toISOString().replace('.000Z', 'Z');
}

const KIND_TEXT: Record<Doc['kind'], string> = { ca: 'a CA certificate', node: 'a node certificate', crl: 'a revocation list' };

/** The text form → a decoded document of `kind`, or an error naming `where` (never the content). */
function decodeValue(text: string, where: string, kind: Doc['kind'], fail: (problem: string) => never): Doc {
  const r = decodeCertText(text);
  if (!r.ok) return fail(`${where} ${REASON_TEXT[r.reason] ?? 'does not decode'} (${r.reason}; expected ${KIND_TEXT[kind]})`);
  if (r.doc.kind !== kind) return fail(`${where} is ${KIND_TEXT[r.doc.kind]}, expected ${KIND_TEXT[kind]}`);
  return r.doc;
}

/** Parse-time checks: the keys come in pairs, Revocations only with a CA. */
export function checkMeshKeys(keys: MeshKeys | undefined, fail: Fail): void {
  if (!keys) return;
  if (keys.certificate && !keys.ca) fail(keys.certificate.line, 'Certificate without CA (a certificate is checked against the mesh CA: add CA = PATH)');
  if (keys.ca && !keys.certificate) fail(keys.ca.line, 'CA without Certificate (a mesh member needs its own certificate: add Certificate = PATH)');
  if (keys.revocations && !keys.ca) fail(keys.revocations.line, 'Revocations without CA and Certificate');
  if (keys.revocations && isInlineValue(keys.revocations.value)) fail(keys.revocations.line, 'Revocations must be a file path (the list is replaced whenever the CA revokes a certificate)');
}

/**
 * Check the certificate and CA against each other, the private key, the addresses and the clock,
 * then set `iface.mesh` (and the addresses, when none were given). `certWhere`/`caWhere` name the
 * value in messages ("Certificate" or "Certificate /etc/keymesh/a.crt").
 */
export function completeMesh(
  iface: MeshInterface,
  ca: CaCert,
  cert: NodeCert,
  where: { cert: string; ca: string; certLine: number; caLine: number; addressLine?: number },
  nowSec: number,
  fail: Fail,
): void {
  const caWhy = verifyCa(ca, nowSec, verifyEd25519);
  if (caWhy === 'ca-expired') fail(where.caLine, `${where.ca} expired on ${iso(ca.notAfter)}`);
  if (caWhy === 'ca-not-yet-valid') fail(where.caLine, `${where.ca} is not valid before ${iso(ca.notBefore)} (is the clock right?)`);
  if (caWhy) fail(where.caLine, `${where.ca} is not validly self-signed (${caWhy})`);
  const why = verifyNodeCert(cert, ca, nowSec, undefined, verifyEd25519);
  if (why === 'unknown-ca') fail(where.certLine, `${where.cert} was not issued by this CA (${where.ca}, mesh "${ca.name}")`);
  if (why === 'expired') fail(where.certLine, `${where.cert} expired on ${iso(cert.notAfter)}`);
  if (why === 'not-yet-valid') fail(where.certLine, `${where.cert} is not valid before ${iso(cert.notBefore)} (is the clock right?)`);
  if (why === 'bad-signature') fail(where.certLine, `${where.cert} does not carry a valid signature of this CA`);
  if (why) fail(where.certLine, `${where.cert} is refused by the CA (${why})`);
  const ours = publicKeyOf(iface.privateKey);
  if (!ours.every((b, i) => b === cert.publicKey[i])) fail(where.certLine, `${where.cert} is for another key than this PrivateKey (certificate "${cert.name}")`);
  const certAddrs = cert.addresses.map(formatPrefix).sort();
  // Rebuilt from scratch: a second completion (loadWgQuick after parseWgQuick) sees its own default.
  const fromCert = !iface.addresses.length || (iface.mesh?.addressesFromCert ?? false);
  if (fromCert) {
    iface.addresses = cert.addresses.map((a) => ({ addr: formatAddress(a.addr), cidr: a.bits, family: a.family }));
  } else {
    const given = iface.addresses.map((a) => normalized(a)).sort();
    if (given.join(',') !== certAddrs.join(',')) {
      fail(where.addressLine ?? where.certLine, `Address (${given.join(', ')}) is not the certificate's addresses (${certAddrs.join(', ')}); leave Address out to use the certificate's`);
    }
  }
  iface.mesh = { ca, cert, addressesFromCert: fromCert, revocationsPath: iface.mesh?.revocationsPath, crl: iface.mesh?.crl };
}

/** An interface address in the form formatPrefix prints (so "fd99:0::5/48" equals "fd99::5/48"). */
function normalized(a: { addr: string; cidr: number; family: 4 | 6 }): string {
  const p = prefixFromText(`${a.addr}/${a.cidr}`);
  return typeof p === 'string' ? `${a.addr}/${a.cidr}` : formatPrefix(p);
}

/** Inline values, decoded and checked when both are inline (parseWgQuick); paths wait for loadWgQuick. */
export function completeInlineMesh(iface: MeshInterface, nowSec: number, fail: Fail, addressLine?: number): void {
  const k = iface.meshKeys;
  if (!k?.certificate || !k.ca) return;
  const c = k.certificate;
  const a = k.ca;
  const cert = isInlineValue(c.value) ? decodeValue(c.value, 'Certificate', 'node', (p) => fail(c.line, p)) : null;
  const ca = isInlineValue(a.value) ? decodeValue(a.value, 'CA', 'ca', (p) => fail(a.line, p)) : null;
  if (cert && ca) completeMesh(iface, ca as CaCert, cert as NodeCert, { cert: 'Certificate', ca: 'CA', certLine: c.line, caLine: a.line, addressLine }, nowSec, fail);
}

async function readValue(kv: MeshKeyValue, dir: string, key: string, kind: 'ca' | 'node', fail: Fail): Promise<{ doc: Doc; where: string }> {
  if (isInlineValue(kv.value)) return { doc: decodeValue(kv.value, key, kind, (p) => fail(kv.line, p)), where: key };
  const file = path.resolve(dir, kv.value);
  const where = `${key} ${file}`;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return fail(kv.line, `${where}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (code ?? (e as Error).message)}`);
  }
  return { doc: decodeValue(text, where, kind, (p) => fail(kv.line, p)), where };
}

/**
 * loadWgQuick's part: read the Certificate and CA files (unless parseWgQuick already checked
 * inline values) and the revocation list, which must be signed by the same CA.
 */
export async function completeMeshFiles(iface: MeshInterface, file: string, nowSec: number, fail: Fail, addressLine?: number): Promise<void> {
  const k = iface.meshKeys;
  if (!k?.certificate || !k.ca) return;
  const dir = path.dirname(file);
  if (!iface.mesh) {
    const cert = await readValue(k.certificate, dir, 'Certificate', 'node', fail);
    const ca = await readValue(k.ca, dir, 'CA', 'ca', fail);
    completeMesh(iface, ca.doc as CaCert, cert.doc as NodeCert, { cert: cert.where, ca: ca.where, certLine: k.certificate.line, caLine: k.ca.line, addressLine }, nowSec, fail);
  }
  const mesh = iface.mesh!;
  if (!k.revocations) return;
  const crlPath = path.resolve(dir, k.revocations.value);
  mesh.revocationsPath = crlPath;
  let text: string;
  try {
    text = await readFile(crlPath, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return; // nothing revoked yet
    return fail(k.revocations.line, `Revocations ${crlPath}: ${code === 'EACCES' ? 'permission denied' : (code ?? (e as Error).message)}`);
  }
  const crl = decodeValue(text, `Revocations ${crlPath}`, 'crl', (p) => fail(k.revocations!.line, p)) as Crl;
  const why = verifyCrl(crl, mesh.ca, undefined, verifyEd25519);
  if (why === 'unknown-ca') fail(k.revocations.line, `Revocations ${crlPath} is from another CA than ${mesh.ca.name}'s`);
  if (why) fail(k.revocations.line, `Revocations ${crlPath} is refused (${why})`);
  mesh.crl = crl;
  if (crl.revokedSet.has(mesh.cert.fingerprint)) fail(k.certificate.line, `the certificate "${mesh.cert.name}" is revoked (Revocations ${crlPath})`);
}

/** "10.99.0.5/16", "fd99::/48" (prefix optional: a host) → an IpPrefix, or a problem string. */
export function prefixFromText(text: string): IpPrefix | string {
  const slash = text.indexOf('/');
  const a = slash >= 0 ? text.slice(0, slash) : text;
  const b = parseAddress(a);
  if (!b) return `"${text}" is not an IPv4 or IPv6 address`;
  const family = b.length === 4 ? 4 : 6;
  const max = b.length * 8;
  let bits = max;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > max) return `"${text}" is not a valid IPv${family} prefix (length must be 0–${max})`;
    bits = Number(p);
  }
  return { family, addr: b, bits };
}

/** IPv4 or IPv6 text, as Node's isIP accepts it (no zone) → bytes, or null. */
export function parseAddress(s: string): Uint8Array | null {
  const fam = isIP(s);
  if (fam === 4) return new Uint8Array(s.split('.').map(Number));
  if (fam !== 6 || s.includes('%')) return null;
  let t = s;
  let tail4: number[] | null = null;
  const last = t.lastIndexOf(':');
  if (t.slice(last + 1).includes('.')) {
    tail4 = t.slice(last + 1).split('.').map(Number);
    t = `${t.slice(0, last + 1)}0:0`;
  }
  const [head, tail] = t.split('::');
  const h = head ? head.split(':') : [];
  const tl = tail ? tail.split(':') : [];
  const groups = t.includes('::') ? [...h, ...new Array(8 - h.length - tl.length).fill('0'), ...tl] : h;
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    const v = parseInt(g, 16);
    out[2 * i] = v >> 8;
    out[2 * i + 1] = v & 0xff;
  });
  if (tail4) out.set(tail4, 12);
  return out;
}
