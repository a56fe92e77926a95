import { describe, expect, it } from 'vitest';
import { ConfigError, parseWgQuick, serializeWgQuick } from '../../src/config/wgquick.js';
import { decodeKey, encodeKey, hexToKey, keyToHex } from '../../src/config/keys.js';

const PRIV = 'oJpZsEKe9u0U+7wLwRFHKsHpBLhyvUf+yvNWI0KrzGQ=';
const PUB1 = 'YCFs3Vf08Pa2RGKyU++XXiE6rUeVK6++lrhsU9Lk3Ws=';
const PUB2 = 'hjHNlH6mcCucy5JidAs7QbB40mRWsJrGWK74Fhmr7ng=';
const PSK = 'XvqJ5xgC7xeCJ6+COrXEGkFCureDimiuEg+WEncCfBE=';

const FULL = `# a full configuration
[Interface]
PrivateKey = ${PRIV}   # trailing comment
listenport=51820
Address = 10.0.0.1/24, fd00::1/64
Address = 10.0.1.1
MTU = 1380
DNS = 10.0.0.53, example.net
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
AllowedIPs = 192.168.0.0/16
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
    ]);
    expect(c.interface.mtu).toBe(1380);
    expect(c.interface.dns).toEqual(['10.0.0.53']);
    expect(c.interface.dnsSearch).toEqual(['example.net']);
    expect(c.interface.table).toBe('off');
    expect(c.interface.fwmark).toBe(0x1234);
    expect(c.interface.preUp).toEqual(['echo pre %i']);
    expect(c.interface.postDown).toEqual(['echo postdown']);
    expect(c.interface.saveConfig).toBe(true);
    expect(c.peers).toHaveLength(2);
    const [p1, p2] = c.peers;
    expect(encodeKey(p1.publicKey)).toBe(PUB1);
    expect(encodeKey(p1.presharedKey!)).toBe(PSK);
    expect(p1.allowedIps.map((a) => a.text)).toEqual(['10.0.0.2/32', 'fd00::2/128', '192.168.0.0/16']);
    expect(p1.endpoint).toEqual({ host: '2001:db8::1', port: 51820 });
    expect(p1.persistentKeepalive).toBe(25);
    expect(p1.line).toBe(17);
    expect(p2.allowedIps.map((a) => `${a.family}:${a.cidr}`)).toEqual(['4:0', '6:0']);
    expect(p2.endpoint).toEqual({ host: 'vpn.example.net', port: 4500 });
    expect(p2.persistentKeepalive).toBeUndefined();
  });

  it('round-trips through serializeWgQuick', () => {
    const c = parseWgQuick(FULL, 'wg0.conf');
    const again = parseWgQuick(serializeWgQuick(c), 'wg0.conf');
    expect(again.interface.addresses).toEqual(c.interface.addresses);
    expect(again.peers.map((p) => encodeKey(p.publicKey))).toEqual([PUB1, PUB2]);
    expect(again.peers[0].allowedIps.map((a) => a.text)).toEqual(c.peers[0].allowedIps.map((a) => a.text));
  });

  const head = `[Interface]\nPrivateKey = ${PRIV}\n`;
  const cases: Array<[string, string, number, RegExp]> = [
    ['invalid private key', `[Interface]\nPrivateKey = abc\n`, 2, /PrivateKey is not a valid key/],
    ['missing PrivateKey', `[Interface]\nListenPort = 1\n`, 1, /no PrivateKey/],
    ['no [Interface]', `[Peer]\nPublicKey = ${PUB1}\n`, 1, /no \[Interface\]/],
    ['key outside a section', `ListenPort = 1\n${head}`, 1, /outside any section/],
    ['unknown key', `${head}Foo = bar\n`, 3, /unknown key Foo in \[Interface\]/],
    ['peer key in [Interface]', `${head}AllowedIPs = 10.0.0.0/8\n`, 3, /belongs in a \[Peer\]/],
    ['unknown section', `${head}[Peers]\n`, 3, /unknown section/],
    ['duplicate [Interface]', `${head}[Interface]\n`, 3, /second \[Interface\]/],
    ['line without =', `${head}ListenPort 51820\n`, 3, /expected "Key = Value"/],
    ['peer without PublicKey', `${head}[Peer]\nAllowedIPs = 10.0.0.0/8\n`, 3, /no PublicKey/],
    ['duplicate peer', `${head}[Peer]\nPublicKey = ${PUB1}\n[Peer]\nPublicKey = ${PUB1}\n`, 5, /same PublicKey as the one at line 3/],
    ['IPv4 prefix too long', `${head}[Peer]\nPublicKey = ${PUB1}\nAllowedIPs = 10.0.0.0/33\n`, 5, /"10.0.0.0\/33" is not a valid IPv4 prefix \(length must be 0–32\)/],
    ['bad IPv4 address', `${head}[Peer]\nPublicKey = ${PUB1}\nAllowedIPs = 300.1.1.1/32\n`, 5, /"300.1.1.1\/32" is not an IPv4 or IPv6 address/],
    ['IPv6 prefix too long', `${head}[Peer]\nPublicKey = ${PUB1}\nAllowedIPs = fe80::/129\n`, 5, /IPv6 prefix \(length must be 0–128\)/],
    ['bad Address', `${head}Address = 10.0.0.1/40\n`, 3, /Address:/],
    ['bad port', `${head}ListenPort = 65536\n`, 3, /ListenPort: "65536" is not a port/],
    ['endpoint without port', `${head}[Peer]\nPublicKey = ${PUB1}\nEndpoint = 192.0.2.1\n`, 5, /Endpoint: .*HOST:PORT/],
    ['IPv6 endpoint without brackets', `${head}[Peer]\nPublicKey = ${PUB1}\nEndpoint = 2001:db8::1:51820\n`, 5, /brackets/],
    ['endpoint port 0', `${head}[Peer]\nPublicKey = ${PUB1}\nEndpoint = 192.0.2.1:0\n`, 5, /not a port number/],
    ['bad keepalive', `${head}[Peer]\nPublicKey = ${PUB1}\nPersistentKeepalive = often\n`, 5, /PersistentKeepalive/],
    ['bad MTU', `${head}MTU = 100\n`, 3, /MTU/],
    ['bad SaveConfig', `${head}SaveConfig = yes\n`, 3, /SaveConfig/],
    ['bad preshared key', `${head}[Peer]\nPublicKey = ${PUB1}\nPresharedKey = ${PSK.slice(1)}\n`, 5, /PresharedKey is not a valid key/],
  ];
  for (const [what, text, line, re] of cases) {
    it(`error: ${what} → wg9.conf:${line}`, () => {
      const e = errorOf(text);
      expect(e.line).toBe(line);
      expect(e.message.startsWith(`wg9.conf:${line}: `)).toBe(true);
      expect(e.message).toMatch(re);
    });
  }

  it('never puts a key in an error message', () => {
    const e1 = errorOf(`[Interface]\nPrivateKey = ${PRIV}\nBogus = 1\n`);
    const e2 = errorOf(`[Interface]\nPrivateKey = ${PRIV.slice(0, 43)}x\n`);
    const e3 = errorOf(`${head}[Peer]\nPublicKey = ${PUB1}\nPresharedKey = ${PSK}x\n`);
    for (const e of [e1, e2, e3]) {
      expect(e.message).not.toContain(PRIV.slice(0, 20));
      expect(e.message).not.toContain(PSK.slice(0, 20));
    }
  });
});

describe('key formats', () => {
  it('base64 and hex round-trip; strict lengths', () => {
    const k = decodeKey(PRIV)!;
    expect(k).toHaveLength(32);
    expect(encodeKey(k)).toBe(PRIV);
    expect(hexToKey(keyToHex(k))).toEqual(k);
    expect(decodeKey(PRIV.slice(1))).toBeNull();
    expect(decodeKey(PRIV + 'A')).toBeNull();
    expect(decodeKey(PRIV.replace('=', 'A'))).toBeNull();
    expect(decodeKey('!' + PRIV.slice(1))).toBeNull();
    expect(hexToKey('zz'.repeat(32))).toBeNull();
  });
});
