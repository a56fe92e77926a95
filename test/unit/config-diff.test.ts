/**
 * `keymesh reload`'s diff (src/config/diff.ts) and its application (src/io/config-reload.ts),
 * against the naive twin: throw the node away and build it again from the new file, as `up` does.
 *
 *   old file ──up──▶ engine ──reloadConfig(old, fresh)──▶ engine'        compare peers, allowed IPs,
 *   fresh file ──up──────────────────────────────────────▶ twin           keys, keepalives, flags, names
 *
 * On random pairs of configs (shared key, prefix, endpoint and name pools, so peers come and go,
 * prefixes move between peers and are listed twice, host bits are set): engine' and the twin must
 * hold the same; every peer in both files must still be the same Peer object (its sessions live
 * there); and the diff must name exactly the peers whose settings differ.
 */
import { describe, expect, it } from 'vitest';
import { Engine, type Sink } from '../../src/core/engine.js';
import { nobleCrypto } from '../../src/core/crypto.js';
import { encodeKey } from '../../src/config/keys.js';
import { parseWgQuick, type WgQuickConfig } from '../../src/config/wgquick.js';
import { diffConfigs, effectiveAllowedIps, isEmptyDiff, maskPrefix } from '../../src/config/diff.js';
import { addPeer, reloadConfig, type ReloadHost } from '../../src/io/config-reload.js';
import { PathTable } from '../../src/io/udp-path.js';
import { formatAddress } from '../../src/core/ip.js';
import { random, seeded } from './support/pair.js';
import { createNativeCrypto } from '../../src/io/native-crypto.js';

// OpenSSL's X25519 (each peer costs a static-static DH per engine built): noble's is ~50x slower
const crypto = createNativeCrypto() ?? nobleCrypto;

const sink: Sink = { send: () => undefined, writeTun: () => undefined, event: () => undefined };
const keyOf = (i: number) => nobleCrypto.generatePrivateKey(() => new Uint8Array(32).fill(i + 1));
const PRIV = [keyOf(100), keyOf(101)].map(encodeKey);
const PEERS = Array.from({ length: 7 }, (_, i) => encodeKey(nobleCrypto.publicKey(keyOf(i))));
const PSKS = [encodeKey(new Uint8Array(32).fill(7)), encodeKey(new Uint8Array(32).fill(9))];
const PREFIXES = ['10.0.0.0/24', '10.0.0.7/24', '10.0.1.1/32', '10.0.0.0/16', '0.0.0.0/0', 'fd00::/64', 'fd00::1/128', 'fd00:0:0:1::5/64', '192.168.3.0/24'];
const ENDPOINTS = ['192.0.2.1:51820', '192.0.2.2:51820', '192.0.2.1:51821', '[2001:db8::1]:51820'];
const NAMES = ['alice', 'bob', 'carol'];

function randomConfigText(rnd: () => number): string {
  const pick = <T,>(a: readonly T[]): T => a[Math.floor(rnd() * a.length)];
  const lines = ['[Interface]', `PrivateKey = ${rnd() < 0.9 ? PRIV[0] : PRIV[1]}`];
  if (rnd() < 0.5) lines.push(`ListenPort = ${pick([51820, 51821])}`);
  if (rnd() < 0.3) lines.push(`FwMark = ${pick(['0x10', '0x20', 'off'])}`);
  if (rnd() < 0.2) lines.push('IsLighthouse = true');
  if (rnd() < 0.2) lines.push('MssClamp = off');
  const order = PEERS.map((k, i) => ({ k, i, r: rnd() })).sort((a, b) => a.r - b.r);
  for (const { k } of order) {
    if (rnd() < 0.35) continue;
    lines.push('', '[Peer]', `PublicKey = ${k}`);
    if (rnd() < 0.3) lines.push(`PresharedKey = ${pick(PSKS)}`);
    const ips = PREFIXES.filter(() => rnd() < 0.2);
    if (ips.length) lines.push(`AllowedIPs = ${ips.join(', ')}`);
    const endpoint = rnd() < 0.6 ? pick(ENDPOINTS) : null;
    if (endpoint) lines.push(`Endpoint = ${endpoint}`);
    if (rnd() < 0.4) lines.push(`PersistentKeepalive = ${pick([0, 10, 25])}`);
    if (endpoint && rnd() < 0.25) lines.push('Lighthouse = true');
    if (rnd() < 0.3) lines.push(`Name = ${pick(NAMES)}`);
  }
  return lines.join('\n') + '\n';
}

/** A node as `up` builds it (runtime.ts bring-up), without sockets: its engine and path table. */
function build(cfg: WgQuickConfig): { engine: Engine; paths: PathTable } {
  const engine = new Engine(sink, { privateKey: cfg.interface.privateKey, random, crypto, isLighthouse: cfg.interface.isLighthouse, mssClamp: cfg.interface.mssClamp });
  const paths = new PathTable();
  for (const p of cfg.peers) {
    const ep = p.endpoint ? paths.fromLiteral(p.endpoint.host, p.endpoint.port) : null;
    addPeer(engine, p, p.allowedIps, ep, 0);
  }
  return { engine, paths };
}

/** What a peer holds that a config sets (the endpoint separately: a removed Endpoint keeps the address). */
function model(engine: Engine) {
  const out = new Map<string, object>();
  for (const p of engine.listPeers()) {
    out.set(encodeKey(p.publicKey), {
      psk: Buffer.from(p.handshake.presharedKey).toString('hex'),
      ips: engine
        .allowedIpsOf(p)
        .map((a) => `${formatAddress(a.addr)}/${a.cidr}`)
        .sort(),
      keepalive: p.persistentKeepalive,
      lighthouse: p.lighthouse,
      name: p.name,
    });
  }
  return out;
}

function fakeHost(engine: Engine, paths: PathTable, port: number): ReloadHost & { calls: string[] } {
  const calls: string[] = [];
  let listenPort = port;
  const names = { forget: () => undefined, remember: () => undefined } as unknown as ReloadHost['names'];
  return {
    calls,
    engine,
    paths,
    names,
    name: 'test0',
    get listenPort() {
      return listenPort;
    },
    log: () => undefined,
    now: () => 0,
    openUdp: (p) => ({ fd: -1, port: p }) as never,
    useUdpSocket: (u) => {
      listenPort = (u as unknown as { port: number }).port;
      calls.push(`port ${listenPort}`);
    },
    discardUdp: () => undefined,
    setFwmark: (m) => void calls.push(`fwmark ${m}`),
    addAddress: async (a) => void calls.push(`+addr ${a.addr}`),
    removeAddress: async (a) => void calls.push(`-addr ${a.addr}`),
    setDns: async () => undefined,
    setPortMapping: async () => undefined,
    syncRoutes: async () => void calls.push('routes'),
    flushAndArm: () => undefined,
  };
}

describe('config reload: the diff against the naive twin (rebuild everything)', () => {
  it('600 random pairs of configs: same peers and settings as a fresh build, unchanged peers untouched', async () => {
    const rnd = seeded(19);
    let changedPeers = 0;
    let movedPrefixes = 0;
    for (let n = 0; n < 600; n++) {
      const old = parseWgQuick(randomConfigText(rnd), 'old.conf');
      const fresh = parseWgQuick(randomConfigText(rnd), 'new.conf');
      const node = build(old);
      const before = new Map(node.engine.listPeers().map((p) => [encodeKey(p.publicKey), p]));
      const modelBefore = model(node.engine);
      const endpointsBefore = new Map(node.engine.listPeers().map((p) => [encodeKey(p.publicKey), p.endpoint.path?.id ?? null]));
      const d = diffConfigs(old, fresh);
      const host = fakeHost(node.engine, node.paths, old.interface.listenPort ?? 40000);
      const r = await reloadConfig(host, old, fresh);
      const twin = build(fresh);

      // same peers, same settings
      expect(model(node.engine)).toEqual(model(twin.engine));
      expect(encodeKey(node.engine.privateKey!)).toBe(encodeKey(fresh.interface.privateKey));
      expect(node.engine.isLighthouse).toBe(fresh.interface.isLighthouse);
      expect(node.engine.mssClamp).toBe(fresh.interface.mssClamp);
      if (fresh.interface.listenPort !== undefined) expect(host.listenPort).toBe(fresh.interface.listenPort);
      expect(r.restarted).toBe(d.privateKey !== undefined || (d.listenPort !== undefined && d.listenPort !== (old.interface.listenPort ?? 40000)));
      // endpoints: the file's where it has one; where it no longer has one, the address in use stays
      for (const p of fresh.peers) {
        const k = encodeKey(p.publicKey);
        const got = node.engine.getPeer(p.publicKey)!.endpoint.path?.id ?? null;
        if (p.endpoint) expect(got).toBe(twin.engine.getPeer(p.publicKey)!.endpoint.path?.id);
        else expect(got).toBe(endpointsBefore.get(k) ?? null);
      }
      // a peer in both files is the same Peer (its sessions and paths live on it)
      const changed = new Set(d.changed.map((c) => encodeKey(c.publicKey)));
      for (const p of fresh.peers) {
        const k = encodeKey(p.publicKey);
        if (before.has(k)) expect(node.engine.getPeer(p.publicKey)).toBe(before.get(k));
      }
      // the diff names exactly the peers whose settings (or configured endpoint) differ
      const modelAfter = model(twin.engine);
      for (const p of fresh.peers) {
        const k = encodeKey(p.publicKey);
        if (!modelBefore.has(k)) continue;
        const was = old.peers.find((q) => encodeKey(q.publicKey) === k)!;
        const epChanged = (was.endpoint ? `${was.endpoint.host}:${was.endpoint.port}` : null) !== (p.endpoint ? `${p.endpoint.host}:${p.endpoint.port}` : null);
        const differs = JSON.stringify(modelBefore.get(k)) !== JSON.stringify(modelAfter.get(k)) || epChanged || (was.persistentKeepalive ?? 0) !== (p.persistentKeepalive ?? 0);
        expect(changed.has(k), `peer ${k} in the diff`).toBe(differs);
        if (differs) changedPeers++;
        const c = d.changed.find((x) => encodeKey(x.publicKey) === k);
        if (c?.allowedIps) movedPrefixes += c.allowedIps.add.length;
      }
      expect(d.removed.map(encodeKey).sort()).toEqual([...modelBefore.keys()].filter((k) => !modelAfter.has(k)).sort());
      expect(d.added.map((a) => encodeKey(a.fresh.publicKey)).sort()).toEqual([...modelAfter.keys()].filter((k) => !modelBefore.has(k)).sort());
      // the same file twice: nothing to do
      expect(isEmptyDiff(diffConfigs(fresh, fresh))).toBe(true);
    }
    // the random configs did exercise what they are for
    expect(changedPeers).toBeGreaterThan(300);
    expect(movedPrefixes).toBeGreaterThan(150);
  });

  it('a prefix listed by two peers is the later one’s, as `wg setconf` leaves it', () => {
    const cfg = parseWgQuick(
      ['[Interface]', `PrivateKey = ${PRIV[0]}`, '[Peer]', `PublicKey = ${PEERS[0]}`, 'AllowedIPs = 10.0.0.5/24, 10.1.0.0/16', '[Peer]', `PublicKey = ${PEERS[1]}`, 'AllowedIPs = 10.0.0.0/24'].join('\n'),
      'x.conf',
    );
    const eff = effectiveAllowedIps(cfg);
    expect([...eff.values()].map((m) => [...m.keys()])).toEqual([['10.1.0.0/16'], ['10.0.0.0/24']]);
    expect(maskPrefix(new Uint8Array([0xfd, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5]), 64, 6).text).toBe('fd00:0:0:1::/64');
  });

  it('a peer removed with `wg set … remove` and still in the file comes back; an unchanged file changes nothing', async () => {
    const text = ['[Interface]', `PrivateKey = ${PRIV[0]}`, 'ListenPort = 51820', '[Peer]', `PublicKey = ${PEERS[0]}`, 'AllowedIPs = 10.0.0.1/32', 'Endpoint = 192.0.2.1:51820', '[Peer]', `PublicKey = ${PEERS[1]}`, 'AllowedIPs = 10.0.0.2/32'].join('\n');
    const cfg = parseWgQuick(text, 'x.conf');
    const node = build(cfg);
    const host = fakeHost(node.engine, node.paths, 51820);
    const same = await reloadConfig(host, cfg, parseWgQuick(text, 'x.conf'));
    expect(same.done).toEqual(['nothing changed']);
    expect(same.restarted).toBe(false);
    expect(host.calls).toEqual(['routes']);
    node.engine.removePeer(cfg.peers[1].publicKey);
    const back = await reloadConfig(host, cfg, parseWgQuick(text, 'x.conf'));
    expect(back.done[0]).toMatch(/^peer .* added$/);
    expect(node.engine.listPeers()).toHaveLength(2);
  });

  it('a new ListenPort and PrivateKey restart socket and identity, and say so; a port in use changes nothing', async () => {
    const base = (port: number, key: string, ep: string) => ['[Interface]', `PrivateKey = ${key}`, `ListenPort = ${port}`, '[Peer]', `PublicKey = ${PEERS[0]}`, `Endpoint = ${ep}`].join('\n');
    const cfg = parseWgQuick(base(51820, PRIV[0], '192.0.2.1:51820'), 'x.conf');
    const node = build(cfg);
    const host = fakeHost(node.engine, node.paths, 51820);
    const r = await reloadConfig(host, cfg, parseWgQuick(base(51900, PRIV[1], '192.0.2.1:51820'), 'x.conf'));
    expect(r.restarted).toBe(true);
    expect(r.done.join('\n')).toMatch(/restarted the UDP socket: ListenPort changed 51820 → 51900/);
    expect(r.done.join('\n')).toMatch(/restarted the device's identity: PrivateKey changed/);
    // a port that cannot be opened: refused before anything (here: the new endpoint) changes
    host.openUdp = () => {
      throw new Error('EADDRINUSE');
    };
    const peer = node.engine.getPeer(cfg.peers[0].publicKey)!;
    const path = peer.endpoint.path;
    await expect(reloadConfig(host, r.config, parseWgQuick(base(51999, PRIV[1], '192.0.2.9:51820'), 'x.conf'))).rejects.toThrow(/ListenPort = 51999: EADDRINUSE/);
    expect(peer.endpoint.path).toBe(path);
    expect(host.listenPort).toBe(51900);
  });

  it('an Endpoint that does not resolve is refused with its file:line, and nothing changes', async () => {
    const text = (ep: string, ips: string) => ['[Interface]', `PrivateKey = ${PRIV[0]}`, '', '[Peer]', `PublicKey = ${PEERS[0]}`, `AllowedIPs = ${ips}`, `Endpoint = ${ep}`].join('\n');
    const cfg = parseWgQuick(text('192.0.2.1:51820', '10.0.0.1/32'), 'x.conf');
    const node = build(cfg);
    const host = fakeHost(node.engine, node.paths, 51820);
    await expect(reloadConfig(host, cfg, parseWgQuick(text('no-such-host.invalid:51820', '10.0.0.2/32'), 'x.conf'))).rejects.toThrow(/^x\.conf:4: Endpoint: cannot resolve endpoint host "no-such-host\.invalid"/);
    expect(model(node.engine).get(PEERS[0])).toMatchObject({ ips: ['10.0.0.1/32'] });
  });
});
