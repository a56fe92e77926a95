/**
 * A CA directory, as `keymesh ca` keeps it:
 *
 *   ca.key       the CA's Ed25519 seed (KEYMESH CA PRIVATE KEY), mode 0600, never replaced
 *   ca.crt       the CA certificate (KEYMESH CA CERTIFICATE)
 *   index.json   every certificate issued, with its one-line form, and what was revoked
 *   revoked.crl  the latest revocation list (KEYMESH REVOCATION LIST), after the first revoke
 *   .lock        held while a command changes the directory
 *
 * Allocation rules (what `ca sign` refuses): a name is issued again only after every certificate
 * with it is revoked; an address or subnet, once issued to a name, is never issued to another name,
 * revoked or not — nodes that have not fetched the newest revocation list still accept the old
 * certificate, so handing its address on would let it pose as the new holder. A revoked name
 * gets its own addresses back when it is issued again (renewal).
 *
 * May touch: the files above. Everything is written atomically (atomic-write.ts).
 */
import { mkdir, open, readFile, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import {
  decodeCert,
  formatPrefix,
  hostPrefix,
  networkOf,
  prefixContains,
  prefixesOverlap,
  type CaCert,
  type IpPrefix,
  type NodeCert,
} from '../core/cert.js';
import { decodeCertText, parseCaKey, parseCertText, toOneLine, toPem } from '../core/cert-text.js';
import { prefixFromText } from '../config/mesh.js';
import { writeFileAtomic } from '../io/atomic-write.js';

export interface IssuedEntry {
  name: string;
  fingerprint: string;
  /** WireGuard public key, base64. */
  publicKey: string;
  addresses: string[];
  subnets: string[];
  groups: string[];
  lighthouse: boolean;
  notBefore: number;
  notAfter: number;
  issuedAt: number;
  revokedAt?: number;
  /** The certificate itself, one-line form: what enroll reads lighthouses from. */
  certificate: string;
}

export interface CaIndex {
  version: 1;
  /** Fingerprint of ca.crt: an index belongs to one CA. */
  ca: string;
  /** Serial of revoked.crl; 0 before the first revocation. */
  crlSerial: number;
  issued: IssuedEntry[];
}

export const FILES = { key: 'ca.key', cert: 'ca.crt', index: 'index.json', crl: 'revoked.crl', lock: '.lock' } as const;

/** A clear one-line refusal; main prints it as `keymesh: …` and exits 1. */
export class CaError extends Error {}

export class CaStore {
  private constructor(
    readonly dir: string,
    readonly ca: CaCert,
    readonly index: CaIndex,
  ) {}

  file(name: keyof typeof FILES): string {
    return path.join(this.dir, FILES[name]);
  }

  /** Open an existing CA directory: ca.crt and index.json must agree. */
  static async open(dir: string): Promise<CaStore> {
    const certText = await readFile(path.join(dir, FILES.cert), 'utf8').catch((e: NodeJS.ErrnoException) => {
      throw new CaError(e.code === 'ENOENT' ? `${dir} is not a CA directory (no ${FILES.cert}; create one with keymesh ca init)` : `${path.join(dir, FILES.cert)}: ${e.code ?? e.message}`);
    });
    const r = decodeCertText(certText);
    if (!r.ok || r.doc.kind !== 'ca') throw new CaError(`${path.join(dir, FILES.cert)} is not a CA certificate (${r.ok ? r.doc.kind : r.reason})`);
    const index = await readIndex(path.join(dir, FILES.index));
    if (index.ca !== r.doc.fingerprint) throw new CaError(`${path.join(dir, FILES.index)} belongs to another CA than ${FILES.cert}`);
    return new CaStore(dir, r.doc, index);
  }

  /** Create a CA directory's files; ca.key is linked in exclusively, so an existing one is never replaced. */
  static async create(dir: string, ca: CaCert, keyPem: string): Promise<CaStore> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    for (const f of [FILES.key, FILES.cert, FILES.index]) {
      if (await exists(path.join(dir, f))) throw new CaError(`${path.join(dir, f)} already exists: ${dir} already holds a CA (refusing to overwrite it)`);
    }
    try {
      await writeFileAtomic(path.join(dir, FILES.key), keyPem, { mode: 0o600, exclusive: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new CaError(`${path.join(dir, FILES.key)} already exists (refusing to overwrite it)`);
      throw e;
    }
    const store = new CaStore(dir, ca, { version: 1, ca: ca.fingerprint, crlSerial: 0, issued: [] });
    await writeFileAtomic(store.file('cert'), toPem(ca), { mode: 0o644 });
    await store.saveIndex();
    return store;
  }

  async caSeed(): Promise<Uint8Array> {
    const text = await readFile(this.file('key'), 'utf8').catch((e: NodeJS.ErrnoException) => {
      throw new CaError(`${this.file('key')}: ${e.code === 'ENOENT' ? 'no such file (signing needs the CA private key)' : (e.code ?? e.message)}`);
    });
    const seed = parseCaKey(text);
    if (!seed) throw new CaError(`${this.file('key')} is not a KEYMESH CA PRIVATE KEY file`);
    return seed;
  }

  /** Run `fn` holding the directory's lock, so two commands never interleave their index writes. */
  async locked<T>(fn: () => Promise<T>): Promise<T> {
    const lock = this.file('lock');
    let fh;
    try {
      fh = await open(lock, 'wx', 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new CaError(`${this.dir} is in use by another keymesh ca command (if none is running, remove ${lock})`);
      throw e;
    }
    await fh.close();
    try {
      return await fn();
    } finally {
      await unlink(lock).catch(() => undefined);
    }
  }

  async saveIndex(): Promise<void> {
    await writeFileAtomic(this.file('index'), JSON.stringify(this.index, null, 2) + '\n', { mode: 0o644 });
  }

  /** Record a newly signed certificate. */
  record(cert: NodeCert, publicKeyB64: string, now: number): void {
    this.index.issued.push({
      name: cert.name,
      fingerprint: cert.fingerprint,
      publicKey: publicKeyB64,
      addresses: cert.addresses.map(formatPrefix),
      subnets: cert.subnets.map(formatPrefix),
      groups: [...cert.groups],
      lighthouse: cert.lighthouse,
      notBefore: cert.notBefore,
      notAfter: cert.notAfter,
      issuedAt: now,
      certificate: toOneLine(cert),
    });
  }

  /** The certificate of an index entry, decoded (the index's copy is what enroll trusts). */
  certOf(e: IssuedEntry): NodeCert {
    const t = parseCertText(e.certificate);
    const r = t.ok ? decodeCert(t.bytes) : t;
    if (!r.ok || r.cert.kind !== 'node' || r.cert.fingerprint !== e.fingerprint) throw new CaError(`${this.file('index')}: the entry for ${e.name} is damaged`);
    return r.cert;
  }

  /**
   * Refuse a name still held by an unrevoked certificate — unless for the same public key: that is
   * a renewal (the device keeps its key; the new certificate replaces the old on `keymesh reload`).
   */
  checkName(name: string, publicKeyB64: string): void {
    const held = this.index.issued.find((e) => e.name === name && e.revokedAt === undefined && e.publicKey !== publicKeyB64);
    if (held) throw new CaError(`name "${name}" is already issued to another key (fingerprint ${held.fingerprint.slice(0, 16)}…); revoke it first (keymesh ca revoke) to issue it again`);
  }

  /**
   * Refuse addresses and subnets that clash with another name's, or lie outside the CA's networks,
   * or (addresses) are a network's own or broadcast address.
   */
  checkClaims(name: string, addresses: IpPrefix[], subnets: IpPrefix[]): void {
    const nets = this.ca.networks;
    const others = this.index.issued.filter((e) => e.name !== name);
    for (const a of addresses) {
      const host = hostPrefix(a);
      const net = nets.find((n) => prefixContains(n, host));
      if (!net || !prefixContains(net, networkOf(a))) throw new CaError(`address ${formatPrefix(a)} is outside the CA's networks (${nets.map(formatPrefix).join(', ')})`);
      if (!usableHost(host, net)) throw new CaError(`address ${formatPrefix(a)} is the network's ${isNetworkAddress(host, net) ? 'own' : 'broadcast'} address (${formatPrefix(net)})`);
      for (const e of others) {
        for (const t of e.addresses.map(parsed)) if (prefixContains(hostPrefix(t), host)) throw new CaError(`address ${formatPrefix(host)} is already issued to ${e.name}${e.revokedAt !== undefined ? ' (revoked; addresses are never handed to another name)' : ''}`);
        for (const t of e.subnets.map(parsed)) if (prefixContains(t, host)) throw new CaError(`address ${formatPrefix(host)} is inside ${e.name}'s subnet ${formatPrefix(t)}`);
      }
    }
    for (const s of subnets) {
      if (!nets.some((n) => prefixContains(n, s))) throw new CaError(`subnet ${formatPrefix(s)} is outside the CA's networks (${nets.map(formatPrefix).join(', ')})`);
      for (const e of others) {
        for (const t of e.addresses.map(parsed)) if (prefixContains(s, hostPrefix(t))) throw new CaError(`subnet ${formatPrefix(s)} holds ${e.name}'s address ${formatPrefix(hostPrefix(t))}`);
        for (const t of e.subnets.map(parsed)) if (prefixesOverlap(s, t)) throw new CaError(`subnet ${formatPrefix(s)} overlaps ${e.name}'s subnet ${formatPrefix(t)}`);
      }
    }
  }

  /**
   * Addresses for a certificate without --ip: the name's previous ones when it is issued again,
   * else the lowest free host of each CA network (one per network), with the network's length.
   */
  allocate(name: string): IpPrefix[] {
    const previous = [...this.index.issued].reverse().find((e) => e.name === name);
    if (previous) {
      const again = previous.addresses.map(parsed);
      try {
        this.checkClaims(name, again, []);
        return again;
      } catch {
        // the CA's networks changed under it: allocate afresh
      }
    }
    const taken: IpPrefix[] = [];
    for (const e of this.index.issued) {
      if (e.name === name) continue;
      taken.push(...e.addresses.map((a) => hostPrefix(parsed(a))), ...e.subnets.map(parsed));
    }
    return this.ca.networks.map((net) => {
      const free = firstFree(net, taken);
      if (!free) throw new CaError(`no free address left in ${formatPrefix(net)}`);
      return free;
    });
  }
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

async function readIndex(file: string): Promise<CaIndex> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new CaError(`${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file (the CA directory is incomplete)' : ((e as NodeJS.ErrnoException).code ?? (e as Error).message)}`);
  }
  let v: CaIndex;
  try {
    v = JSON.parse(text);
  } catch {
    throw new CaError(`${file} is not valid JSON`);
  }
  if (v?.version !== 1 || typeof v.ca !== 'string' || !Array.isArray(v.issued) || !Number.isSafeInteger(v.crlSerial)) throw new CaError(`${file} is not a keymesh CA index (version 1)`);
  return v;
}

function parsed(text: string): IpPrefix {
  const p = prefixFromText(text);
  if (typeof p === 'string') throw new CaError(`index.json: ${p}`);
  return p;
}

function toBig(a: Uint8Array): bigint {
  return a.reduce((acc, b) => (acc << 8n) | BigInt(b), 0n);
}

function fromBig(n: bigint, len: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = len - 1; i >= 0; i--) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return out;
}

function isNetworkAddress(host: IpPrefix, net: IpPrefix): boolean {
  const hostBits = host.addr.length * 8 - net.bits;
  return hostBits > 0 && toBig(host.addr) === toBig(net.addr);
}

/**
 * Not the network's own address (nor, for IPv4, its broadcast address) — except in /31 and /32
 * (IPv4) and /127 and /128 (IPv6), where every address is a host (RFC 3021, RFC 6164).
 */
function usableHost(host: IpPrefix, net: IpPrefix): boolean {
  const hostBits = host.addr.length * 8 - net.bits;
  if (hostBits <= 1) return true;
  const n = toBig(host.addr) - toBig(net.addr);
  if (n === 0n) return false;
  return host.family === 6 || n !== (1n << BigInt(hostBits)) - 1n;
}

/** The lowest usable host of `net` not inside any of `taken`, with `net`'s prefix length. */
function firstFree(net: IpPrefix, taken: IpPrefix[]): IpPrefix | null {
  const len = net.addr.length;
  const hostBits = len * 8 - net.bits;
  const size = 1n << BigInt(hostBits);
  const base = toBig(net.addr);
  const inNet = taken.filter((t) => prefixesOverlap(t, net));
  for (let i = 0n; i < size; i++) {
    const host: IpPrefix = { family: net.family, addr: fromBig(base + i, len), bits: len * 8 };
    if (!usableHost(host, net)) continue;
    const clash = inNet.find((t) => prefixContains(t, host));
    if (!clash) return { family: net.family, addr: host.addr, bits: net.bits };
    // skip the whole taken prefix at once (a /24 subnet is 256 steps in one)
    if (clash.bits < len * 8) i = toBig(clash.addr) + (1n << BigInt(len * 8 - clash.bits)) - 1n - base;
  }
  return null;
}
