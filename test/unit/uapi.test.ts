/**
 * The UAPI: the text protocol on literal request texts (captured from stock `wg` 1.0 talking to a
 * socket), the socket server on a temporary directory, and real interop with stock `wg` on
 * /var/run/wireguard (root only): `wg show`, `wg show dump`, `wg showconf`, `wg set`, `wg setconf`
 * against a fake device. `wg` needs no network device for a userspace interface: it finds
 * /var/run/wireguard/NAME.sock, checks it is a socket, and talks to it.
 */
import { spawnSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { x25519 } from '@noble/curves/ed25519.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeKey, encodeKey, keyToHex } from '../../src/config/keys.js';
import { formatAddress } from '../../src/core/ip.js';
import {
  EINVAL,
  EPROTO,
  parseSet,
  serializeGet,
  UapiError,
  type DeviceChange,
  type DeviceSnapshot,
  type PeerSnapshot,
} from '../../src/uapi/protocol.js';
import { UAPI_DIR, UapiServer, type UapiDevice } from '../../src/uapi/server.js';

const K1 = 'a0'.repeat(32);
const K2 = 'b1'.repeat(32);
const ZERO = '00'.repeat(32);
const hex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));
const v4 = (...b: number[]) => new Uint8Array(b);

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
        { addr: v4(10, 0, 0, 2), cidr: 32, family: 4 },
        { addr: hex('fd000000000000000000000000000002'), cidr: 128, family: 6 },
      ],
    },
  ],
};

function uapiError(body: string): UapiError {
  try {
    parseSet(body);
  } catch (e) {
    if (e instanceof UapiError) return e;
    throw e;
  }
  throw new Error(`expected a UapiError for ${JSON.stringify(body)}`);
}

describe('UAPI text protocol', () => {
  it('serializes get=1 in wireguard-go order', () => {
    expect(serializeGet(snapshot)).toBe(
      [
        `private_key=${K1}`,
        'listen_port=51820',
        `public_key=${K2}`,
        `preshared_key=${ZERO}`,
        'protocol_version=1',
        'endpoint=[2001:db8::1]:4500',
        'last_handshake_time_sec=1700000000',
        'last_handshake_time_nsec=123000000',
        `tx_bytes=1099511627776`,
        'rx_bytes=123',
        'persistent_keepalive_interval=25',
        'allowed_ip=10.0.0.2/32',
        'allowed_ip=fd00::2/128',
        '',
      ].join('\n'),
    );
  });

  it('omits a missing private key and a zero fwmark; prints fwmark, PSK, IPv4 endpoint and "never"', () => {
    const s: DeviceSnapshot = {
      listenPort: 0,
      fwmark: 0x10,
      peers: [
        {
          publicKey: hex(K2),
          presharedKey: hex(K1),
          endpoint: { address: '192.0.2.1', port: 51820, family: 4 },
          persistentKeepalive: 0,
          lastHandshakeMs: 0,
          rxBytes: 0n,
          txBytes: 0n,
          allowedIps: [],
        },
      ],
    };
    const text = serializeGet(s);
    expect(text).not.toContain('private_key=');
    expect(text).toContain('listen_port=0\nfwmark=16\n');
    expect(text).toContain(`preshared_key=${K1}\n`);
    expect(text).toContain('endpoint=192.0.2.1:51820\n');
    expect(text).toContain('last_handshake_time_sec=0\nlast_handshake_time_nsec=0\n');
    expect(text).not.toContain('allowed_ip=');
    expect(serializeGet({ listenPort: 1, fwmark: 0, peers: [] })).toBe('listen_port=1\n');
  });

  it('serialize → parse: the settable lines of a get reply parse back to the snapshot', () => {
    const settable = /^(private_key|listen_port|fwmark|public_key|preshared_key|endpoint|persistent_keepalive_interval|allowed_ip|protocol_version)=/;
    const body = serializeGet(snapshot)
      .split('\n')
      .filter((l) => settable.test(l))
      .join('\n');
    const c = parseSet(body);
    expect(c.privateKey).toEqual(snapshot.privateKey);
    expect(c.listenPort).toBe(snapshot.listenPort);
    expect(c.peers).toHaveLength(1);
    const p = c.peers[0];
    const s = snapshot.peers[0];
    expect(p.publicKey).toEqual(s.publicKey);
    expect(p.presharedKey).toBeNull(); // zeros in a get reply mean "none"
    expect(p.endpoint).toEqual(s.endpoint);
    expect(p.persistentKeepalive).toBe(s.persistentKeepalive);
    expect(p.allowedIps).toEqual(s.allowedIps);
  });

  // Literal texts, byte for byte as wg 1.0 sent them to a socket (see the file comment).
  it('parses `wg setconf` (replace_peers, keys, bracketed IPv6 endpoint, keepalive 0)', () => {
    const c = parseSet(
      'private_key=f05c312aad6facaaad52af6d3d6c592ad7bf6dc3472efbad9efe25ae5c87d256\nlisten_port=12345\nfwmark=16\n' +
        'replace_peers=true\npublic_key=b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1\n' +
        'preshared_key=6fa0434711ed790c4f8787a17f74d58b29d818f43295ee79e66c0b3e57c06196\nendpoint=[2001:db8::1]:51820\n' +
        'persistent_keepalive_interval=0\nreplace_allowed_ips=true\nallowed_ip=10.0.0.2/32\nallowed_ip=fd00::2/128\n',
    );
    expect(c).toEqual({
      privateKey: hex('f05c312aad6facaaad52af6d3d6c592ad7bf6dc3472efbad9efe25ae5c87d256'),
      listenPort: 12345,
      fwmark: 16,
      replacePeers: true,
      peers: [
        {
          publicKey: hex(K2),
          remove: false,
          updateOnly: false,
          presharedKey: hex('6fa0434711ed790c4f8787a17f74d58b29d818f43295ee79e66c0b3e57c06196'),
          endpoint: { address: '2001:db8::1', port: 51820, family: 6 },
          persistentKeepalive: 0,
          replaceAllowedIps: true,
          allowedIps: [
            { addr: v4(10, 0, 0, 2), cidr: 32, family: 4 },
            { addr: hex('fd000000000000000000000000000002'), cidr: 128, family: 6 },
          ],
        },
      ],
    } satisfies DeviceChange);
  });

  it('parses `wg set NAME peer … allowed-ips … endpoint … persistent-keepalive …`', () => {
    const c = parseSet(
      'public_key=c40e716e878aa8f9666f0bcb4bb95ca66de420b14d169d7559451634530ac648\nendpoint=192.0.2.1:51820\n' +
        'persistent_keepalive_interval=25\nreplace_allowed_ips=true\nallowed_ip=10.9.0.0/24\nallowed_ip=fd00::/64\n',
    );
    expect(c).toEqual({
      replacePeers: false,
      peers: [
        {
          publicKey: hex('c40e716e878aa8f9666f0bcb4bb95ca66de420b14d169d7559451634530ac648'),
          remove: false,
          updateOnly: false,
          endpoint: { address: '192.0.2.1', port: 51820, family: 4 },
          persistentKeepalive: 25,
          replaceAllowedIps: true,
          allowedIps: [
            { addr: v4(10, 9, 0, 0), cidr: 24, family: 4 },
            { addr: hex('fd000000000000000000000000000000'), cidr: 64, family: 6 },
          ],
        },
      ],
    } satisfies DeviceChange);
  });

  it('parses `wg set … peer … remove`, `private-key /dev/null listen-port 0 fwmark off`, `preshared-key /dev/null`', () => {
    expect(parseSet(`public_key=${K2}\nremove=true\n`).peers).toEqual([
      { publicKey: hex(K2), remove: true, updateOnly: false, replaceAllowedIps: false, allowedIps: [] },
    ]);
    expect(parseSet(`private_key=${ZERO}\nlisten_port=0\nfwmark=0\n`)).toEqual({
      privateKey: null,
      listenPort: 0,
      fwmark: 0,
      replacePeers: false,
      peers: [],
    });
    expect(parseSet(`public_key=${K2}\npreshared_key=${ZERO}\n`).peers[0].presharedKey).toBeNull();
  });

  it('parses update_only (as `wg syncconf` sends), several peers, an IPv6 zone, and an empty body', () => {
    const c = parseSet(
      `public_key=${K2}\nupdate_only=true\nendpoint=[fe80::1%eth0]:51820\nprotocol_version=1\npublic_key=${K1}\nallowed_ip=0.0.0.0/0\n`,
    );
    expect(c.peers.map((p) => [keyToHex(p.publicKey), p.updateOnly])).toEqual([
      [K2, true],
      [K1, false],
    ]);
    expect(c.peers[0].endpoint).toEqual({ address: 'fe80::1%eth0', port: 51820, family: 6 });
    expect(c.peers[1].allowedIps).toEqual([{ addr: v4(0, 0, 0, 0), cidr: 0, family: 4 }]);
    expect(parseSet('')).toEqual({ replacePeers: false, peers: [] });
  });

  it('rejects malformed requests with EINVAL and another protocol version with EPROTO', () => {
    const bad = [
      'listen_port=99999',
      'listen_port=',
      'listen_port=-1',
      'fwmark=4294967296',
      'bogus=1',
      'private_key=12',
      `private_key=${K1}0`,
      'replace_peers=yes',
      'noequals',
      '=value',
      'allowed_ip=10.0.0.0/8', // a peer key before any public_key
      `public_key=${K2.slice(2)}`,
      `public_key=${K2}\nallowed_ip=10.0.0.1`,
      `public_key=${K2}\nallowed_ip=10.0.0.0/33`,
      `public_key=${K2}\nallowed_ip=fe80::/129`,
      `public_key=${K2}\nendpoint=host.example:1`,
      `public_key=${K2}\nendpoint=192.0.2.1`,
      `public_key=${K2}\nendpoint=[192.0.2.1]:1`,
      `public_key=${K2}\nendpoint=192.0.2.1%eth0:1`,
      `public_key=${K2}\nremove=1`,
      `public_key=${K2}\npersistent_keepalive_interval=65536`,
      `public_key=${K2}\nlisten_port=1`,
    ];
    for (const body of bad) expect(uapiError(body).errno, body).toBe(EINVAL);
    expect(uapiError('protocol_version=2').errno).toBe(EPROTO);
    expect(uapiError(`public_key=${K2}\nprotocol_version=2`).errno).toBe(EPROTO);
  });

  it('never echoes a key in an error message', () => {
    for (const body of [`private_key ${K1}`, `${K1}=1`, `public_key=${K2}\n${K1}=x`, `private_key=${K1}x`]) {
      expect(uapiError(body).message).not.toContain(K1.slice(0, 12));
    }
  });
});

// ---------------------------------------------------------------------------------------------

/** An in-memory device with the UAPI's set semantics, recording every change it is given. */
class FakeDevice implements UapiDevice {
  readonly changes: DeviceChange[] = [];
  state: DeviceSnapshot;
  failWith: UapiError | null = null;
  constructor(initial: DeviceSnapshot) {
    this.state = structuredClone(initial);
  }
  snapshot(): DeviceSnapshot {
    return this.state;
  }
  apply(c: DeviceChange): void {
    this.changes.push(c);
    if (this.failWith) throw this.failWith;
    const s = this.state;
    if (c.privateKey !== undefined) s.privateKey = c.privateKey ?? undefined;
    if (c.listenPort !== undefined) s.listenPort = c.listenPort;
    if (c.fwmark !== undefined) s.fwmark = c.fwmark;
    if (c.replacePeers) s.peers = [];
    for (const pc of c.peers) {
      const i = s.peers.findIndex((p) => keyToHex(p.publicKey) === keyToHex(pc.publicKey));
      if (pc.remove) {
        if (i >= 0) s.peers.splice(i, 1);
        continue;
      }
      if (i < 0 && pc.updateOnly) continue;
      let p: PeerSnapshot;
      if (i >= 0) p = s.peers[i];
      else {
        p = { publicKey: pc.publicKey, persistentKeepalive: 0, lastHandshakeMs: 0, rxBytes: 0n, txBytes: 0n, allowedIps: [] };
        s.peers.push(p);
      }
      if (pc.presharedKey !== undefined) p.presharedKey = pc.presharedKey ?? undefined;
      if (pc.endpoint) p.endpoint = pc.endpoint;
      if (pc.persistentKeepalive !== undefined) p.persistentKeepalive = pc.persistentKeepalive;
      if (pc.replaceAllowedIps) p.allowedIps = [];
      p.allowedIps.push(...pc.allowedIps);
    }
  }
}

/** Send one request text, collect replies until `count` of them ("…errno=N\n\n") have come back. */
function request(p: string, text: string | string[], count = 1): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.createConnection(p, async () => {
      // several chunks are written with a pause between them, to split requests anywhere
      for (const chunk of Array.isArray(text) ? text : [text]) {
        s.write(chunk);
        if (Array.isArray(text)) await new Promise((r) => setTimeout(r, 2));
      }
    });
    let out = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      out += d;
      if ((out.match(/errno=\d+\n\n/g) ?? []).length >= count) {
        s.end();
        resolve(out);
      }
    });
    s.on('close', () => resolve(out));
    s.on('error', reject);
  });
}

describe('UAPI socket server (temporary directory)', () => {
  // made in beforeAll, not at collection, so a filtered or skipped run leaves nothing behind
  let dir = '';
  const servers: UapiServer[] = [];
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'keymesh-uapi-'));
  });
  afterAll(async () => {
    for (const s of servers) await s.close().catch(() => undefined);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  async function serve(name: string, dev: UapiDevice, where = dir): Promise<UapiServer> {
    const s = await UapiServer.listen(name, dev, where);
    servers.push(s);
    return s;
  }

  it('answers get and set, reports errors as errno, keeps the socket at 0600', async () => {
    const dev = new FakeDevice(snapshot);
    const server = await serve('kmtest0', dev);
    expect(server.path).toBe(path.join(dir, 'kmtest0.sock'));
    expect(statSync(server.path).isSocket()).toBe(true);
    expect(statSync(server.path).mode & 0o777).toBe(0o600);
    expect(await request(server.path, 'get=1\n\n')).toBe(serializeGet(snapshot) + 'errno=0\n\n');
    expect(await request(server.path, `set=1\npublic_key=${K2}\nallowed_ip=10.1.0.0/16\n\n`)).toBe('errno=0\n\n');
    expect(dev.changes).toHaveLength(1);
    expect(dev.changes[0].peers[0].allowedIps).toEqual([{ addr: v4(10, 1, 0, 0), cidr: 16, family: 4 }]);
    // a malformed set changes nothing (the device is not even called) and answers EINVAL
    expect(await request(server.path, `set=1\nlisten_port=1\npublic_key=${K2}\nallowed_ip=nope\n\n`)).toBe('errno=22\n\n');
    expect(dev.changes).toHaveLength(1);
    expect(await request(server.path, 'set=1\nprotocol_version=2\n\n')).toBe('errno=71\n\n');
    // the device's own refusal comes back with its errno
    dev.failWith = new UapiError(98, 'address in use');
    expect(await request(server.path, 'set=1\nlisten_port=53\n\n')).toBe('errno=98\n\n');
    dev.failWith = null;
  });

  it('serves several requests per connection, however the bytes are split', async () => {
    const dev = new FakeDevice(snapshot);
    const server = await serve('kmtest1', dev);
    const text = `get=1\n\nset=1\nlisten_port=7\n\nset=1\n\nget=1\n\n`;
    const expected = serializeGet(snapshot) + 'errno=0\n\n' + 'errno=0\n\n' + 'errno=0\n\n';
    const all = await request(server.path, text, 4);
    expect(all.startsWith(expected)).toBe(true);
    expect(all.slice(expected.length)).toContain('listen_port=7\n');
    // one byte at a time
    const bytes = await request(server.path, [...'set=1\nlisten_port=8\n\nget=1\n\n'], 2);
    expect(bytes.startsWith('errno=0\n\n')).toBe(true);
    expect(bytes).toContain('listen_port=8\n');
    expect(dev.changes.map((c) => c.listenPort)).toEqual([7, undefined, 8]);
    expect(server.counters).toEqual({ get: 3, set: 3, refused: 0 });
  });

  it('answers garbage with errno=22 and closes; a bad byte after get=1 is EINVAL; the server lives on', async () => {
    const server = await serve('kmtest2', new FakeDevice(snapshot));
    expect(await request(server.path, 'hello\n\n')).toBe('errno=22\n\n');
    expect(await request(server.path, 'x'.repeat(100))).toBe('errno=22\n\n');
    expect(await request(server.path, 'get=1\nx')).toBe('errno=22\n\n');
    expect(await request(server.path, '\u0000\u00ff\n\n')).toBe('errno=22\n\n');
    expect(await request(server.path, 'get=1\n\n')).toContain('errno=0\n\n');
    expect(server.counters).toEqual({ get: 1, set: 0, refused: 4 });
  });

  it('refuses a second live server of the same name, replaces a stale socket, leaves other files alone', async () => {
    const first = await serve('kmtest3', new FakeDevice(snapshot));
    await expect(UapiServer.listen('kmtest3', new FakeDevice(snapshot), dir)).rejects.toThrow(
      /interface kmtest3 is already served by another process/,
    );
    expect(await request(first.path, 'get=1\n\n')).toContain('errno=0'); // the first is untouched

    // A stale socket: bound by a process killed with SIGKILL, so nothing unlinked it.
    const stalePath = path.join(dir, 'kmtest4.sock');
    const child = spawn(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(stalePath)}, () => console.log('up'))`], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout!.once('data', () => resolve());
        child.once('exit', () => reject(new Error('the stale-socket child exited early')));
      });
    } finally {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    }
    expect(statSync(stalePath).isSocket()).toBe(true);
    const second = await serve('kmtest4', new FakeDevice(snapshot));
    expect(await request(second.path, 'get=1\n\n')).toContain('errno=0');

    const plain = path.join(dir, 'kmtest5.sock');
    writeFileSync(plain, 'not a socket');
    await expect(UapiServer.listen('kmtest5', new FakeDevice(snapshot), dir)).rejects.toThrow(/exists and is not a socket/);
    expect(existsSync(plain)).toBe(true);
  });

  it('close() removes the socket and drops open connections', async () => {
    const server = await UapiServer.listen('kmtest6', new FakeDevice(snapshot), dir);
    const idle = net.createConnection(server.path);
    await new Promise((r) => idle.once('connect', r));
    const closedIdle = new Promise((r) => idle.once('close', r));
    await server.close();
    await closedIdle;
    expect(existsSync(server.path)).toBe(false);
    await server.close(); // idempotent

  });

  it('creates the directory and refuses names that are not interface names', async () => {
    const sub = path.join(dir, 'sub', 'wireguard');
    const s = await serve('kmtest8', new FakeDevice(snapshot), sub);
    expect(statSync(sub).isDirectory()).toBe(true);
    expect(s.path).toBe(path.join(sub, 'kmtest8.sock'));
    for (const name of ['', '../x', 'a/b', 'toolonginterface', '..', 'sp ace']) {
      await expect(UapiServer.listen(name, new FakeDevice(snapshot), dir), name).rejects.toThrow(/not a valid interface name/);
    }
  });
});

// ---------------------------------------------------------------------------------------------

const isRoot = process.getuid?.() === 0;
const haveWg = spawnSync('wg', ['--version']).status === 0;

/** Run wg without blocking the event loop (the server answering it lives in this process). */
function wg(args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn('wg', args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, WG_HIDE_KEYS: 'always' } });
    let out = '';
    let err = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    c.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const timer = setTimeout(() => c.kill('SIGKILL'), 10_000);
    c.on('error', reject);
    c.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, out, err });
    });
  });
}

describe.skipIf(!isRoot || !haveWg)('UAPI interop with stock wg on /var/run/wireguard', () => {
  const name = `kmu${randomBytes(2).toString('hex')}`;
  let tmp = '';
  beforeAll(() => {
    tmp = mkdtempSync(path.join(tmpdir(), 'keymesh-uapi-wg-'));
  });
  const priv = hex(K1);
  const peerPub = hex(K2);
  const dev = new FakeDevice({
    ...snapshot,
    fwmark: 0x1234,
    peers: [{ ...snapshot.peers[0], presharedKey: hex('c3'.repeat(32)), lastHandshakeMs: 0 }],
  });
  let server: UapiServer | null = null;
  afterAll(async () => {
    await server?.close().catch(() => undefined);
    rmSync(path.join(UAPI_DIR, `${name}.sock`), { force: true });
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('wg finds the interface with no network device of that name', async () => {
    server = await UapiServer.listen(name, dev);
    expect(server.path).toBe(path.join(UAPI_DIR, `${name}.sock`));
    expect(spawnSync('ip', ['link', 'show', name]).status).not.toBe(0);
    const r = await wg(['show', 'interfaces']);
    expect(r.code).toBe(0);
    expect(r.out.trim().split(/\s+/)).toContain(name);
  });

  it('wg show prints the snapshot', async () => {
    const r = await wg(['show', name]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toContain(`interface: ${name}`);
    expect(r.out).toContain(`public key: ${encodeKey(x25519.getPublicKey(priv))}`);
    expect(r.out).toContain('private key: (hidden)');
    expect(r.out).toContain('listening port: 51820');
    expect(r.out).toContain('fwmark: 0x1234');
    expect(r.out).toContain(`peer: ${encodeKey(peerPub)}`);
    expect(r.out).toContain('preshared key: (hidden)');
    expect(r.out).toContain('endpoint: [2001:db8::1]:4500');
    expect(r.out).toContain('allowed ips: 10.0.0.2/32, fd00::2/128');
    expect(r.out).toContain('transfer: 123 B received, 1.00 TiB sent');
    expect(r.out).toContain('persistent keepalive: every 25 seconds');
    expect(r.out).not.toContain('latest handshake'); // 0 = never
  });

  it('wg show dump and wg showconf carry every field', async () => {
    const d = await wg(['show', name, 'dump']);
    expect(d.code).toBe(0);
    const lines = d.out.trim().split('\n').map((l) => l.split('\t'));
    expect(lines[0]).toEqual([encodeKey(priv), encodeKey(x25519.getPublicKey(priv)), '51820', '0x1234']);
    expect(lines[1]).toEqual([
      encodeKey(peerPub),
      encodeKey(hex('c3'.repeat(32))),
      '[2001:db8::1]:4500',
      '10.0.0.2/32,fd00::2/128',
      '0',
      '123',
      String(2n ** 40n),
      '25',
    ]);
    const c = await wg(['showconf', name]);
    expect(c.code).toBe(0);
    expect(c.out).toContain(`PrivateKey = ${encodeKey(priv)}`);
    expect(c.out).toContain('ListenPort = 51820');
    expect(c.out).toContain('FwMark = 0x1234');
    expect(c.out).toContain('AllowedIPs = 10.0.0.2/32, fd00::2/128');
    expect(c.out).toContain('Endpoint = [2001:db8::1]:4500');
    expect(c.out).toContain('PersistentKeepalive = 25');
  });

  it('wg set … peer … allowed-ips … endpoint … persistent-keepalive gives exactly one DeviceChange', async () => {
    const pub = decodeKey(encodeKey(x25519.getPublicKey(hex('d4'.repeat(32)))))!;
    dev.changes.length = 0;
    const r = await wg(['set', name, 'peer', encodeKey(pub), 'allowed-ips', '10.9.0.0/24,fd00::/64', 'endpoint', '192.0.2.1:51820', 'persistent-keepalive', '25']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(dev.changes).toEqual([
      {
        replacePeers: false,
        peers: [
          {
            publicKey: pub,
            remove: false,
            updateOnly: false,
            endpoint: { address: '192.0.2.1', port: 51820, family: 4 },
            persistentKeepalive: 25,
            replaceAllowedIps: true,
            allowedIps: [
              { addr: v4(10, 9, 0, 0), cidr: 24, family: 4 },
              { addr: hex('fd000000000000000000000000000000'), cidr: 64, family: 6 },
            ],
          },
        ],
      },
    ] satisfies DeviceChange[]);
    const show = await wg(['show', name, 'allowed-ips']);
    expect(show.out).toContain(`${encodeKey(pub)}\t10.9.0.0/24 fd00::/64`);

    dev.changes.length = 0;
    const rm = await wg(['set', name, 'peer', encodeKey(pub), 'remove']);
    expect(rm.code).toBe(0);
    expect(dev.changes).toEqual([
      { replacePeers: false, peers: [{ publicKey: pub, remove: true, updateOnly: false, replaceAllowedIps: false, allowedIps: [] }] },
    ] satisfies DeviceChange[]);
    expect((await wg(['show', name, 'peers'])).out).not.toContain(encodeKey(pub));
  });

  it('wg set private-key /dev/null, listen-port and fwmark off; wg setconf from a file', async () => {
    dev.changes.length = 0;
    expect((await wg(['set', name, 'private-key', '/dev/null', 'listen-port', '0', 'fwmark', 'off'])).code).toBe(0);
    expect(dev.changes).toEqual([{ privateKey: null, listenPort: 0, fwmark: 0, replacePeers: false, peers: [] }]);

    const conf = path.join(tmp, 'setconf.conf');
    const newPriv = hex('e5'.repeat(32));
    writeFileSync(
      conf,
      `[Interface]\nPrivateKey = ${encodeKey(newPriv)}\nListenPort = 12345\n\n[Peer]\nPublicKey = ${encodeKey(peerPub)}\nAllowedIPs = 10.0.0.0/8\nEndpoint = [2001:db8::2]:1\n`,
    );
    chmodSync(conf, 0o600);
    dev.changes.length = 0;
    const r = await wg(['setconf', name, conf]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(dev.changes).toHaveLength(1);
    expect(dev.changes[0]).toMatchObject({ privateKey: newPriv, listenPort: 12345, replacePeers: true });
    expect(dev.changes[0].peers[0]).toMatchObject({
      publicKey: peerPub,
      endpoint: { address: '2001:db8::2', port: 1, family: 6 },
      replaceAllowedIps: true,
      allowedIps: [{ addr: v4(10, 0, 0, 0), cidr: 8, family: 4 }],
    });
    const d = await wg(['show', name, 'dump']);
    expect(d.out.split('\n')[0].split('\t').slice(0, 2)).toEqual([encodeKey(newPriv), encodeKey(x25519.getPublicKey(newPriv))]);
    expect(formatAddress(dev.state.peers[0].allowedIps[0].addr)).toBe('10.0.0.0');
  });

  it('a refused set comes back to wg as an error', async () => {
    dev.failWith = new UapiError(98, 'in use');
    const r = await wg(['set', name, 'listen-port', '53']);
    dev.failWith = null;
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/Address already in use|Unable to modify interface/);
  });
});
