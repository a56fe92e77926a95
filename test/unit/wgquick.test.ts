import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadWgQuick, parseWgQuick, resolveEndpoint, serializeWgQuick } from '../../src/config/wgquick.js';
import { encodeKey } from '../../src/config/keys.js';

const PRIV = 'oJpZsEKe9u0U+7wLwRFHKsHpBLhyvUf+yvNWI0KrzGQ=';
const PUB1 = 'YCFs3Vf08Pa2RGKyU++XXiE6rUeVK6++lrhsU9Lk3Ws=';
const PUB2 = 'hjHNlH6mcCucy5JidAs7QbB40mRWsJrGWK74Fhmr7ng=';
const PSK = 'XvqJ5xgC7xeCJ6+COrXEGkFCureDimiuEg+WEncCfBE=';

const FULL = `# a full configuration
[Interface]
PrivateKey = ${PRIV}   # trailing comment
listenport=51820
Address = 10.0.0.1/24, fd00::1/64
ADDRESS=10.0.1.1 fd00:1::1/48
MTU = 1380
DNS = 10.0.0.53, example.net
Dns = 2001:db8::53 corp.example
Table = off
FwMark = 0x1234
PreUp = echo pre %i
PostUp = echo post %i
PreDown = echo predown
PostDown = echo postdown
SaveConfig = true

[Peer]
PublicKey = ${PUB1}
PresharedKey = ${PSK}
AllowedIPs = 10.0.0.2/32, fd00::2/128
allowedips = 192.168.0.0 / 16 ,
Endpoint = [2001:db8::1]:51820
PersistentKeepalive = 25

[PEER]
PublicKey = ${PUB2}
AllowedIPs = 0.0.0.0/0, ::/0
Endpoint = vpn.example.net:4500
PersistentKeepalive = off
`;

function errorOf(text: string): ConfigError {
  try {
    parseWgQuick(text, 'wg9.conf');
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('expected a ConfigError');
}

describe('wg-quick config', () => {
  it('parses every key, case-insensitively, with comments and repeated lists', () => {
    const c = parseWgQuick(FULL, 'wg0.conf');
    expect(encodeKey(c.interface.privateKey)).toBe(PRIV);
    expect(c.interface.listenPort).toBe(51820);
    expect(c.interface.addresses).toEqual([
      { addr: '10.0.0.1', cidr: 24, family: 4 },
      { addr: 'fd00::1', cidr: 64, family: 6 },
      { addr: '10.0.1.1', cidr: 32, family: 4 },
      { addr: 'fd00:1::1', cidr: 48, family: 6 },
    ]);
    expect(c.interface.mtu).toBe(1380);
    expect(c.interface.dns).toEqual(['10.0.0.53', '2001:db8::53']);
    expect(c.interface.dnsSearch).toEqual(['example.net', 'corp.example']);
    expect(c.interface.table).toBe('off');
    expect(c.interface.fwmark).toBe(0x1234);
    expect(c.interface.preUp).toEqual(['echo pre %i']);
    expect(c.interface.postUp).toEqual(['echo post %i']);
    expect(c.interface.preDown).toEqual(['echo predown']);
    expect(c.interface.postDown).toEqual(['echo postdown']);
    expect(c.interface.saveConfig).toBe(true);
    expect(c.peers).toHaveLength(2);
    const [p1, p2] = c.peers;
    expect(encodeKey(p1.publicKey)).toBe(PUB1);
    expect(encodeKey(p1.presharedKey!)).toBe(PSK);
    expect(p1.allowedIps.map((a) => a.text)).toEqual(['10.0.0.2/32', 'fd00::2/128', '192.168.0.0/16']);
    expect(p1.allowedIps[1].addr).toEqual(new Uint8Array([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]));
    expect(p1.allowedIps[2]).toMatchObject({ addr: new Uint8Array([192, 168, 0, 0]), cidr: 16, family: 4 });
    expect(p1.endpoint).toEqual({ host: '2001:db8::1', port: 51820 });
    expect(p1.persistentKeepalive).toBe(25);
    expect(p1.line).toBe(18);
    expect(p2.line).toBe(26);
    expect(p2.allowedIps.map((a) => `${a.family}:${a.cidr}`)).toEqual(['4:0', '6:0']);
    expect(p2.endpoint).toEqual({ host: 'vpn.example.net', port: 4500 });
    expect(p2.persistentKeepalive).toBeUndefined();
  });

  it('round-trips through serializeWgQuick to an equal config', () => {
    const c = parseWgQuick(FULL, 'wg0.conf');
    const text = serializeWgQuick(c);
    const again = parseWgQuick(text, 'wg0.conf');
    const strip = (x: typeof c) => ({ ...x, peers: x.peers.map(({ line: _l, ...p }) => p) });
    expect(strip(again)).toEqual(strip(c));
    expect(text).toContain('[Peer]\nPublicKey = ' + PUB1);
  });

  it('PortMapping: on unless turned off, either case; off is written back by serializeWgQuick', () => {
    expect(parseWgQuick(`[Interface]\nPrivateKey = ${PRIV}\n`, 'x.conf').interface.portMapping).toBe(true);
    expect(parseWgQuick(`[Interface]\nPrivateKey = ${PRIV}\nportmapping = ON\n`, 'x.conf').interface.portMapping).toBe(true);
    const off = parseWgQuick(`[Interface]\nPrivateKey = ${PRIV}\nPortMapping = Off\n`, 'x.conf');
    expect(off.interface.portMapping).toBe(false);
    const text = serializeWgQuick(off);
    expect(text).toContain('\nPortMapping = off\n');
    expect(parseWgQuick(text, 'x.conf')).toEqual(off);
    expect(serializeWgQuick(parseWgQuick(`[Interface]\nPrivateKey = ${PRIV}\n`, 'x.conf'))).not.toContain('PortMapping');
  });

  it('accepts an empty AllowedIPs and a config with no peers', () => {
    const c = parseWgQuick(`[Interface]\nPrivateKey=${PRIV}\n[Peer]\nPublicKey=${PUB1}\nAllowedIPs =\n`, 'x.conf');
    expect(c.peers[0].allowedIps).toEqual([]);
    expect(parseWgQuick(`[interface]\nprivatekey = ${PRIV}\n`, 'x.conf').peers).toEqual([]);
  });

  it('keeps an IPv6 zone in an endpoint and reads FwMark in decimal, hex or off', () => {
    const c = parseWgQuick(`[Interface]\nPrivateKey=${PRIV}\nFwMark = 51820\n[Peer]\nPublicKey=${PUB1}\nEndpoint=[fe80::1%eth0]:51820\n`, 'x.conf');
    expect(c.peers[0].endpoint).toEqual({ host: 'fe80::1%eth0', port: 51820 });
    expect(c.interface.fwmark).toBe(51820);
    expect(parseWgQuick(`[Interface]\nPrivateKey=${PRIV}\nFwMark = off\n`, 'x.conf').interface.fwmark).toBe(0);
  });

  const head = `[Interface]\nPrivateKey = ${PRIV}\n`;
  const peer = `${head}[Peer]\nPublicKey = ${PUB1}\n`; // a peer key goes on line 5
  // [what, text, line, exact problem (after "wg9.conf:LINE: ") or a pattern]
  const cases: Array<[string, string, number, string | RegExp]> = [
    ['invalid private key', `[Interface]\nPrivateKey = abc\n`, 2, 'PrivateKey is not a valid base64 key (44 characters, as `wg genkey` prints)'],
    ['missing PrivateKey', `[Interface]\nListenPort = 1\n`, 1, '[Interface] has no PrivateKey'],
    ['no [Interface]', `[Peer]\nPublicKey = ${PUB1}\n`, 1, 'no [Interface] section'],
    ['empty file', `# nothing\n`, 1, 'no [Interface] section'],
    ['key outside a section', `ListenPort = 1\n${head}`, 1, 'ListenPort is outside any section (the file must start with [Interface])'],
    ['unknown key', `${head}Foo = bar\n`, 3, 'unknown key Foo in [Interface]'],
    ['unknown peer key', `${peer}Foo = bar\n`, 5, 'unknown key Foo in [Peer]'],
    ['peer key in [Interface]', `${head}AllowedIPs = 10.0.0.0/8\n`, 3, 'AllowedIPs belongs in a [Peer] section, not [Interface]'],
    ['interface key in [Peer]', `${peer}ListenPort = 1\n`, 5, 'ListenPort belongs in the [Interface] section, not [Peer]'],
    ['unknown section', `${head}[Peers]\n`, 3, 'unknown section [Peers] (expected [Interface] or [Peer])'],
    ['duplicate [Interface]', `${head}\n[Interface]\n`, 4, 'a second [Interface] section (the first is at line 1; only one is allowed)'],
    ['line without =', `${head}ListenPort 51820\n`, 3, 'expected "Key = Value" (the line starts with ListenPort)'],
    ['peer without PublicKey', `${head}[Peer]\nAllowedIPs = 10.0.0.0/8\n`, 3, '[Peer] has no PublicKey'],
    ['duplicate peer', `${peer}[Peer]\nPublicKey = ${PUB1}\n`, 5, 'this [Peer] has the same PublicKey as the one at line 3'],
    ['invalid public key', `${head}[Peer]\nPublicKey = ${PUB1.slice(0, 42)}B=\n`, 4, 'PublicKey is not a valid base64 key (44 characters, as `wg pubkey` prints)'],
    ['bad preshared key', `${peer}PresharedKey = ${PSK.slice(1)}\n`, 5, 'PresharedKey is not a valid base64 key (44 characters, as `wg genpsk` prints)'],
    ['IPv4 prefix too long', `${peer}AllowedIPs = 10.0.0.0/33\n`, 5, 'AllowedIPs: "10.0.0.0/33" is not a valid IPv4 prefix (length must be 0–32)'],
    ['bad IPv4 address', `${peer}AllowedIPs = 10.0.0.0/8, 300.1.1.1/32\n`, 5, 'AllowedIPs: "300.1.1.1/32" is not an IPv4 or IPv6 address'],
    ['IPv6 prefix too long', `${peer}AllowedIPs = fe80::/129\n`, 5, 'AllowedIPs: "fe80::/129" is not a valid IPv6 prefix (length must be 0–128)'],
    ['prefix not a number', `${peer}AllowedIPs = 10.0.0.0/x\n`, 5, 'AllowedIPs: "10.0.0.0/x" is not a valid IPv4 prefix (length must be 0–32)'],
    ['bad list on a later line', `${peer}AllowedIPs = 10.0.0.0/8\n# ok so far\nAllowedIPs = 10.1.0.0/16, 1.2.3/24\n`, 7, 'AllowedIPs: "1.2.3/24" is not an IPv4 or IPv6 address'],
    ['bad Address', `${head}Address = 10.0.0.1/40\n`, 3, 'Address: "10.0.0.1/40" is not a valid IPv4 prefix (length must be 0–32)'],
    ['bad port', `${head}ListenPort = 65536\n`, 3, 'ListenPort: "65536" is not a port number (0–65535)'],
    ['port not a number', `${head}ListenPort = -1\n`, 3, 'ListenPort: "-1" is not a port number (0–65535)'],
    ['bad FwMark', `${head}FwMark = 0x123456789\n`, 3, 'FwMark: "0x123456789" is not a 32-bit number (decimal or 0x hex) or "off"'],
    ['endpoint without port', `${peer}Endpoint = 192.0.2.1\n`, 5, 'Endpoint: "192.0.2.1" is not HOST:PORT (e.g. 192.0.2.1:51820 or vpn.example.net:51820)'],
    ['IPv6 endpoint without brackets', `${peer}Endpoint = 2001:db8::1:51820\n`, 5, 'Endpoint: "2001:db8::1:51820": put an IPv6 address in brackets, e.g. [2001:db8::1]:51820'],
    ['bracketed endpoint that is not IPv6', `${peer}Endpoint = [192.0.2.1]:51820\n`, 5, 'Endpoint: "192.0.2.1" is not an IPv6 address'],
    ['endpoint bad port', `${peer}Endpoint = vpn.example.net:70000\n`, 5, 'Endpoint: "70000" is not a port number (1–65535)'],
    ['endpoint port 0', `${peer}Endpoint = 192.0.2.1:0\n`, 5, 'Endpoint: "0" is not a port number (1–65535)'],
    ['endpoint bad IPv4', `${peer}Endpoint = 300.1.1.1:51820\n`, 5, 'Endpoint: "300.1.1.1" is not an IP address or a host name'],
    ['endpoint bad host', `${peer}Endpoint = bad!host:51820\n`, 5, 'Endpoint: "bad!host" is not an IP address or a host name'],
    ['bad keepalive', `${peer}PersistentKeepalive = often\n`, 5, 'PersistentKeepalive: "often" is not a number of seconds (0–65535) or "off"'],
    ['bad MTU', `${head}MTU = 100\n`, 3, 'MTU: "100" is not a valid MTU (576–65535)'],
    ['bad DNS', `${head}DNS = 10.0.0.1, bad!name\n`, 3, 'DNS: "bad!name" is neither an IP address nor a search domain'],
    ['bad SaveConfig', `${head}SaveConfig = yes\n`, 3, 'SaveConfig: "yes" is neither true nor false'],
    ['bad PortMapping', `${head}PortMapping = true\n`, 3, 'PortMapping: "true" is neither on nor off'],
    ['PortMapping in [Peer]', `${peer}PortMapping = off\n`, 5, 'PortMapping belongs in the [Interface] section, not [Peer]'],
    ['bad Table', `${head}Table = main table\n`, 3, /^Table: /],
  ];
  for (const [what, text, line, problem] of cases) {
    it(`error: ${what} → wg9.conf:${line}`, () => {
      const e = errorOf(text);
      expect(e).toBeInstanceOf(ConfigError);
      expect(e.file).toBe('wg9.conf');
      expect(e.line).toBe(line);
      expect(e.message.startsWith(`wg9.conf:${line}: `)).toBe(true);
      const rest = e.message.slice(`wg9.conf:${line}: `.length);
      if (typeof problem === 'string') expect(rest).toBe(problem);
      else expect(rest).toMatch(problem);
    });
  }

  it('never puts a private or preshared key in an error message', () => {
    const texts = [
      // a valid key, and a problem on another line
      `[Interface]\nPrivateKey = ${PRIV}\nBogus = 1\n`,
      `${peer}PresharedKey = ${PSK}\nEndpoint = nowhere\n`,
      // the key itself malformed in every way
      `[Interface]\nPrivateKey = ${PRIV.slice(0, 43)}x\n`,
      `[Interface]\nPrivateKey = ${PRIV}${PRIV}\n`,
      `${peer}PresharedKey = ${PSK}x\n`,
      // the "=" forgotten, or the key on a line of its own
      `[Interface]\nPrivateKey ${PRIV}\n`,
      `[Interface]\n${PRIV}\n`,
      `[Interface]\n${PRIV.slice(0, 43)}=x\n`,
      `[${PRIV}]\n`,
      `${PRIV}\n[Interface]\n`,
      // the key pasted into another field
      `${peer}Endpoint = ${PRIV}:51820\n`,
      `${peer}AllowedIPs = ${PSK}\n`,
      `${head}DNS = ${PRIV}\n`,
      `${head}Table = ${PSK}\n`,
      `${head}MTU = ${PSK}\n`,
      `${peer}PersistentKeepalive = ${PSK}\n`,
    ];
    for (const t of texts) {
      const e = errorOf(t);
      for (const secret of [PRIV, PSK]) {
        // no 12-character run of the key survives anywhere in the message
        for (let i = 0; i + 12 <= 43; i += 4) expect(e.message, e.message).not.toContain(secret.slice(i, i + 12));
      }
    }
  });
});

describe('loadWgQuick', () => {
  // made in beforeAll, not at collection, so a filtered or skipped run leaves nothing behind
  let dir = '';
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'keymesh-wgquick-'));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('warns, without failing, when group or others may read the file; silent at 0600', async () => {
    const f = path.join(dir, 'wg0.conf');
    writeFileSync(f, FULL);
    chmodSync(f, 0o644);
    const open = await loadWgQuick(f);
    expect(open.config.peers).toHaveLength(2);
    expect(open.warnings).toHaveLength(1);
    expect(open.warnings[0]).toContain(f);
    expect(open.warnings[0]).toContain('644');
    expect(open.warnings[0]).not.toContain(PRIV);
    chmodSync(f, 0o640);
    expect((await loadWgQuick(f)).warnings).toHaveLength(1);
    chmodSync(f, 0o600);
    expect((await loadWgQuick(f)).warnings).toEqual([]);
  });

  it('reports errors with the path it was given', async () => {
    const f = path.join(dir, 'bad.conf');
    writeFileSync(f, `[Interface]\nPrivateKey = ${PRIV}\nListenPort = nope\n`, { mode: 0o600 });
    await expect(loadWgQuick(f)).rejects.toThrow(`${f}:3: ListenPort: "nope" is not a port number (0–65535)`);
    await expect(loadWgQuick(path.join(dir, 'missing.conf'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('resolveEndpoint', () => {
  it('passes IP literals through', async () => {
    expect(await resolveEndpoint({ host: '192.0.2.7', port: 1 })).toEqual({ address: '192.0.2.7', family: 4, port: 1 });
    expect(await resolveEndpoint({ host: '2001:db8::7', port: 2 })).toEqual({ address: '2001:db8::7', family: 6, port: 2 });
    expect(await resolveEndpoint({ host: 'fe80::1%lo', port: 3 })).toEqual({ address: 'fe80::1%lo', family: 6, port: 3 });
  });

  it('resolves a name from /etc/hosts, IPv4 first', async () => {
    const r = await resolveEndpoint({ host: 'localhost', port: 51820 });
    expect(r).toEqual({ address: '127.0.0.1', family: 4, port: 51820 });
  });

  it('names the host when resolution fails', async () => {
    await expect(resolveEndpoint({ host: 'no-such-host.invalid', port: 1 })).rejects.toThrow(/no-such-host\.invalid/);
  });
});
