/**
 * A gateway's stock WireGuard devices: the devices file (config/devices.ts) round trip and its
 * errors; the choice of a free address and a clear error when a subnet is full; the device's
 * printed configuration read back by keymesh's own wg-quick parser; and on the fake network
 * (io/devices.ts over a real engine) a stock WireGuard device that reaches the mesh through the
 * gateway and nothing outside it (device-guard.ts), is published to the lighthouse as
 * NAME.GATEWAY, and whose traffic ends the moment it is removed.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { allocateAddress, deviceConfigText, parseDevices, serializeDevices, type Device } from '../../src/config/devices.js';
import { encodeKey } from '../../src/config/keys.js';
import { ConfigError, parseWgQuick } from '../../src/config/wgquick.js';
import { nobleCrypto } from '../../src/core/crypto.js';
import { formatAddress } from '../../src/core/ip.js';
import { CertAuthority } from '../../src/core/mesh-authority.js';
import { configFromAnswer, formatDeviceList } from '../../src/cli/device.js';
import { GatewayDevices } from '../../src/io/devices.js';
import { ipBytes, ipPacket, Net, random, type Node } from './support/pair.js';
import { enc, member, OFFSET, prefix, TestCa, type Member } from './support/mesh.js';

const key = () => nobleCrypto.publicKey(nobleCrypto.generatePrivateKey(random));
const texts = (xs: Uint8Array[]) => xs.map(formatAddress);

describe('devices file', () => {
  it('round trips: serialize, parse, the same devices', () => {
    const devices: Device[] = [
      { name: 'phone', publicKey: key(), presharedKey: random(32), addresses: [ipBytes('10.99.200.1'), ipBytes('fd99:0:0:c8::1')] },
      { name: 'tablet', publicKey: key(), addresses: [ipBytes('10.99.200.2')] },
    ];
    const text = serializeDevices(devices);
    const back = parseDevices(text, 'wg0.devices');
    expect(back.map((d) => ({ ...d, publicKey: encodeKey(d.publicKey), presharedKey: d.presharedKey && encodeKey(d.presharedKey), addresses: texts(d.addresses) }))).toEqual(
      devices.map((d) => ({ ...d, publicKey: encodeKey(d.publicKey), presharedKey: d.presharedKey && encodeKey(d.presharedKey), addresses: texts(d.addresses) })),
    );
    expect(serializeDevices(back)).toBe(text);
    expect(parseDevices(serializeDevices([]), 'f')).toEqual([]);
  });

  it('bad lines are FILE:LINE errors that never echo a key', () => {
    const k = encodeKey(key());
    const bad = (text: string, line: number, what: RegExp) => {
      let e: unknown;
      try {
        parseDevices(text, 'gw.devices');
      } catch (x) {
        e = x;
      }
      expect(e).toBeInstanceOf(ConfigError);
      expect((e as ConfigError).message).toMatch(new RegExp(`^gw\\.devices:${line}: `));
      expect((e as ConfigError).message).toMatch(what);
      expect((e as ConfigError).message).not.toContain(k.slice(0, 20));
    };
    bad(`[Device]\nName = phone\nPublicKey = ${k}\nAddress = 10.99.200.0/24\n`, 4, /is a network/);
    bad(`[Device]\nName = Phone!\n`, 2, /not a name/);
    bad(`[Device]\nName = phone\nAddress = 10.99.200.2\n`, 1, /no PublicKey/);
    bad(`[Device]\nName = a\nPublicKey = ${k}\nAddress = 10.99.200.2\n[Device]\nName = b\nPublicKey = ${k}\nAddress = 10.99.200.3\n`, 5, /same PublicKey as the one at line 1/);
    bad(`[Device]\nName = a\nPublicKey = ${encodeKey(key())}\nAddress = 10.99.200.2\n[Device]\nName = b\nPublicKey = ${encodeKey(key())}\nAddress = 10.99.200.2\n`, 5, /same Address/);
    bad(`Name = phone\n`, 1, /outside any section/);
    bad(`[Peer]\n`, 1, /only \[Device\]/);
    bad(`[Device]\nEndpoint = ${k}\n`, 2, /unknown key/);
  });
});

describe('device addresses', () => {
  const subnets = [prefix('10.99.200.0/30'), prefix('fd99:0:0:c8::/64')];
  it('the first free one: not the network address, not taken, one per family', () => {
    expect(formatAddress(allocateAddress(subnets, [], 4))).toBe('10.99.200.1');
    expect(formatAddress(allocateAddress(subnets, [ipBytes('10.99.200.1'), ipBytes('10.99.0.1')], 4))).toBe('10.99.200.2');
    expect(formatAddress(allocateAddress(subnets, [ipBytes('fd99:0:0:c8::1')], 6))).toBe('fd99:0:0:c8::2');
  });

  it('a full subnet (network and broadcast never given out) is a clear error', () => {
    expect(() => allocateAddress(subnets, [ipBytes('10.99.200.1'), ipBytes('10.99.200.2')], 4)).toThrow(/no free IPv4 address left in 10\.99\.200\.0\/30 \(2 in use\)/);
    expect(() => allocateAddress([prefix('fd99:0:0:c8::/64')], [], 4)).toThrow(/no IPv4 subnet/);
    // a second subnet is used when the first is full
    expect(formatAddress(allocateAddress([prefix('10.99.200.0/30'), prefix('10.99.201.0/24')], [ipBytes('10.99.200.1'), ipBytes('10.99.200.2')], 4))).toBe('10.99.201.1');
  });
});

describe("the device's configuration", () => {
  it("is read back by keymesh's own wg-quick parser with every field a WireGuard app needs", () => {
    const priv = nobleCrypto.generatePrivateKey(random);
    const gwKey = key();
    const psk = random(32);
    const text = configFromAnswer(
      {
        name: 'phone',
        addresses: ['10.99.200.1', 'fd99:0:0:c8::1'],
        gateway: { name: 'gw', publicKey: encodeKey(gwKey), dns: ['10.99.0.9', 'fd99::9'], domain: 'mesh', meshName: 'lab mesh', networks: ['10.99.0.0/16', 'fd99::/48'] },
      },
      priv,
      psk,
      'gw.example.net:51820',
    );
    const c = parseWgQuick(text, 'phone.conf');
    expect(encodeKey(c.interface.privateKey)).toBe(encodeKey(priv));
    expect(c.interface.addresses).toEqual([
      { addr: '10.99.200.1', cidr: 32, family: 4 },
      { addr: 'fd99:0:0:c8::1', cidr: 128, family: 6 },
    ]);
    expect(c.interface.dns).toEqual(['10.99.0.9', 'fd99::9']);
    expect(c.interface.dnsSearch).toEqual(['mesh']);
    expect(c.peers).toHaveLength(1);
    const p = c.peers[0];
    expect(encodeKey(p.publicKey)).toBe(encodeKey(gwKey));
    expect(encodeKey(p.presharedKey!)).toBe(encodeKey(psk));
    expect(p.endpoint).toEqual({ host: 'gw.example.net', port: 51820 });
    expect(p.allowedIps.map((a) => a.text)).toEqual(['10.99.0.0/16', 'fd99::/48']);
    expect(p.persistentKeepalive).toBe(25);
    // the same text as deviceConfigText gives (what the QR code carries)
    expect(text).toContain('# phone.gw.mesh');
  });
});

// ───────────────────────────── on the fake network ─────────────────────────────

/**
 *   phone (stock WireGuard) ──▶ gw (member, subnets 10.99.200.0/24, fd99:0:0:c8::/64) ──▶ m1
 *                                 │ lighthouse lh
 */
function gatewayLab(o: { mayLeave?: boolean } = {}) {
  const net = new Net();
  const ca = new TestCa();
  const lh = member(net, ca, 'lh', 250, [], { isLighthouse: true });
  const m1 = member(net, ca, 'm1', 1, [lh]);
  const gwNode = net.add('gw', { wallClockOffset: OFFSET, devicesMayLeave: o.mayLeave });
  const gwCert = ca.sign(gwNode.publicKey, 'gw', 9, { subnets: ['10.99.200.0/24', 'fd99:0:0:c8::/64'] });
  gwNode.engine.setMeshAuthority(new CertAuthority(ca.ca, gwCert), net.now);
  gwNode.engine.upsertPeer({ publicKey: lh.node.publicKey, endpoint: lh.node.path, lighthouse: true }, net.now);
  gwNode.engine.setPersistentKeepalive(gwNode.engine.getPeer(lh.node.publicKey)!, 10, net.now);
  net.deliver();
  const gw: Member = { node: gwNode, i: 9, cert: gwCert, v4: '10.99.0.9', v6: 'fd99::9' };
  const dir = mkdtempSync(path.join(tmpdir(), 'keymesh-devices-'));
  const file = path.join(dir, 'gw.devices');
  const logs: string[] = [];
  const host = {
    engine: gwNode.engine,
    name: 'kmtest-nodev0', // no such interface: the forwarding sysctls are not written
    log: (l: string) => logs.push(l),
    now: () => net.now,
    flushAndArm: () => undefined,
    syncRoutes: async () => undefined,
  };
  const devices = new GatewayDevices(host, file);
  return { net, ca, lh, m1, gw, dir, file, logs, devices };
}

/** A stock WireGuard device (no extension channel) configured from what `device add` answered. */
function phoneFor(net: Net, gw: Node, privateKey: Uint8Array, psk: Uint8Array): Node {
  const phone = net.add('phone', { extensions: false, privateKey });
  phone.engine.upsertPeer({ publicKey: gw.publicKey, presharedKey: psk, endpoint: gw.path, allowedIps: [{ addr: ipBytes('10.99.0.0'), cidr: 16 }] }, net.now);
  return phone;
}

const payloads = (n: Node) => n.tun.map((p) => Buffer.from(p.subarray(20)).toString());

let cleanup: string[] = [];
afterEach(() => {
  for (const d of cleanup) rmSync(d, { recursive: true, force: true });
  cleanup = [];
});

describe('a gateway and its devices on the fake network', () => {
  it('device add: an address in the subnets, a peer at once, the file 0600; the phone reaches the gateway, and is published as phone.gw', async () => {
    const { net, m1, gw, lh, dir, file, devices } = gatewayLab();
    cleanup.push(dir);
    await devices.start();
    const priv = nobleCrypto.generatePrivateKey(random);
    const psk = random(32);
    const added = await devices.add({ name: 'phone', publicKey: encodeKey(nobleCrypto.publicKey(priv)), presharedKey: encodeKey(psk) });
    expect(added.addresses).toEqual(['10.99.200.1', 'fd99:0:0:c8::1']);
    expect(added.gateway).toMatchObject({ name: 'gw', dns: ['10.99.0.9', 'fd99::9'], domain: 'mesh', networks: ['10.99.0.0/16', 'fd99::/48'] });
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(parseDevices(readFileSync(file, 'utf8'), file).map((d) => d.name)).toEqual(['phone']);
    // a second device gets the next address; a taken name or address is refused
    const second = await devices.add({ name: 'tablet', publicKey: encodeKey(key()) });
    expect(second.addresses).toEqual(['10.99.200.2', 'fd99:0:0:c8::2']);
    await expect(devices.add({ name: 'phone', publicKey: encodeKey(key()) })).rejects.toThrow(/already a device called phone/);
    await expect(devices.add({ name: 'x', publicKey: encodeKey(key()), ip: '10.99.200.2' })).rejects.toThrow(/in use/);
    await expect(devices.add({ name: 'y', publicKey: encodeKey(key()), ip: '10.99.0.77' })).rejects.toThrow(/not inside this gateway's subnets/);
    expect(formatDeviceList(devices.list())).toMatch(/^NAME\s+ADDRESS\s+PUBLIC KEY\s+LAST HANDSHAKE\nphone\.gw\.mesh\s+10\.99\.200\.1, fd99:0:0:c8::1\s+\S{44}\s+never\n/);

    const phone = phoneFor(net, gw.node, priv, psk);
    phone.engine.handleTunPacket(ipPacket('10.99.200.1', '10.99.0.9', enc.encode('hello gateway')), net.now);
    net.deliver();
    expect(payloads(gw.node)).toContain('hello gateway');
    expect(devices.list()[0].lastHandshake).toBeGreaterThan(0);
    // the lighthouse answers phone.gw with the gateway
    m1.node.engine.lookupName('phone.gw', net.now);
    net.deliver();
    const ans = m1.node.events.find((e) => e.type === 'name-answer' && e.name === 'phone.gw') as any;
    expect(ans?.found).toBe(true);
    expect(Buffer.from(ans.key).equals(Buffer.from(gw.node.publicKey))).toBe(true);
    expect(texts(ans.addresses)).toEqual(['10.99.200.1', 'fd99:0:0:c8::1']);
    expect(lh.node.engine.stats().lighthouse.namesRefused).toBe(0);
    // and a restart (a new GatewayDevices over the same file) brings the devices back
    const again = new GatewayDevices({ engine: net.add('gw2', { wallClockOffset: OFFSET }).engine, name: 'kmtest-nodev0', log: () => undefined, now: () => net.now, flushAndArm: () => undefined, syncRoutes: async () => undefined }, file);
    await again.start();
    expect(again.list().map((d) => d.name)).toEqual(['phone', 'tablet']);
  });

  it("a device reaches the mesh's networks only (deviceOutsideMesh both ways), unless DevicesMayLeave", async () => {
    for (const mayLeave of [false, true]) {
      const { net, gw, dir, devices } = gatewayLab({ mayLeave });
      cleanup.push(dir);
      await devices.start();
      const priv = nobleCrypto.generatePrivateKey(random);
      const psk = random(32);
      await devices.add({ name: 'phone', publicKey: encodeKey(nobleCrypto.publicKey(priv)), presharedKey: encodeKey(psk) });
      const phone = phoneFor(net, gw.node, priv, psk);
      phone.engine.upsertPeer({ publicKey: gw.node.publicKey, allowedIps: [{ addr: ipBytes('0.0.0.0'), cidr: 0 }] }, net.now);
      phone.engine.handleTunPacket(ipPacket('10.99.200.1', '10.99.0.1', enc.encode('to m1')), net.now);
      phone.engine.handleTunPacket(ipPacket('10.99.200.1', '198.51.100.7', enc.encode('to the Internet')), net.now);
      net.deliver();
      // the host's forwarding is what takes 'to m1' on; the gateway's TUN device is where it shows
      expect(payloads(gw.node)).toContain('to m1');
      expect(payloads(gw.node).includes('to the Internet'), `mayLeave=${mayLeave}`).toBe(mayLeave);
      // toward the device: from the mesh, and from outside it (something the host forwarded)
      gw.node.engine.handleTunPacket(ipPacket('10.99.0.1', '10.99.200.1', enc.encode('from m1')), net.now);
      gw.node.engine.handleTunPacket(ipPacket('198.51.100.7', '10.99.200.1', enc.encode('from the Internet')), net.now);
      net.deliver();
      expect(payloads(phone)).toContain('from m1');
      expect(payloads(phone).includes('from the Internet')).toBe(mayLeave);
      expect(gw.node.engine.stats().drops.deviceOutsideMesh).toBe(mayLeave ? 0 : 2);
    }
  });

  it('device remove: its session ends at once, it is gone from the file and its name from the lighthouse', async () => {
    const { net, m1, gw, dir, file, devices } = gatewayLab();
    cleanup.push(dir);
    await devices.start();
    const priv = nobleCrypto.generatePrivateKey(random);
    const psk = random(32);
    await devices.add({ name: 'phone', publicKey: encodeKey(nobleCrypto.publicKey(priv)), presharedKey: encodeKey(psk) });
    const phone = phoneFor(net, gw.node, priv, psk);
    phone.engine.handleTunPacket(ipPacket('10.99.200.1', '10.99.0.9', enc.encode('before')), net.now);
    net.deliver();
    expect(payloads(gw.node)).toContain('before');
    await devices.remove({ name: 'phone' });
    expect(gw.node.engine.getPeer(nobleCrypto.publicKey(priv))).toBeUndefined();
    expect(parseDevices(readFileSync(file, 'utf8'), file)).toEqual([]);
    await expect(devices.remove({ name: 'phone' })).rejects.toThrow(/no device called phone/);
    const unknownBefore = gw.node.engine.stats().drops.unknownIndex;
    phone.engine.handleTunPacket(ipPacket('10.99.200.1', '10.99.0.9', enc.encode('after')), net.now);
    net.deliver();
    expect(payloads(gw.node)).not.toContain('after');
    expect(gw.node.engine.stats().drops.unknownIndex).toBeGreaterThan(unknownBefore);
    // and a new handshake from it gets it nowhere (no certificate: never admitted)
    net.advance(6000);
    phone.engine.handleTunPacket(ipPacket('10.99.200.1', '10.99.0.9', enc.encode('later')), net.now);
    net.deliver();
    net.advance(6000);
    net.deliver();
    expect(payloads(gw.node)).not.toContain('later');
    m1.node.engine.lookupName('phone.gw', net.now);
    net.deliver();
    expect((m1.node.events.find((e) => e.type === 'name-answer' && e.name === 'phone.gw') as any)?.found).toBe(false);
  });
});

describe('deviceConfigText', () => {
  it('names the device as the mesh does and carries no key but the ones given', () => {
    const t = deviceConfigText({ name: 'phone', gatewayName: 'gw', meshName: 'm', privateKey: random(32), addresses: [ipBytes('10.99.200.1')], dns: [ipBytes('10.99.0.9')], domain: 'corp.mesh', gatewayPublicKey: key(), endpoint: '[2001:db8::1]:51820', allowedIps: [prefix('10.99.0.0/16')] });
    expect(t).toContain('# phone.gw.corp.mesh');
    expect(t).not.toContain('PresharedKey');
    expect(parseWgQuick(t, 'x').peers[0].endpoint).toEqual({ host: '2001:db8::1', port: 51820 });
  });
});
