/**
 * `keymesh ca init|sign|enroll|revoke` and `keymesh cert show`, run as the built CLI
 * (`node bin/keymesh.js`, which loads dist/: `npm run build` first) against temporary CA
 * directories: files and modes, the address allocation sequence, every refusal (one line on
 * stderr, exit code 1, no key in it), and that what enroll prints is a configuration keymesh loads.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCa, formatPrefix, signNodeCert, type CaCert, type NodeCert } from '../../src/core/cert.js';
import { caKeyToPem, decodeCertText, parseCaKey, toOneLine, toPem } from '../../src/core/cert-text.js';
import { nobleCrypto } from '../../src/core/crypto.js';
import { decodeKey, encodeKey } from '../../src/config/keys.js';
import { prefixFromText } from '../../src/config/mesh.js';
import { parseWgQuick } from '../../src/config/wgquick.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(REPO, 'bin', 'keymesh.js');
const KEY_SHAPE = /[A-Za-z0-9+/]{43}=/;

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(path.join(tmpdir(), 'keymesh-ca-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function km(args: string[], input?: string): { code: number; out: string; err: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: tmp, input, encoding: 'utf8' });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

/** Runs a command that must succeed. */
function ok(args: string[], input?: string): string {
  const r = km(args, input);
  if (r.code !== 0) throw new Error(`keymesh ${args.join(' ')} failed (${r.code}): ${r.err}`);
  return r.out;
}

/** Runs a command that must be refused: exit 1, one line on stderr matching `why`, no key in it. */
function refused(args: string[], why: RegExp): string {
  const r = km(args);
  expect(r.code, `${args.join(' ')}: ${r.err}`).toBe(1);
  const lines = r.err.trim().split('\n');
  expect(lines, r.err).toHaveLength(1);
  expect(lines[0]).toMatch(/^keymesh: /);
  expect(lines[0]).toMatch(why);
  expect(lines[0]).not.toMatch(KEY_SHAPE);
  expect(r.out).toBe('');
  return lines[0];
}

const mode = (f: string) => statSync(path.join(tmp, f)).mode & 0o777;
const index = (dir: string) => JSON.parse(readFileSync(path.join(tmp, dir, 'index.json'), 'utf8'));
function certOf(text: string): NodeCert {
  const r = decodeCertText(text);
  if (!r.ok || r.doc.kind !== 'node') throw new Error('not a node certificate');
  return r.doc;
}
const addrs = (c: NodeCert) => c.addresses.map(formatPrefix);
const pub = () => encodeKey(nobleCrypto.publicKey(nobleCrypto.generatePrivateKey((n) => new Uint8Array(n).map(() => (Math.random() * 256) | 0))));

describe('the CLI binary', () => {
  it('bin/keymesh.js loads the built dist/ (run `npm run build` before these tests)', () => {
    expect(readFileSync(BIN, 'utf8')).toContain("import('../dist/src/cli/main.js')");
    expect(existsSync(path.join(REPO, 'dist/src/cli/ca.js'))).toBe(true);
    expect(ok(['ca', '--help'])).toMatch(/init[\s\S]*sign[\s\S]*enroll[\s\S]*revoke/);
  });
});

describe('ca init', () => {
  it('writes ca.key (0600), ca.crt and index.json; prints no key', () => {
    const out = ok(['ca', 'init', '--name', 'Test mesh', '--networks', '10.99.0.0/16,fd99::/48', '--out', 'ca']);
    expect(mode('ca/ca.key')).toBe(0o600);
    expect(mode('ca')).toBe(0o700);
    const ca = decodeCertText(readFileSync(path.join(tmp, 'ca/ca.crt'), 'utf8'));
    expect(ca.ok && ca.doc.kind).toBe('ca');
    const c = (ca as { doc: CaCert }).doc;
    expect(c.name).toBe('Test mesh');
    expect(c.domain).toBe('mesh');
    expect(c.networks.map(formatPrefix)).toEqual(['10.99.0.0/16', 'fd99::/48']);
    expect(Math.round((c.notAfter - c.notBefore) / 86400)).toBe(3650);
    const seed = parseCaKey(readFileSync(path.join(tmp, 'ca/ca.key'), 'utf8'));
    expect(seed).not.toBeNull();
    expect(out).toContain(c.fingerprint);
    expect(out).not.toContain(Buffer.from(seed!).toString('base64'));
    expect(index('ca')).toEqual({ version: 1, ca: c.fingerprint, crlSerial: 0, issued: [] });
  });

  it('refuses an existing CA, bad networks, names and domains', () => {
    const before = readFileSync(path.join(tmp, 'ca/ca.key'), 'utf8');
    refused(['ca', 'init', '--name', 'x', '--networks', '10.1.0.0/16', '--out', 'ca'], /ca\.key already exists.*refusing to overwrite/);
    expect(readFileSync(path.join(tmp, 'ca/ca.key'), 'utf8')).toBe(before);
    refused(['ca', 'init', '--name', 'x', '--networks', '10.1.0.1/16', '--out', 'ca2'], /host bits set \(did you mean 10\.1\.0\.0\/16\?\)/);
    refused(['ca', 'init', '--name', 'x', '--networks', '10.0.0.0/8,10.1.0.0/16', '--out', 'ca2'], /overlap/);
    refused(['ca', 'init', '--name', 'x', '--networks', '10.1.0.0/33', '--out', 'ca2'], /not a valid IPv4 prefix/);
    refused(['ca', 'init', '--name', ' x', '--networks', '10.1.0.0/16', '--out', 'ca2'], /mesh name/);
    refused(['ca', 'init', '--name', 'x', '--networks', '10.1.0.0/16', '--domain', 'Bad_Domain', '--out', 'ca2'], /--domain/);
    refused(['ca', 'init', '--name', 'x', '--networks', '10.1.0.0/16', '--days', '0', '--out', 'ca2'], /--days/);
    expect(km(['ca', 'init', '--name', 'x', '--out', 'ca2']).code).toBe(1); // --networks is required
    expect(existsSync(path.join(tmp, 'ca2'))).toBe(false);
  });
});

describe('ca sign', () => {
  it('allocates the next free address in each network, skipping explicit ones', () => {
    const signed = km(['ca', 'sign', '--ca', 'ca', '--name', 'lh1', '--lighthouse', '--genkey', '--out', 'lh1']);
    expect(signed.code).toBe(0);
    expect(signed.out).toBe('');
    expect(signed.err).toMatch(/^signed lh1: 10\.99\.0\.1\/16, fd99::1\/48, valid until .* → lh1\.crt, lh1\.key\n$/);
    expect(mode('lh1.key')).toBe(0o600);
    expect(mode('lh1.crt')).toBe(0o644);
    const lh1 = certOf(readFileSync(path.join(tmp, 'lh1.crt'), 'utf8'));
    expect(addrs(lh1)).toEqual(['10.99.0.1/16', 'fd99::1/48']);
    expect(lh1.lighthouse).toBe(true);
    const keyText = readFileSync(path.join(tmp, 'lh1.key'), 'utf8');
    expect(signed.err).not.toContain(keyText.trim());
    const key = decodeKey(keyText.trim())!;
    expect(encodeKey(nobleCrypto.publicKey(key))).toBe(encodeKey(lh1.publicKey));

    const p = pub();
    const laptop = certOf(ok(['ca', 'sign', '--ca', 'ca', '--name', 'laptop', '--pubkey', p, '--groups', 'dev,ops', '--days', '30']));
    expect(addrs(laptop)).toEqual(['10.99.0.2/16', 'fd99::2/48']);
    expect(encodeKey(laptop.publicKey)).toBe(p);
    expect(laptop.groups).toEqual(['dev', 'ops']);
    expect(Math.round((laptop.notAfter - laptop.notBefore) / 86400)).toBe(30);

    // an explicit address without a length takes its network's
    const srv = certOf(ok(['ca', 'sign', '--ca', 'ca', '--name', 'srv', '--pubkey', pub(), '--ip', '10.99.0.4', '--subnets', '10.99.100.0/24']));
    expect(addrs(srv)).toEqual(['10.99.0.4/16']);
    expect(srv.subnets.map(formatPrefix)).toEqual(['10.99.100.0/24']);
    const next = certOf(ok(['ca', 'sign', '--ca', 'ca', '--name', 'next', '--pubkey', pub()]));
    expect(addrs(next)).toEqual(['10.99.0.3/16', 'fd99::3/48']);
    const after = certOf(ok(['ca', 'sign', '--ca', 'ca', '--name', 'after', '--pubkey', pub()]));
    expect(addrs(after)).toEqual(['10.99.0.5/16', 'fd99::4/48']);
    const v6 = certOf(ok(['ca', 'sign', '--ca', 'ca', '--name', 'v6only', '--pubkey', pub(), '--ip', 'fd99::abcd/64']));
    expect(addrs(v6)).toEqual(['fd99::abcd/64']);

    const ix = index('ca');
    expect(ix.issued.map((e: { name: string }) => e.name)).toEqual(['lh1', 'laptop', 'srv', 'next', 'after', 'v6only']);
    expect(ix.issued[1]).toMatchObject({ name: 'laptop', publicKey: p, addresses: ['10.99.0.2/16', 'fd99::2/48'], groups: ['dev', 'ops'], lighthouse: false, fingerprint: laptop.fingerprint });
    expect(ix.issued[1].certificate).toBe(toOneLine(laptop));
  });

  it('--genkey without --out prints the certificate, then the private key', () => {
    const out = ok(['ca', 'sign', '--ca', 'ca', '--name', 'printed', '--genkey']);
    const [pem, keyLine] = out.split('-----END KEYMESH CERTIFICATE-----\n');
    const cert = certOf(pem + '-----END KEYMESH CERTIFICATE-----\n');
    expect(encodeKey(nobleCrypto.publicKey(decodeKey(keyLine.trim())!))).toBe(encodeKey(cert.publicKey));
  });

  it('renews: the same name for the same key again is a new certificate with the same addresses', () => {
    const key = pub();
    const first = certOf(ok(['ca', 'sign', '--ca', 'ca', '--name', 'renew1', '--pubkey', key, '--ip', '10.99.9.9,fd99::9:9']));
    const renewed = certOf(ok(['ca', 'sign', '--ca', 'ca', '--name', 'renew1', '--pubkey', key, '--days', '730']));
    expect(renewed.fingerprint).not.toBe(first.fingerprint);
    expect(renewed.notAfter).toBeGreaterThan(first.notAfter);
    expect(renewed.addresses.map(formatPrefix)).toEqual(first.addresses.map(formatPrefix));
    refused(['ca', 'sign', '--ca', 'ca', '--name', 'renew1', '--pubkey', pub()], /already issued to another key/);
  });

  it('refuses names, addresses and subnets it must not hand out', () => {
    const s = (...a: string[]) => ['ca', 'sign', '--ca', 'ca', '--pubkey', pub(), ...a];
    refused(s('--name', 'laptop'), /name "laptop" is already issued.*revoke it first/);
    refused(s('--name', 'x1', '--ip', '10.99.0.2'), /address 10\.99\.0\.2\/32 is already issued to laptop/);
    refused(s('--name', 'x1', '--ip', 'fd99::2/48'), /address fd99::2\/128 is already issued to laptop/);
    refused(s('--name', 'x1', '--ip', '10.98.0.2'), /outside the CA's networks/);
    refused(s('--name', 'x1', '--ip', '10.99.0.9/8'), /10\.99\.0\.9\/8 is outside the CA's networks/);
    refused(s('--name', 'x1', '--ip', '10.99.0.0'), /network's own address/);
    refused(s('--name', 'x1', '--ip', '10.99.255.255'), /broadcast address/);
    refused(s('--name', 'x1', '--ip', 'fd99::'), /network's own address/);
    refused(s('--name', 'x1', '--ip', '10.99.100.7'), /inside srv's subnet 10\.99\.100\.0\/24/);
    refused(s('--name', 'x1', '--subnets', '10.99.100.128/25'), /overlaps srv's subnet 10\.99\.100\.0\/24/);
    refused(s('--name', 'x1', '--subnets', '10.99.0.0/24'), /holds lh1's address 10\.99\.0\.1\/32/);
    refused(s('--name', 'x1', '--subnets', '192.168.0.0/24'), /subnet 192\.168\.0\.0\/24 is outside the CA's networks/);
    refused(s('--name', 'x1', '--subnets', '10.99.7.1/24'), /host bits set/);
    refused(s('--name', 'Bad_Name'), /not a node name/);
    refused(s('--name', 'x1', '--groups', 'a b'), /--groups: "a b"/);
    refused(s('--name', 'x1', '--ip', 'nonsense'), /--ip: "nonsense" is not an IPv4 or IPv6 address/);
    refused(s('--name', 'x1', '--genkey'), /exactly one of --pubkey/);
    refused(['ca', 'sign', '--ca', 'ca', '--name', 'x1'], /exactly one of --pubkey/);
    refused(['ca', 'sign', '--ca', 'ca', '--name', 'x1', '--pubkey', 'not-a-key'], /--pubkey is not a base64/);
    refused(['ca', 'sign', '--ca', 'ca', '--name', 'x1', '--genkey', '--out', 'lh1'], /lh1\.crt already exists/);
    refused(['ca', 'sign', '--ca', 'nowhere', '--name', 'x1', '--genkey'], /nowhere is not a CA directory/);
    writeFileSync(path.join(tmp, 'ca/.lock'), '');
    refused(s('--name', 'x1'), /in use by another keymesh ca command.*remove .*\.lock/);
    rmSync(path.join(tmp, 'ca/.lock'));
    // nothing refused was recorded
    expect(index('ca').issued.some((e: { name: string }) => e.name === 'x1')).toBe(false);
  });

  it('a small network: network and broadcast addresses skipped, then no free address', () => {
    ok(['ca', 'init', '--name', 'small', '--networks', '192.168.7.0/30,fd00:7::/127', '--out', 'small']);
    const a = certOf(ok(['ca', 'sign', '--ca', 'small', '--name', 'a', '--pubkey', pub()]));
    expect(addrs(a)).toEqual(['192.168.7.1/30', 'fd00:7::/127']); // /127: both addresses are hosts (RFC 6164)
    const b = certOf(ok(['ca', 'sign', '--ca', 'small', '--name', 'b', '--pubkey', pub()]));
    expect(addrs(b)).toEqual(['192.168.7.2/30', 'fd00:7::1/127']);
    refused(['ca', 'sign', '--ca', 'small', '--name', 'c', '--pubkey', pub()], /no free address left in 192\.168\.7\.0\/30/);
  });
});

describe('ca enroll', () => {
  it('prints a configuration keymesh loads: certificate, CA, lighthouse peers', () => {
    const text = ok(['ca', 'enroll', '--ca', 'ca', '--name', 'phone', '--lighthouse', 'lh1=lh.example.net:51820', '--groups', 'mobile']);
    expect(text).not.toMatch(/^Address/m);
    expect(text).toMatch(/^# Revocations = \/etc\/keymesh\/phone\.crl/m);
    expect(text).not.toMatch(/^ListenPort/m);
    const cfg = parseWgQuick(text, 'phone.conf');
    const mesh = cfg.interface.mesh!;
    expect(mesh.cert.name).toBe('phone');
    expect(mesh.cert.groups).toEqual(['mobile']);
    expect(mesh.ca.name).toBe('Test mesh');
    expect(addrs(mesh.cert)).toEqual(['10.99.0.7/16', 'fd99::6/48']);
    expect(cfg.interface.addresses).toEqual([
      { addr: '10.99.0.7', cidr: 16, family: 4 },
      { addr: 'fd99::6', cidr: 48, family: 6 },
    ]);
    expect(cfg.interface.isLighthouse).toBe(false);
    const lh1 = certOf(readFileSync(path.join(tmp, 'lh1.crt'), 'utf8'));
    expect(cfg.peers).toHaveLength(1);
    const p = cfg.peers[0];
    expect(encodeKey(p.publicKey)).toBe(encodeKey(lh1.publicKey));
    expect(p.endpoint).toEqual({ host: 'lh.example.net', port: 51820 });
    expect(p.lighthouse).toBe(true);
    expect(p.persistentKeepalive).toBe(25);
    expect(p.allowedIps.map((a) => a.text)).toEqual(['10.99.0.1/32', 'fd99::1/128']);
    expect(index('ca').issued.at(-1)).toMatchObject({ name: 'phone', fingerprint: mesh.cert.fingerprint });
  });

  it('a lighthouse: IsLighthouse and ListenPort, other lighthouses optional', () => {
    const text = ok(['ca', 'enroll', '--ca', 'ca', '--name', 'lh2', '--is-lighthouse', '--listen-port', '51820', '--lighthouse', 'lh1=[2001:db8::1]:51820']);
    const cfg = parseWgQuick(text, 'lh2.conf');
    expect(cfg.interface.isLighthouse).toBe(true);
    expect(cfg.interface.listenPort).toBe(51820);
    expect(cfg.interface.mesh!.cert.lighthouse).toBe(true);
    expect(cfg.peers[0].endpoint).toEqual({ host: '2001:db8::1', port: 51820 });
    const alone = parseWgQuick(ok(['ca', 'enroll', '--ca', 'ca', '--name', 'lh3', '--is-lighthouse', '--listen-port', '4500']), 'lh3.conf');
    expect(alone.peers).toEqual([]);
  });

  it('refuses what cannot work', () => {
    const e = (...a: string[]) => ['ca', 'enroll', '--ca', 'ca', ...a];
    refused(e('--name', 'y1', '--lighthouse', 'laptop=lh.example.net:51820'), /laptop is not a lighthouse/);
    refused(e('--name', 'y1', '--lighthouse', 'nobody=lh.example.net:51820'), /no \(unrevoked\) certificate named "nobody"/);
    refused(e('--name', 'y1', '--lighthouse', 'lh1=lh.example.net'), /not HOST:PORT/);
    refused(e('--name', 'y1', '--lighthouse', 'lh1'), /not LHNAME=HOST:PORT/);
    refused(e('--name', 'y1'), /--lighthouse LHNAME=HOST:PORT is required/);
    refused(e('--name', 'y1', '--is-lighthouse'), /--is-lighthouse needs --listen-port/);
    refused(e('--name', 'y1', '--is-lighthouse', '--listen-port', '70000'), /--listen-port/);
    refused(e('--name', 'lh1', '--lighthouse', 'lh1=lh.example.net:51820'), /the node being enrolled/);
    refused(e('--name', 'laptop', '--lighthouse', 'lh1=lh.example.net:51820'), /already issued/);
  });
});

describe('ca revoke', () => {
  it('by name, then by fingerprint: the index and a new signed list, serial one more each time', () => {
    const laptop = index('ca').issued.find((e: { name: string }) => e.name === 'laptop');
    const out = ok(['ca', 'revoke', '--ca', 'ca', 'laptop']);
    expect(out).toContain(`revoked laptop (fingerprint ${laptop.fingerprint})`);
    expect(out).toMatch(/serial 1, 1 revoked certificate$/m);
    const crl1 = decodeCertText(readFileSync(path.join(tmp, 'ca/revoked.crl'), 'utf8'));
    expect(crl1.ok && crl1.doc.kind === 'crl' && [crl1.doc.serial, crl1.doc.revoked]).toEqual([1n, [laptop.fingerprint]]);
    const srv = index('ca').issued.find((e: { name: string }) => e.name === 'srv');
    ok(['ca', 'revoke', '--ca', 'ca', srv.fingerprint.toUpperCase()]);
    const crl2 = decodeCertText(readFileSync(path.join(tmp, 'ca/revoked.crl'), 'utf8'));
    expect(crl2.ok && crl2.doc.kind === 'crl' && [crl2.doc.serial, crl2.doc.revoked]).toEqual([2n, [laptop.fingerprint, srv.fingerprint].sort()]);
    const ix = index('ca');
    expect(ix.crlSerial).toBe(2);
    expect(ix.issued.filter((e: { revokedAt?: number }) => e.revokedAt !== undefined).map((e: { name: string }) => e.name)).toEqual(['laptop', 'srv']);
    refused(['ca', 'revoke', '--ca', 'ca', 'laptop'], /"laptop" is already revoked/);
    refused(['ca', 'revoke', '--ca', 'ca', 'nobody'], /no certificate named "nobody"/);
    refused(['ca', 'revoke', '--ca', 'ca', 'ab'.repeat(32)], /no certificate with fingerprint/);
  });

  it('a revoked name can be issued again and gets its addresses back; no other name gets them', () => {
    refused(['ca', 'sign', '--ca', 'ca', '--name', 'z1', '--pubkey', pub(), '--ip', '10.99.0.2'], /already issued to laptop \(revoked; addresses are never handed to another name\)/);
    const again = certOf(ok(['ca', 'sign', '--ca', 'ca', '--name', 'laptop', '--pubkey', pub()]));
    expect(addrs(again)).toEqual(['10.99.0.2/16', 'fd99::2/48']);
    refused(['ca', 'enroll', '--ca', 'ca', '--name', 'w', '--lighthouse', 'srv=lh.example.net:1'], /no \(unrevoked\) certificate named "srv"/);
  });
});

describe('cert show', () => {
  const T = Math.floor(Date.now() / 1000);
  const seed = new Uint8Array(32).fill(7);
  const oldCa = createCa({ name: 'Old', networks: [prefixFromText('10.5.0.0/16') as never], notBefore: T - 400 * 86400, notAfter: T + 400 * 86400 }, seed);
  const expired = signNodeCert(
    { name: 'gone', publicKey: new Uint8Array(32).fill(1), addresses: [prefixFromText('10.5.0.9/16') as never], notBefore: T - 100 * 86400, notAfter: T - 3 * 86400 - 60 },
    seed,
    oldCa,
  );
  beforeAll(() => {
    writeFileSync(path.join(tmp, 'old-ca.crt'), toPem(oldCa));
    writeFileSync(path.join(tmp, 'old-ca.key'), caKeyToPem(seed));
    writeFileSync(path.join(tmp, 'gone.crt'), toOneLine(expired) + '\n');
  });

  it('a node certificate: every field, and whether it verifies against --ca', () => {
    const out = ok(['cert', 'show', 'lh1.crt', '--ca', 'ca/ca.crt']);
    const lh1 = certOf(readFileSync(path.join(tmp, 'lh1.crt'), 'utf8'));
    expect(out).toContain('kind:         node certificate');
    expect(out).toContain('name:         lh1');
    expect(out).toContain(`public key:   ${encodeKey(lh1.publicKey)}`);
    expect(out).toContain('addresses:    10.99.0.1/16, fd99::1/48');
    expect(out).toContain('groups:       none');
    expect(out).toContain('lighthouse:   yes');
    expect(out).toMatch(/not after: {4}\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(valid for 36[45] days\)/);
    expect(out).toContain(`issuer:       ${lh1.issuer}`);
    expect(out).toContain(`fingerprint:  ${lh1.fingerprint}`);
    expect(out).toContain('verifies:     yes (CA "Test mesh")');
    const j = JSON.parse(ok(['cert', 'show', 'lh1.crt', '--ca', 'ca/ca.crt', '--json']));
    expect(j).toMatchObject({ kind: 'node', name: 'lh1', publicKey: encodeKey(lh1.publicKey), addresses: ['10.99.0.1/16', 'fd99::1/48'], groups: [], subnets: [], lighthouse: true, issuer: lh1.issuer, fingerprint: lh1.fingerprint, verifies: true, expired: false });
    // without --ca: the fields, no verdict
    expect(ok(['cert', 'show', 'lh1.crt'])).not.toContain('verifies:');
    // stdin, and the one-line form
    expect(ok(['cert', 'show', '-'], readFileSync(path.join(tmp, 'lh1.crt'), 'utf8'))).toContain('name:         lh1');
    expect(ok(['cert', 'show', '-', '--json'], toOneLine(lh1)).includes(lh1.fingerprint)).toBe(true);
  });

  it('a CA certificate verifies itself; a revocation list shows serial, date and fingerprints', () => {
    const out = ok(['cert', 'show', 'ca/ca.crt']);
    expect(out).toContain('kind:         CA certificate');
    expect(out).toContain('mesh name:    Test mesh');
    expect(out).toContain('networks:     10.99.0.0/16, fd99::/48');
    expect(out).toContain('domain:       mesh');
    expect(out).toContain('verifies:     yes (self-signed)');
    const crl = ok(['cert', 'show', 'ca/revoked.crl', '--ca', 'ca/ca.crt']);
    expect(crl).toContain('kind:         revocation list');
    expect(crl).toContain('serial:       2');
    expect(crl).toMatch(/issued: {7}\d{4}-/);
    expect(crl).toContain('verifies:     yes');
    const j = JSON.parse(ok(['cert', 'show', 'ca/revoked.crl', '--json']));
    expect(j.serial).toBe('2');
    expect(j.revoked).toHaveLength(2);
  });

  it('expired and foreign certificates: the reason, exit code 1', () => {
    const r = km(['cert', 'show', 'gone.crt', '--ca', 'old-ca.crt']);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/\(expired 3 days ago\)/);
    expect(r.out).toContain('verifies:     no: expired (CA "Old")');
    const f = km(['cert', 'show', 'lh1.crt', '--ca', 'old-ca.crt', '--json']);
    expect(f.code).toBe(1);
    expect(JSON.parse(f.out)).toMatchObject({ verifies: false, reason: 'unknown-ca' });
    const c = km(['cert', 'show', 'ca/ca.crt', '--ca', 'old-ca.crt']);
    expect(c.code).toBe(1);
    expect(c.out).toMatch(/verifies: {5}no: unknown-ca/);
  });

  it('refuses what is not a certificate, without echoing it', () => {
    writeFileSync(path.join(tmp, 'junk.crt'), 'hello\n');
    refused(['cert', 'show', 'junk.crt'], /junk\.crt is not a keymesh certificate or revocation list \(malformed\)/);
    refused(['cert', 'show', 'old-ca.key'], /old-ca\.key is not a keymesh certificate/);
    refused(['cert', 'show', 'missing.crt'], /missing\.crt: no such file/);
    refused(['cert', 'show', 'lh1.crt', '--ca', 'lh1.crt'], /--ca lh1\.crt is a node certificate, not a CA certificate/);
    const cut = toOneLine(expired).slice(0, 60);
    writeFileSync(path.join(tmp, 'cut.crt'), cut);
    refused(['cert', 'show', 'cut.crt'], /\(truncated\)/);
  });
});
