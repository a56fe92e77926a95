/**
 * The mesh keys of a wg-quick file (src/config/mesh.ts through parseWgQuick/loadWgQuick):
 * `Certificate`, `CA` and `Revocations` in [Interface], inline or as files relative to the config,
 * every check with its file:line error, Address defaulting to the certificate's, and SaveConfig
 * writing the keys back.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCa, signNodeCert, type CaCert, type IpPrefix, type NodeCertFields } from '../../src/core/cert.js';
import { toOneLine, toPem } from '../../src/core/cert-text.js';
import { signCrl } from '../../src/core/crl.js';
import { nobleCrypto } from '../../src/core/crypto.js';
import { encodeKey } from '../../src/config/keys.js';
import { prefixFromText } from '../../src/config/mesh.js';
import { ConfigError, loadWgQuick, parseWgQuick, serializeWgQuick } from '../../src/config/wgquick.js';

const T0 = 1_750_000_000;
const DAY = 86400;
const NOW = T0 + 10 * DAY;
const P = (t: string) => prefixFromText(t) as IpPrefix;
const CA_SEED = new Uint8Array(32).fill(11);
const CA = createCa({ name: 'Test mesh', networks: [P('10.99.0.0/16'), P('fd99::/48')], notBefore: T0, notAfter: T0 + 1000 * DAY }, CA_SEED);
const OTHER_SEED = new Uint8Array(32).fill(12);
const OTHER = createCa({ name: 'Other', networks: [P('10.99.0.0/16'), P('fd99::/48')], notBefore: T0, notAfter: T0 + 1000 * DAY }, OTHER_SEED);
const PRIV = nobleCrypto.generatePrivateKey(() => new Uint8Array(32).fill(13));
const PUB = nobleCrypto.publicKey(PRIV);
const LH_PUB = encodeKey(nobleCrypto.publicKey(nobleCrypto.generatePrivateKey(() => new Uint8Array(32).fill(14))));

function sign(over: Partial<NodeCertFields> = {}, seed = CA_SEED, ca: CaCert = CA) {
  return signNodeCert({ name: 'laptop', publicKey: PUB, addresses: [P('10.99.0.5/16'), P('fd99::5/48')], notBefore: T0, notAfter: T0 + 100 * DAY, ...over }, seed, ca);
}
const CERT = sign();

function conf(iface: string, peers = ''): string {
  return `[Interface]\nPrivateKey = ${encodeKey(PRIV)}\n${iface}\n${peers}`;
}
const inline = (extra = '') => conf(`Certificate = ${toOneLine(CERT)}\nCA = ${toOneLine(CA)}\n${extra}`);

function errorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('expected a ConfigError');
}
async function loadError(file: string, nowSec = NOW): Promise<ConfigError> {
  try {
    await loadWgQuick(file, { nowSec });
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('expected a ConfigError');
}
const parse = (text: string, nowSec = NOW) => parseWgQuick(text, 'wg0.conf', { nowSec });

describe('inline Certificate and CA', () => {
  it('decoded and checked in parseWgQuick; Address defaults to the certificate\'s, prefixes included', () => {
    const c = parse(inline());
    expect(c.interface.mesh!.cert.fingerprint).toBe(CERT.fingerprint);
    expect(c.interface.mesh!.ca.fingerprint).toBe(CA.fingerprint);
    expect(c.interface.mesh!.addressesFromCert).toBe(true);
    expect(c.interface.addresses).toEqual([
      { addr: '10.99.0.5', cidr: 16, family: 4 },
      { addr: 'fd99::5', cidr: 48, family: 6 },
    ]);
  });

  it('SaveConfig writes the keys back, and no Address when it came from the certificate', () => {
    const c = parse(inline());
    const text = serializeWgQuick(c);
    expect(text).toContain(`Certificate = ${toOneLine(CERT)}`);
    expect(text).toContain(`CA = ${toOneLine(CA)}`);
    expect(text).not.toMatch(/^Address/m);
    const again = parse(text);
    expect(again.interface.mesh!.cert.fingerprint).toBe(CERT.fingerprint);
    expect(again.interface.addresses).toEqual(c.interface.addresses);
    const withAddr = parse(inline('Address = fd99::5/48, 10.99.0.5/16\nRevocations = revoked.crl'));
    expect(withAddr.interface.mesh!.addressesFromCert).toBe(false);
    const t2 = serializeWgQuick(withAddr);
    expect(t2).toContain('Address = fd99::5/48, 10.99.0.5/16');
    expect(t2).toContain('Revocations = revoked.crl');
  });

  it('Address equal to the certificate\'s in any order and spelling is accepted; otherwise an error at its line', () => {
    expect(parse(inline('Address = fd99:0:0::5/48\nAddress = 10.99.0.5/16')).interface.addresses).toHaveLength(2);
    const e = errorOf(() => parse(inline('Address = 10.99.0.6/16, fd99::5/48')));
    expect(e.line).toBe(5);
    expect(e.message).toMatch(/wg0\.conf:5: Address \(10\.99\.0\.6\/16, fd99::5\/48\) is not the certificate's addresses \(10\.99\.0\.5\/16, fd99::5\/48\)/);
    expect(errorOf(() => parse(inline('Address = 10.99.0.5/24, fd99::5/48'))).message).toMatch(/not the certificate's/);
    expect(errorOf(() => parse(inline('Address = 10.99.0.5/16'))).message).toMatch(/not the certificate's/);
  });

  it('a lighthouse [Peer] may omit AllowedIPs', () => {
    const c = parse(inline() + `[Peer]\nPublicKey = ${LH_PUB}\nEndpoint = 192.0.2.1:51820\nLighthouse = true\n`);
    expect(c.peers[0].allowedIps).toEqual([]);
    expect(c.peers[0].lighthouse).toBe(true);
  });

  it('pairs: Certificate without CA, CA without Certificate, Revocations alone or inline, repeats', () => {
    expect(errorOf(() => parse(conf(`Certificate = ${toOneLine(CERT)}`))).message).toMatch(/wg0\.conf:3: Certificate without CA/);
    expect(errorOf(() => parse(conf(`CA = ${toOneLine(CA)}`))).message).toMatch(/wg0\.conf:3: CA without Certificate/);
    expect(errorOf(() => parse(conf('Revocations = x.crl'))).message).toMatch(/:3: Revocations without CA/);
    expect(errorOf(() => parse(inline(`Revocations = ${toOneLine(signCrl({ serial: 1n, issuedAt: NOW, revoked: [] }, CA_SEED, CA))}`))).message).toMatch(/Revocations must be a file path/);
    expect(errorOf(() => parse(inline(`CA = ${toOneLine(CA)}`))).message).toMatch(/:5: a second CA \(the first is at line 4\)/);
    expect(errorOf(() => parse(conf('Certificate =\nCA = x'))).message).toMatch(/Certificate is empty/);
    expect(errorOf(() => parse(`[Interface]\nPrivateKey = ${encodeKey(PRIV)}\n[Peer]\nPublicKey = ${LH_PUB}\nCA = x\n`)).message).toMatch(/CA belongs in the \[Interface\] section/);
  });

  it('values that do not decode, or are the wrong kind, name the key and never echo the value', () => {
    const bad = 'kmcert1:' + toOneLine(CERT).slice(8, 60);
    const e = errorOf(() => parse(conf(`Certificate = ${bad}\nCA = ${toOneLine(CA)}`)));
    expect(e.message).toMatch(/wg0\.conf:3: Certificate is cut short \(truncated; expected a node certificate\)/);
    expect(e.message).not.toContain(bad.slice(8));
    expect(errorOf(() => parse(conf(`Certificate = ${toOneLine(CA).replace('kmca1:', 'kmcert1:')}\nCA = ${toOneLine(CA)}`))).message).toMatch(/wrong-kind/);
    expect(errorOf(() => parse(conf(`Certificate = ${toOneLine(CERT)}\nCA = ${toOneLine(CERT).replace('kmcert1:', 'kmca1:')}`))).message).toMatch(/:4: CA is another kind of document/);
    expect(errorOf(() => parse(conf(`Certificate = ${toOneLine(CERT)}x\nCA = ${toOneLine(CA)}`))).message).toMatch(/:3: Certificate is not a valid keymesh certificate \(malformed/);
  });

  it('the CA must be validly self-signed and valid now', () => {
    const b = CA.bytes.slice();
    b[b.length - 3] ^= 1;
    const tampered = toOneLine({ kind: 'ca', bytes: b });
    expect(errorOf(() => parse(conf(`Certificate = ${toOneLine(CERT)}\nCA = ${tampered}`))).message).toMatch(/:4: CA is not validly self-signed \(bad-signature\)/);
    expect(errorOf(() => parse(inline(), T0 + 1001 * DAY)).message).toMatch(/:4: CA expired on 2028-03-\d\dT/);
    expect(errorOf(() => parse(inline(), T0 - 1)).message).toMatch(/:4: CA is not valid before 2025-06-15T15:06:40Z \(is the clock right\?\)/);
  });

  it('the certificate must be issued and signed by that CA, valid now and for PrivateKey\'s key', () => {
    const foreign = sign({}, OTHER_SEED, OTHER);
    expect(errorOf(() => parse(conf(`Certificate = ${toOneLine(foreign)}\nCA = ${toOneLine(CA)}`))).message).toMatch(/:3: Certificate was not issued by this CA \(CA, mesh "Test mesh"\)/);
    const b = CERT.bytes.slice();
    b[b.length - 3] ^= 1;
    expect(errorOf(() => parse(conf(`Certificate = ${toOneLine({ kind: 'node', bytes: b })}\nCA = ${toOneLine(CA)}`))).message).toMatch(/:3: Certificate does not carry a valid signature of this CA/);
    expect(errorOf(() => parse(inline(), T0 + 101 * DAY)).message).toMatch(/:3: Certificate expired on 2025-09-23T15:06:40Z/);
    const later = sign({ notBefore: T0 + 20 * DAY });
    expect(errorOf(() => parse(conf(`Certificate = ${toOneLine(later)}\nCA = ${toOneLine(CA)}`))).message).toMatch(/:3: Certificate is not valid before 2025-07-05T15:06:40Z/);
    const other = sign({ publicKey: nobleCrypto.publicKey(new Uint8Array(32).fill(99)) });
    expect(errorOf(() => parse(conf(`Certificate = ${toOneLine(other)}\nCA = ${toOneLine(CA)}`))).message).toMatch(/:3: Certificate is for another key than this PrivateKey \(certificate "laptop"\)/);
  });
});

describe('files (loadWgQuick), relative to the config file', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'keymesh-mesh-'));
    mkdirSync(path.join(dir, 'pki'));
    writeFileSync(path.join(dir, 'pki/ca.crt'), toPem(CA));
    writeFileSync(path.join(dir, 'pki/laptop.crt'), toPem(CERT));
    writeFileSync(path.join(dir, 'laptop.line'), toOneLine(CERT) + '\n');
    writeFileSync(path.join(dir, 'other.crl'), toPem(signCrl({ serial: 1n, issuedAt: NOW, revoked: [] }, OTHER_SEED, OTHER)));
    writeFileSync(path.join(dir, 'bad.crl'), 'nonsense');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, text: string) => {
    const f = path.join(dir, name);
    writeFileSync(f, text, { mode: 0o600 });
    return f;
  };

  it('PEM and one-line files; a revocation list not there yet means none', async () => {
    const f = write('a.conf', conf('Certificate = pki/laptop.crt\nCA = pki/ca.crt\nRevocations = revoked.crl'));
    expect(parseWgQuick(readFileSync(f, 'utf8'), f, { nowSec: NOW }).interface.mesh).toBeUndefined(); // files wait for loadWgQuick
    const { config } = await loadWgQuick(f, { nowSec: NOW });
    const m = config.interface.mesh!;
    expect(m.cert.fingerprint).toBe(CERT.fingerprint);
    expect(m.revocationsPath).toBe(path.join(dir, 'revoked.crl'));
    expect(m.crl).toBeUndefined();
    expect(config.interface.addresses.map((a) => `${a.addr}/${a.cidr}`)).toEqual(['10.99.0.5/16', 'fd99::5/48']);
    const g = write('b.conf', conf(`Certificate = ${path.join(dir, 'laptop.line')}\nCA = ${toOneLine(CA)}`));
    expect((await loadWgQuick(g, { nowSec: NOW })).config.interface.mesh!.cert.fingerprint).toBe(CERT.fingerprint);
    expect(serializeWgQuick(config)).toContain('Certificate = pki/laptop.crt\nCA = pki/ca.crt\nRevocations = revoked.crl');
  });

  it('a revocation list: loaded and verified; one from another CA, invalid, or revoking us is an error naming the file', async () => {
    const other = sign({ name: 'phone', addresses: [P('10.99.0.6/16')] });
    writeFileSync(path.join(dir, 'revoked.crl'), toPem(signCrl({ serial: 4n, issuedAt: NOW, revoked: [other.fingerprint] }, CA_SEED, CA)));
    const f = write('c.conf', conf('Certificate = pki/laptop.crt\nCA = pki/ca.crt\nRevocations = revoked.crl'));
    const m = (await loadWgQuick(f, { nowSec: NOW })).config.interface.mesh!;
    expect(m.crl!.serial).toBe(4n);
    expect(m.crl!.revokedSet.has(other.fingerprint)).toBe(true);
    // inline certificate and CA, with a Revocations file
    const i = write('i.conf', inline('Revocations = revoked.crl'));
    expect((await loadWgQuick(i, { nowSec: NOW })).config.interface.mesh!.crl!.serial).toBe(4n);

    const crlPath = path.join(dir, 'other.crl');
    expect((await loadError(write('d.conf', conf('Certificate = pki/laptop.crt\nCA = pki/ca.crt\nRevocations = other.crl')))).message).toBe(
      `${path.join(dir, 'd.conf')}:5: Revocations ${crlPath} is from another CA than Test mesh's`,
    );
    expect((await loadError(write('e.conf', conf('Certificate = pki/laptop.crt\nCA = pki/ca.crt\nRevocations = bad.crl')))).message).toMatch(/e\.conf:5: Revocations .*bad\.crl is not a valid keymesh certificate \(malformed; expected a revocation list\)/);
    writeFileSync(path.join(dir, 'us.crl'), toPem(signCrl({ serial: 5n, issuedAt: NOW, revoked: [CERT.fingerprint] }, CA_SEED, CA)));
    expect((await loadError(write('u.conf', conf('Certificate = pki/laptop.crt\nCA = pki/ca.crt\nRevocations = us.crl')))).message).toMatch(/u\.conf:3: the certificate "laptop" is revoked \(Revocations .*us\.crl\)/);
  });

  it('missing or wrong files, expired certificates: errors name the file and say which, with the date', async () => {
    const f = write('m.conf', conf('Certificate = pki/nope.crt\nCA = pki/ca.crt'));
    expect((await loadError(f)).message).toBe(`${f}:3: Certificate ${path.join(dir, 'pki/nope.crt')}: no such file`);
    const g = write('n.conf', conf('Certificate = pki/laptop.crt\nCA = pki/laptop.crt'));
    expect((await loadError(g)).message).toBe(`${g}:4: CA ${path.join(dir, 'pki/laptop.crt')} is a node certificate, expected a CA certificate`);
    const h = write('o.conf', conf('Certificate = pki/laptop.crt\nCA = pki/ca.crt'));
    expect((await loadError(h, T0 + 200 * DAY)).message).toBe(`${h}:3: Certificate ${path.join(dir, 'pki/laptop.crt')} expired on 2025-09-23T15:06:40Z`);
    expect((await loadError(h, T0 + 2000 * DAY)).message).toMatch(new RegExp(`o\\.conf:4: CA ${path.join(dir, 'pki/ca.crt').replace(/[.]/g, '\\.')} expired on`));
    const a = write('p.conf', conf('Certificate = pki/laptop.crt\nCA = pki/ca.crt\nAddress = 10.99.0.9/16'));
    expect((await loadError(a)).message).toMatch(/p\.conf:5: Address \(10\.99\.0\.9\/16\) is not the certificate's addresses/);
  });
});

describe('ForgetAfter', () => {
  it('sets how long a peer admitted by certificate may be idle; bad values are file:line errors; SaveConfig keeps it', () => {
    const c = parseWgQuick(inline('ForgetAfter = 120'), 'wg0.conf', { nowSec: NOW });
    expect(c.interface.forgetAfter).toBe(120);
    expect(serializeWgQuick(c)).toContain('ForgetAfter = 120');
    expect(parseWgQuick(inline(), 'wg0.conf', { nowSec: NOW }).interface.forgetAfter).toBeUndefined();
    for (const bad of ['5', 'ten', '-1', '1.5']) expect(() => parseWgQuick(inline(`ForgetAfter = ${bad}`), 'wg0.conf', { nowSec: NOW })).toThrow(/wg0\.conf:\d+: ForgetAfter/);
  });
});
