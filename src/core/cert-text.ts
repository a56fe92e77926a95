/**
 * Text forms of certificates, revocation lists and the CA's private key.
 *
 *   PEM-style, for files: RFC 7468's textual encoding (standard base64 with padding, lines of 64)
 *     -----BEGIN KEYMESH CA CERTIFICATE-----    a CA certificate
 *     -----BEGIN KEYMESH CERTIFICATE-----       a node certificate
 *     -----BEGIN KEYMESH REVOCATION LIST-----   a revocation list
 *     -----BEGIN KEYMESH CA PRIVATE KEY-----    the CA's 32-byte Ed25519 seed
 *   One line, for a value inside a config file: a prefix naming the kind, then base64url without
 *   padding (RFC 4648 §5) of the same bytes:
 *     kmca1:…  a CA certificate       kmcert1:…  a node certificate       kmcrl1:…  a revocation list
 *
 * The bytes are what is canonical; text around them is read liberally (any line length, CRLF,
 * surrounding blank space) but the base64 itself strictly (no stray characters, zero pad bits),
 * and the label or prefix must name the kind the bytes say they are. Parsers return tagged
 * results; the private key never appears in a message.
 */
import { MAX_CERT_BYTES, decodeCert, type Cert, type CertReason } from './cert.js';
import { KIND_CA, KIND_CRL, KIND_NODE, MAGIC } from './cert-wire.js';
import { MAX_CRL_BYTES, decodeCrl, type Crl } from './crl.js';

export type DocKind = 'ca' | 'node' | 'crl';

const PEM_LABEL: Record<DocKind, string> = { ca: 'KEYMESH CA CERTIFICATE', node: 'KEYMESH CERTIFICATE', crl: 'KEYMESH REVOCATION LIST' };
export const PEM_CA_KEY_LABEL = 'KEYMESH CA PRIVATE KEY';
const ONE_LINE_PREFIX: Record<DocKind, string> = { ca: 'kmca1:', node: 'kmcert1:', crl: 'kmcrl1:' };

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const DECODE = new Map<string, Int8Array>();
for (const alphabet of [B64, B64URL]) {
  const t = new Int8Array(128).fill(-1);
  for (let i = 0; i < 64; i++) t[alphabet.charCodeAt(i)] = i;
  DECODE.set(alphabet, t);
}

/** Base64 of `bytes`: padded in the standard alphabet, unpadded in the URL-safe one. */
export function base64(bytes: Uint8Array, url = false): string {
  const a = url ? B64URL : B64;
  let s = '';
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    const left = bytes.length - i;
    s += a[(n >> 18) & 63] + a[(n >> 12) & 63];
    s += left > 1 ? a[(n >> 6) & 63] : url ? '' : '=';
    s += left > 2 ? a[n & 63] : url ? '' : '=';
  }
  return s;
}

/** Strict inverse of base64(): one spelling per byte string (padding as above, pad bits zero). */
export function unbase64(text: string, url = false): Uint8Array | null {
  const table = DECODE.get(url ? B64URL : B64)!;
  let body = text;
  if (!url) {
    if (text.length % 4) return null;
    body = text.endsWith('==') ? text.slice(0, -2) : text.endsWith('=') ? text.slice(0, -1) : text;
  }
  if (body.length % 4 === 1) return null;
  const out = new Uint8Array(Math.floor((body.length * 3) / 4));
  let acc = 0;
  let bits = 0;
  let o = 0;
  for (let i = 0; i < body.length; i++) {
    const c = body.charCodeAt(i);
    const v = c < 128 ? table[c] : -1;
    if (v < 0) return null;
    acc = ((acc << 6) | v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  if (acc & ((1 << bits) - 1)) return null; // nonzero pad bits: a second spelling
  return out;
}

/** The kind the bytes declare (magic, then kind byte), or null if they are not a keymesh document. */
export function kindOf(bytes: Uint8Array): DocKind | null {
  if (bytes.length < MAGIC.length + 1) return null;
  for (let i = 0; i < MAGIC.length; i++) if (bytes[i] !== MAGIC[i]) return null;
  const k = bytes[MAGIC.length];
  return k === KIND_CA ? 'ca' : k === KIND_NODE ? 'node' : k === KIND_CRL ? 'crl' : null;
}

function pemBlock(label: string, bytes: Uint8Array): string {
  const b = base64(bytes);
  const lines: string[] = [];
  for (let i = 0; i < b.length; i += 64) lines.push(b.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** The PEM-style text of a certificate or revocation list (its kind picks the label). */
export function toPem(doc: { kind: DocKind; bytes: Uint8Array }): string {
  return pemBlock(PEM_LABEL[doc.kind], doc.bytes);
}

/** The one-line form of a certificate or revocation list. */
export function toOneLine(doc: { kind: DocKind; bytes: Uint8Array }): string {
  return ONE_LINE_PREFIX[doc.kind] + base64(doc.bytes, true);
}

/** A single PEM block: its label and bytes, or null. Only blank space may surround it. */
function readPem(text: string, maxBytes: number): { label: string; bytes: Uint8Array } | null {
  const lines = text.trim().split(/\r?\n/).map((l) => l.trim());
  if (lines.length < 2) return null;
  const begin = /^-----BEGIN ([A-Z ]{1,40})-----$/.exec(lines[0]);
  const end = /^-----END ([A-Z ]{1,40})-----$/.exec(lines[lines.length - 1]);
  if (!begin || !end || begin[1] !== end[1]) return null;
  const body = lines.slice(1, -1).join('');
  // 4 characters per 3 bytes: refuse before decoding what would be too large anyway.
  if (body.length > ((maxBytes + 2) / 3) * 4 + 4) return null;
  const bytes = unbase64(body);
  return bytes ? { label: begin[1], bytes } : null;
}

export type TextResult = { ok: true; kind: DocKind; bytes: Uint8Array } | { ok: false; reason: CertReason };

/**
 * A certificate or revocation list in either text form → its kind (as the text names it) and
 * bytes, not yet decoded. `malformed` if it is neither form; `wrong-kind` if the label or prefix
 * names another kind than the bytes declare; `oversized` past the size cap.
 */
export function parseCertText(text: string): TextResult {
  if (typeof text !== 'string') return { ok: false, reason: 'malformed' };
  const t = text.trim();
  let kind: DocKind | null = null;
  let bytes: Uint8Array | null = null;
  if (t.startsWith('-----BEGIN ')) {
    const pem = readPem(t, MAX_CRL_BYTES);
    if (!pem) return { ok: false, reason: 'malformed' };
    kind = (Object.keys(PEM_LABEL) as DocKind[]).find((k) => PEM_LABEL[k] === pem.label) ?? null;
    bytes = pem.bytes;
  } else {
    kind = (Object.keys(ONE_LINE_PREFIX) as DocKind[]).find((k) => t.startsWith(ONE_LINE_PREFIX[k])) ?? null;
    if (kind) {
      const b64 = t.slice(ONE_LINE_PREFIX[kind].length);
      if (b64.length > (MAX_CRL_BYTES * 4) / 3 + 4) return { ok: false, reason: 'oversized' };
      bytes = unbase64(b64, true);
    }
  }
  if (!kind || !bytes) return { ok: false, reason: 'malformed' };
  if (bytes.length > (kind === 'crl' ? MAX_CRL_BYTES : MAX_CERT_BYTES)) return { ok: false, reason: 'oversized' };
  const declared = kindOf(bytes);
  if (declared && declared !== kind) return { ok: false, reason: 'wrong-kind' };
  return { ok: true, kind, bytes };
}

export type Doc = Cert | Crl;

/** Text (either form) → a decoded certificate or revocation list, or the reason it is refused. */
export function decodeCertText(text: string): { ok: true; doc: Doc } | { ok: false; reason: CertReason } {
  const t = parseCertText(text);
  if (!t.ok) return t;
  return decodeAny(t.bytes);
}

/** Bytes of any kind → the decoded certificate or revocation list. */
export function decodeAny(bytes: Uint8Array): { ok: true; doc: Doc } | { ok: false; reason: CertReason } {
  if (kindOf(bytes) === 'crl') {
    const r = decodeCrl(bytes);
    return r.ok ? { ok: true, doc: r.crl } : r;
  }
  const r = decodeCert(bytes);
  return r.ok ? { ok: true, doc: r.cert } : r;
}

/** The CA's private key file: the 32-byte Ed25519 seed in a KEYMESH CA PRIVATE KEY block. */
export function caKeyToPem(seed: Uint8Array): string {
  if (!(seed instanceof Uint8Array) || seed.length !== 32) throw new TypeError('caKeyToPem: expected a 32-byte Ed25519 seed');
  return pemBlock(PEM_CA_KEY_LABEL, seed);
}

/** The seed from a CA private key file, or null if the text is not exactly one such block. */
export function parseCaKey(text: string): Uint8Array | null {
  if (typeof text !== 'string') return null;
  const pem = readPem(text, 64);
  return pem && pem.label === PEM_CA_KEY_LABEL && pem.bytes.length === 32 ? pem.bytes : null;
}
