import net from 'node:net';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseSet, serializeGet, UapiError, type DeviceChange, type DeviceSnapshot } from '../../src/uapi/protocol.js';
import { UapiServer } from '../../src/uapi/server.js';

const K1 = 'a0'.repeat(32);
const K2 = 'b1'.repeat(32);
const hex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));

const snapshot: DeviceSnapshot = {
  privateKey: hex(K1),
  listenPort: 51820,
  fwmark: 0,
  peers: [
    {
      publicKey: hex(K2),
      endpoint: { address: '2001:db8::1', port: 4500, family: 6 },
      persistentKeepalive: 25,
      lastHandshakeMs: 1_700_000_000_123,
      rxBytes: 123n,
      txBytes: 2n ** 40n,
      allowedIps: [
        { addr: new Uint8Array([10, 0, 0, 2]), cidr: 32, family: 4 },
        { addr: hex('fd000000000000000000000000000002'), cidr: 128, family: 6 },
      ],
    },
  ],
};

describe('UAPI text protocol', () => {
  it('serializes get=1 as wireguard-go does', () => {
    expect(serializeGet(snapshot)).toBe(
      [
        `private_key=${K1}`,
        'listen_port=51820',
        `public_key=${K2}`,
        `preshared_key=${'00'.repeat(32)}`,
        'protocol_version=1',
        'endpoint=[2001:db8::1]:4500',
        'last_handshake_time_sec=1700000000',
        'last_handshake_time_nsec=123000000',
        `tx_bytes=${2n ** 40n}`,
        'rx_bytes=123',
        'persistent_keepalive_interval=25',
        'allowed_ip=10.0.0.2/32',
        'allowed_ip=fd00::2/128',
        '',
      ].join('\n'),
    );
  });

  it('parses what `wg set` and `wg setconf` send', () => {
    const c = parseSet(
      [
        `private_key=${K1}`,
        'listen_port=12345',
        'fwmark=0',
        'replace_peers=true',
        `public_key=${K2}`,
        'update_only=true',
        `preshared_key=${'00'.repeat(32)}`,
        'endpoint=192.0.2.1:51820',
        'persistent_keepalive_interval=0',
        'replace_allowed_ips=true',
        'allowed_ip=10.9.0.0/24',
        'allowed_ip=fd00::/64',
        `public_key=${K1}`,
        'remove=true',
        '',
      ].join('\n'),
    );
    expect(c.privateKey).toEqual(hex(K1));
    expect(c.listenPort).toBe(12345);
    expect(c.replacePeers).toBe(true);
    expect(c.peers).toHaveLength(2);
    expect(c.peers[0]).toMatchObject({
      updateOnly: true,
      presharedKey: null,
      endpoint: { address: '192.0.2.1', port: 51820, family: 4 },
      persistentKeepalive: 0,
      replaceAllowedIps: true,
    });
    expect(c.peers[0].allowedIps.map((a) => `${a.family}/${a.cidr}`)).toEqual(['4/24', '6/64']);
    expect(c.peers[1].remove).toBe(true);
  });

  it('rejects malformed requests with EINVAL', () => {
    for (const body of ['listen_port=99999', 'bogus=1', 'private_key=12', `public_key=${K2}\nallowed_ip=10.0.0.1`, 'noequals', `public_key=${K2}\nendpoint=host.example:1`]) {
      expect(() => parseSet(body), body).toThrow(UapiError);
    }
  });
});

describe('UAPI socket server', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'keymesh-uapi-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function request(p: string, text: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const s = net.createConnection(p, () => s.write(text));
      let out = '';
      s.setEncoding('utf8');
      s.on('data', (d: string) => {
        out += d;
        if (out.endsWith('\n\n') && out.includes('errno=')) {
          s.end();
          resolve(out);
        }
      });
      s.on('error', reject);
    });
  }

  it('answers get and set, reports errors as errno, refuses a second server of the same name', async () => {
    const applied: DeviceChange[] = [];
    const server = await UapiServer.listen('kmtest0', { snapshot: () => snapshot, apply: (c) => void applied.push(c) }, dir);
    try {
      expect(statSync(server.path).mode & 0o777).toBe(0o600);
      const got = await request(server.path, 'get=1\n\n');
      expect(got).toBe(serializeGet(snapshot) + 'errno=0\n\n');
      expect(await request(server.path, `set=1\npublic_key=${K2}\nallowed_ip=10.1.0.0/16\n\n`)).toBe('errno=0\n\n');
      expect(applied[0].peers[0].allowedIps[0].cidr).toBe(16);
      expect(await request(server.path, 'set=1\nlisten_port=x\n\n')).toBe('errno=22\n\n');
      expect(await request(server.path, 'hello\n\n')).toBe('errno=22\n\n');
      await expect(UapiServer.listen('kmtest0', { snapshot: () => snapshot, apply: () => undefined }, dir)).rejects.toThrow(/already served/);
    } finally {
      await server.close();
    }
  });
});
