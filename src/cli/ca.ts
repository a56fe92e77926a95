/**
 * `keymesh ca init|sign|enroll|revoke` (a mesh CA kept in a directory, see ca-store.ts) and
 * `keymesh cert show`. Refusals are one line on stderr and exit code 1 (main.ts prints CaError).
 *
 * Keys: the CA key only ever goes to DIR/ca.key (0600). A node's private key is printed only where
 * printing it is the point — `ca sign --genkey` without --out, and `ca enroll`, whose output is the
 * node's configuration — and is otherwise written to PREFIX.key (0600), never into a message.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import {
  certAddrs,
  createCa,
  formatPrefix,
  isDomain,
  isLabel,
  isMeshName,
  prefixContains,
  signNodeCert,
  verifyCa,
  verifyNodeCert,
  type CaCert,
  type CertReason,
  type IpPrefix,
  type NodeCert,
} from '../core/cert.js';
import { caKeyToPem, decodeAny, decodeCertText, kindOf, toOneLine, toPem, type Doc } from '../core/cert-text.js';
import { signCrl, verifyCrl } from '../core/crl.js';
import { nobleCrypto } from '../core/crypto.js';
import { decodeKey, encodeKey } from '../config/keys.js';
import { prefixFromText } from '../config/mesh.js';
import { parseEndpoint } from '../config/wgquick.js';
import { writeFileAtomic } from '../io/atomic-write.js';
import { CaError, CaStore } from './ca-store.js';

const DAY = 86400;
/** Certificates start a minute in the past, so a node whose clock is a little behind takes them at once. */
const BACKDATE = 60;

const nowSec = () => Math.floor(Date.now() / 1000);

function iso(sec: number): string {
  return new Date(sec * 1000).toISOString().replace('.000Z', 'Z');
}

function list(v: string | undefined): string[] {
  return (v ?? '').split(',').map((s) => s.trim()).filter(Boolean);
}

function prefixes(v: string | undefined, what: string): IpPrefix[] {
  return list(v).map((t) => {
    const p = prefixFromText(t);
    if (typeof p === 'string') throw new CaError(`${what}: ${p}`);
    return p;
  });
}

function days(v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (!/^\d{1,6}$/.test(v) || Number(v) < 1) throw new CaError(`--days: "${v}" is not a whole number of days (1 or more)`);
  return Number(v);
}

async function writeNew(file: string, data: string, mode: number): Promise<void> {
  try {
    await writeFileAtomic(file, data, { mode, exclusive: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new CaError(`${file} already exists (refusing to overwrite it; remove it or pick another --out)`);
    throw e;
  }
}

// ---- ca init ----------------------------------------------------------------------------------

async function caInit(opts: { name: string; networks: string; domain?: string; days?: string; out: string }): Promise<void> {
  if (!isMeshName(opts.name)) throw new CaError(`--name: the mesh name must be 1–64 printable ASCII characters without a space at either end`);
  const networks = prefixes(opts.networks, '--networks');
  if (!networks.length) throw new CaError('--networks: give at least one network, e.g. 10.99.0.0/16,fd99::/48');
  const domain = opts.domain ?? 'mesh';
  if (!isDomain(domain)) throw new CaError(`--domain: "${domain}" is not a DNS name of lowercase labels (a-z 0-9 -)`);
  const now = nowSec();
  const seed = new Uint8Array(randomBytes(32));
  let ca: CaCert;
  try {
    ca = createCa({ name: opts.name, networks, domain, notBefore: now - BACKDATE, notAfter: now + days(opts.days, 3650) * DAY }, seed);
  } catch (e) {
    throw new CaError((e as Error).message.replace(/^createCa: /, ''));
  }
  await CaStore.create(opts.out, ca, caKeyToPem(seed));
  seed.fill(0);
  process.stdout.write(
    `created CA "${ca.name}" in ${opts.out}: networks ${ca.networks.map(formatPrefix).join(', ')}, domain ${ca.domain}, valid until ${iso(ca.notAfter)}\n` +
      `fingerprint ${ca.fingerprint}\n`,
  );
}

// ---- ca sign / enroll -------------------------------------------------------------------------

interface SignOpts {
  ca: string;
  name: string;
  ip?: string;
  groups?: string;
  subnets?: string;
  days?: string;
}

/** Check, sign and record a node certificate (the caller holds the lock). */
async function issue(store: CaStore, o: SignOpts, publicKey: Uint8Array, lighthouse: boolean): Promise<NodeCert> {
  if (!isLabel(o.name)) throw new CaError(`--name: "${o.name}" is not a node name (a DNS label: a-z 0-9 and '-', 1–63 characters, no '-' at either end)`);
  const groups = list(o.groups);
  for (const g of groups) if (!isLabel(g)) throw new CaError(`--groups: "${g}" is not a group name (a-z 0-9 and '-', 1–63 characters)`);
  const subnets = prefixes(o.subnets, '--subnets');
  store.checkName(o.name, encodeKey(publicKey));
  // An address given without a length takes its network's (10.99.0.7 → 10.99.0.7/16).
  let addresses = list(o.ip).map((t) => {
    const [a] = prefixes(t, '--ip');
    const net = t.includes('/') ? undefined : store.ca.networks.find((n) => prefixContains(n, a));
    return net ? { ...a, bits: net.bits } : a;
  });
  if (!addresses.length) addresses = store.allocate(o.name);
  store.checkClaims(o.name, addresses, subnets);
  const now = nowSec();
  const ca = store.ca;
  const wanted = now + days(o.days, 365) * DAY;
  const notAfter = Math.min(wanted, ca.notAfter);
  if (notAfter < wanted) process.stderr.write(`keymesh: warning: the CA expires on ${iso(ca.notAfter)}; the certificate is valid until then only\n`);
  const seed = await store.caSeed();
  let cert: NodeCert;
  try {
    cert = signNodeCert({ name: o.name, publicKey, addresses, groups, subnets, lighthouse, notBefore: Math.max(now - BACKDATE, ca.notBefore), notAfter }, seed, ca);
  } catch (e) {
    throw new CaError((e as Error).message.replace(/^signNodeCert: /, ''));
  } finally {
    seed.fill(0);
  }
  return cert;
}

async function caSign(o: SignOpts & { lighthouse?: boolean; pubkey?: string; genkey?: boolean; out?: string }): Promise<void> {
  if (!!o.pubkey === !!o.genkey) throw new CaError('give exactly one of --pubkey KEY (the node\'s WireGuard public key) or --genkey');
  let privateKey: Uint8Array | null = null;
  let publicKey: Uint8Array;
  if (o.pubkey) {
    const k = decodeKey(o.pubkey.trim());
    if (!k) throw new CaError('--pubkey is not a base64 WireGuard public key (44 characters, as `keymesh pubkey` prints)');
    publicKey = k;
  } else {
    privateKey = nobleCrypto.generatePrivateKey((n) => new Uint8Array(randomBytes(n)));
    publicKey = nobleCrypto.publicKey(privateKey);
  }
  const store = await CaStore.open(o.ca);
  await store.locked(async () => {
    if (o.out) {
      // refuse before signing: a certificate recorded but never written would hold its name
      for (const f of [`${o.out}.crt`, ...(privateKey ? [`${o.out}.key`] : [])]) {
        if (await readFile(f).then(() => true, () => false)) throw new CaError(`${f} already exists (refusing to overwrite it; remove it or pick another --out)`);
      }
    }
    const cert = await issue(store, o, publicKey, o.lighthouse ?? false);
    if (o.out) {
      if (privateKey) await writeNew(`${o.out}.key`, encodeKey(privateKey) + '\n', 0o600);
      await writeNew(`${o.out}.crt`, toPem(cert), 0o644);
    }
    store.record(cert, encodeKey(publicKey), nowSec());
    await store.saveIndex();
    if (o.out) {
      process.stderr.write(`signed ${cert.name}: ${cert.addresses.map(formatPrefix).join(', ')}, valid until ${iso(cert.notAfter)} → ${o.out}.crt${privateKey ? `, ${o.out}.key` : ''}\n`);
    } else {
      process.stdout.write(toPem(cert));
      if (privateKey) process.stdout.write(encodeKey(privateKey) + '\n');
    }
  });
  privateKey?.fill(0);
}

async function caEnroll(
  o: SignOpts & { lighthouse?: string; listenPort?: string; isLighthouse?: boolean },
): Promise<void> {
  let listenPort: number | undefined;
  if (o.listenPort !== undefined) {
    if (!/^\d{1,5}$/.test(o.listenPort) || Number(o.listenPort) < 1 || Number(o.listenPort) > 65535) throw new CaError(`--listen-port: "${o.listenPort}" is not a port number (1–65535)`);
    listenPort = Number(o.listenPort);
  }
  if (o.isLighthouse && listenPort === undefined) throw new CaError('--is-lighthouse needs --listen-port (a lighthouse must be reachable at a known port)');
  const lhs = list(o.lighthouse).map((item) => {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new CaError(`--lighthouse: "${item}" is not LHNAME=HOST:PORT`);
    const ep = parseEndpoint(item.slice(eq + 1));
    if (typeof ep === 'string') throw new CaError(`--lighthouse ${item.slice(0, eq)}: ${ep}`);
    return { name: item.slice(0, eq), endpoint: ep };
  });
  if (!lhs.length && !o.isLighthouse) throw new CaError('--lighthouse LHNAME=HOST:PORT is required (a member finds the mesh through its lighthouses), unless this node --is-lighthouse');
  const store = await CaStore.open(o.ca);
  const now = nowSec();
  const peers = lhs.map((lh) => {
    if (lh.name === o.name) throw new CaError(`--lighthouse: ${lh.name} is the node being enrolled`);
    const entries = store.index.issued.filter((e) => e.name === lh.name && e.revokedAt === undefined);
    if (!entries.length) throw new CaError(`--lighthouse: this CA has issued no (unrevoked) certificate named "${lh.name}"`);
    const e = entries[entries.length - 1];
    const cert = store.certOf(e);
    if (!cert.lighthouse) throw new CaError(`--lighthouse: ${lh.name} is not a lighthouse (sign it with --lighthouse)`);
    if (cert.notAfter < now) throw new CaError(`--lighthouse: ${lh.name}'s certificate expired on ${iso(cert.notAfter)}`);
    return { ...lh, cert };
  });
  const privateKey = nobleCrypto.generatePrivateKey((n) => new Uint8Array(randomBytes(n)));
  const publicKey = nobleCrypto.publicKey(privateKey);
  await store.locked(async () => {
    const cert = await issue(store, o, publicKey, o.isLighthouse ?? false);
    store.record(cert, encodeKey(publicKey), nowSec());
    await store.saveIndex();
    const out = [
      `# keymesh configuration for ${cert.name} in mesh "${store.ca.name}", from \`keymesh ca enroll\``,
      `# addresses ${cert.addresses.map(formatPrefix).join(', ')} (from the certificate); valid until ${iso(cert.notAfter)}`,
      `# fingerprint ${cert.fingerprint}`,
      '[Interface]',
      `PrivateKey = ${encodeKey(privateKey)}`,
      ...(listenPort !== undefined ? [`ListenPort = ${listenPort}`] : []),
      `Certificate = ${toOneLine(cert)}`,
      `CA = ${toOneLine(store.ca)}`,
      `# Revocations = /etc/keymesh/${cert.name}.crl   (copy the CA's revoked.crl there, and keep it current)`,
      ...(o.isLighthouse ? ['IsLighthouse = true'] : []),
    ];
    for (const p of peers) {
      const host = p.endpoint.host.includes(':') ? `[${p.endpoint.host}]` : p.endpoint.host;
      out.push(
        '',
        '[Peer]',
        `# ${p.name} (lighthouse)`,
        `PublicKey = ${encodeKey(p.cert.publicKey)}`,
        `Endpoint = ${host}:${p.endpoint.port}`,
        `AllowedIPs = ${certAddrs(p.cert).map(formatPrefix).join(', ')}`,
        'Lighthouse = true',
        'PersistentKeepalive = 25',
      );
    }
    process.stdout.write(out.join('\n') + '\n');
  });
  privateKey.fill(0);
}

// ---- ca revoke --------------------------------------------------------------------------------

async function caRevoke(target: string, o: { ca: string }): Promise<void> {
  const store = await CaStore.open(o.ca);
  await store.locked(async () => {
    const byFp = /^[0-9a-f]{64}$/i.test(target);
    const hits = store.index.issued.filter((e) => (byFp ? e.fingerprint === target.toLowerCase() : e.name === target));
    if (!hits.length) throw new CaError(byFp ? `no certificate with fingerprint ${target} in this CA's index` : `no certificate named "${target}" in this CA's index`);
    const live = hits.filter((e) => e.revokedAt === undefined);
    if (!live.length) throw new CaError(`${byFp ? `certificate ${target}` : `"${target}"`} is already revoked`);
    const now = nowSec();
    for (const e of live) e.revokedAt = now;
    const serial = store.index.crlSerial + 1;
    const seed = await store.caSeed();
    let crl;
    try {
      crl = signCrl({ serial: BigInt(serial), issuedAt: now, revoked: store.index.issued.filter((e) => e.revokedAt !== undefined).map((e) => e.fingerprint) }, seed, store.ca);
    } finally {
      seed.fill(0);
    }
    await writeFileAtomic(store.file('crl'), toPem(crl), { mode: 0o644 });
    store.index.crlSerial = serial;
    await store.saveIndex();
    for (const e of live) process.stdout.write(`revoked ${e.name} (fingerprint ${e.fingerprint})\n`);
    process.stdout.write(`${store.file('crl')}: serial ${serial}, ${crl.revoked.length} revoked certificate${crl.revoked.length === 1 ? '' : 's'}\n`);
  });
}

// ---- cert show --------------------------------------------------------------------------------

async function readDoc(file: string): Promise<Doc> {
  let raw: Buffer;
  try {
    raw = file === '-' ? await readStdin() : await readFile(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CaError(`${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (code ?? (e as Error).message)}`);
  }
  const bytes = new Uint8Array(raw);
  const r = kindOf(bytes) ? decodeAny(bytes) : decodeCertText(raw.toString('utf8'));
  if (!r.ok) throw new CaError(`${file === '-' ? 'stdin' : file} is not a keymesh certificate or revocation list (${r.reason})`);
  return r.doc;
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function validity(from: number, until: number, now: number): string {
  if (now > until) return `expired ${span(now - until)} ago`;
  if (now < from) return `not valid yet (starts in ${span(from - now)})`;
  return `valid for ${span(until - now)}`;
}

function span(sec: number): string {
  if (sec >= DAY) return `${Math.floor(sec / DAY)} day${sec >= 2 * DAY ? 's' : ''}`;
  const h = Math.floor(sec / 3600);
  return h >= 1 ? `${h} hour${h === 1 ? '' : 's'}` : `${Math.floor(sec / 60)} minutes`;
}

async function certShow(file: string, o: { ca?: string; json?: boolean }): Promise<void> {
  const doc = await readDoc(file);
  const now = nowSec();
  let given: CaCert | null = null;
  if (o.ca) {
    const c = await readDoc(o.ca);
    if (c.kind !== 'ca') throw new CaError(`--ca ${o.ca} is a ${c.kind === 'node' ? 'node certificate' : 'revocation list'}, not a CA certificate`);
    given = c;
  }
  const ca = doc.kind === 'ca' ? doc : given;
  // undefined: not checked; null: verifies; else the reason (a code of CERT_REASONS)
  let verdict: CertReason | null | undefined;
  let caFailed = false;
  if (doc.kind === 'ca') verdict = given && given.fingerprint !== doc.fingerprint ? 'unknown-ca' : verifyCa(doc, now);
  else if (ca) {
    const caWhy = verifyCa(ca, now);
    caFailed = caWhy !== null && caWhy !== 'ca-expired' && caWhy !== 'ca-not-yet-valid';
    verdict = caWhy ?? (doc.kind === 'node' ? verifyNodeCert(doc, ca, now) : verifyCrl(doc, ca));
  }
  const json: Record<string, unknown> = { kind: doc.kind, fingerprint: doc.fingerprint };
  const lines: Array<[string, string]> = [];
  if (doc.kind === 'ca') {
    Object.assign(json, { name: doc.name, networks: doc.networks.map(formatPrefix), domain: doc.domain, publicKey: encodeKey(doc.publicKey) });
    lines.push(['kind', 'CA certificate'], ['mesh name', doc.name], ['networks', doc.networks.map(formatPrefix).join(', ')], ['domain', doc.domain], ['public key', `${encodeKey(doc.publicKey)} (Ed25519)`]);
  } else if (doc.kind === 'node') {
    Object.assign(json, {
      name: doc.name,
      publicKey: encodeKey(doc.publicKey),
      addresses: doc.addresses.map(formatPrefix),
      groups: doc.groups,
      subnets: doc.subnets.map(formatPrefix),
      lighthouse: doc.lighthouse,
      issuer: doc.issuer,
    });
    lines.push(
      ['kind', 'node certificate'],
      ['name', doc.name],
      ['public key', encodeKey(doc.publicKey)],
      ['addresses', doc.addresses.map(formatPrefix).join(', ')],
      ['groups', doc.groups.join(', ') || 'none'],
      ['subnets', doc.subnets.map(formatPrefix).join(', ') || 'none'],
      ['lighthouse', doc.lighthouse ? 'yes' : 'no'],
    );
  } else {
    Object.assign(json, { issuer: doc.issuer, serial: doc.serial.toString(), issuedAt: iso(doc.issuedAt), revoked: doc.revoked });
    lines.push(['kind', 'revocation list'], ['issuer', doc.issuer], ['serial', doc.serial.toString()], ['issued', iso(doc.issuedAt)], ['revoked', doc.revoked.length ? doc.revoked.join('\n              ') : 'none']);
  }
  if (doc.kind !== 'crl') {
    Object.assign(json, { notBefore: iso(doc.notBefore), notAfter: iso(doc.notAfter), validity: validity(doc.notBefore, doc.notAfter, now), expired: now > doc.notAfter });
    lines.push(['not before', iso(doc.notBefore)], ['not after', `${iso(doc.notAfter)} (${validity(doc.notBefore, doc.notAfter, now)})`]);
    if (doc.kind === 'node') lines.push(['issuer', doc.issuer]);
  }
  lines.push(['fingerprint', doc.fingerprint]);
  if (verdict !== undefined) {
    json.verifies = verdict === null;
    if (verdict) json.reason = caFailed ? `ca-${verdict}` : verdict;
    const against = doc.kind === 'ca' ? (given && verdict === 'unknown-ca' ? `not the CA in ${o.ca}` : 'self-signed') : `CA "${ca!.name}"`;
    lines.push(['verifies', verdict === null ? `yes (${against})` : `no: ${caFailed ? `the CA certificate does not verify (${verdict})` : verdict} (${against})`]);
  }
  if (o.json) process.stdout.write(JSON.stringify(json, null, 2) + '\n');
  else process.stdout.write(lines.map(([k, v]) => `${`${k}:`.padEnd(14)}${v}`).join('\n') + '\n');
  if (verdict) process.exitCode = 1;
}

// ---- wiring -----------------------------------------------------------------------------------

export function registerCaCommands(program: Command): void {
  const ca = program.command('ca').description('a mesh certificate authority kept in a directory: init, sign, enroll, revoke');
  ca.command('init')
    .description('create a CA: DIR/ca.key (0600), DIR/ca.crt and DIR/index.json')
    .requiredOption('--name <name>', 'the mesh name (printable ASCII, up to 64 characters)')
    .requiredOption('--networks <cidrs>', 'comma-separated networks every node address and subnet lies in, e.g. 10.99.0.0/16,fd99::/48')
    .option('--domain <domain>', 'DNS domain of the mesh names', 'mesh')
    .option('--days <n>', 'validity in days (default 3650)')
    .requiredOption('--out <dir>', 'the CA directory (created if missing)')
    .action(caInit);
  const signOptions = (c: Command) =>
    c
      .requiredOption('--ca <dir>', 'the CA directory')
      .requiredOption('--name <name>', 'node name (a DNS label)')
      .option('--ip <addrs>', 'comma-separated ADDR[/PREFIX] (default: the next free address in each CA network)')
      .option('--groups <groups>', 'comma-separated group names')
      .option('--subnets <cidrs>', 'comma-separated networks routed through this node (inside the CA networks)')
      .option('--days <n>', 'validity in days (default 365, at most until the CA expires)');
  signOptions(ca.command('sign'))
    .description('sign a node certificate: PEM on stdout, or PREFIX.crt (and PREFIX.key with --genkey)')
    .option('--lighthouse', 'the node is a lighthouse')
    .option('--pubkey <key>', "the node's WireGuard public key (base64)")
    .option('--genkey', 'generate the node key pair (private key to PREFIX.key, or after the certificate on stdout)')
    .option('--out <prefix>', 'write PREFIX.crt (and PREFIX.key) instead of printing')
    .action(caSign);
  signOptions(ca.command('enroll'))
    .description('a new node key and certificate, as a complete keymesh configuration on stdout')
    .option('--lighthouse <list>', 'comma-separated LHNAME=HOST:PORT, each a lighthouse this CA signed')
    .option('--listen-port <port>', 'ListenPort of the new node')
    .option('--is-lighthouse', 'the new node is a lighthouse (needs --listen-port)')
    .action(caEnroll);
  ca.command('revoke')
    .description("revoke a node's certificate(s) and write a new signed DIR/revoked.crl")
    .argument('<target>', 'node name or certificate fingerprint')
    .requiredOption('--ca <dir>', 'the CA directory')
    .action(caRevoke);
  const cert = program.command('cert').description('keymesh certificates and revocation lists');
  cert
    .command('show')
    .description('print every field; with --ca (or for a CA certificate) whether it verifies — exit code 1 if not')
    .argument('<file>', 'certificate or revocation list (PEM, one-line form or binary); - for stdin')
    .option('--ca <file>', 'CA certificate to verify against')
    .option('--json', 'machine-readable output')
    .action(certShow);
}

export { CaError };
