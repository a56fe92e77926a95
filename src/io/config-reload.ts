/**
 * `keymesh reload NAME` and SIGHUP: the re-read config file applied to the running node, change by
 * change (src/config/diff.ts says what changed), so that peers whose settings did not change keep
 * their sessions, paths and lighthouse registrations.
 *
 *   file ──loadWgQuick──▶ fresh ──diffConfigs(running, fresh)──▶ diff
 *        ──prepare: resolve new endpoints, open a new socket, check the mesh (may throw: nothing changed)
 *        ──apply: key, peers removed / changed / added, interface, mesh, routes (cannot fail half-way)
 *
 * Everything that can fail happens in `prepare`, before the node is touched: a bad line (the
 * parser's file:line), an Endpoint that does not resolve, a ListenPort already in use, a
 * certificate that no longer fits. So a reload is applied whole or not at all.
 *
 * What restarts: a new PrivateKey ends every session (the sessions were keyed to the old one) and
 * handshakes start again under the new key; a new ListenPort replaces the UDP socket (sessions
 * stay: peers follow our packets to the new port, as they follow any roaming peer). Both are said
 * in the log and in the reload's answer. MTU, Table and ForgetAfter changes need `keymesh down`
 * and `up`, and the answer says so.
 *
 * The running side of the comparison is the file as last applied, less the peers no longer in the
 * engine (removed with `wg set … remove`: a reload puts them back). Peers added with `wg set` are
 * not in any file and are left alone; `wg syncconf` is the tool that makes the device match a file.
 *
 * May touch: the engine's peers, keys and flags, the endpoint host names, and what the runtime
 * offers through ReloadHost (socket, fwmark, addresses, DNS, port mappings, routes).
 */
import type { Engine } from '../core/engine.js';
import { REGISTRATION_KEEPALIVE } from '../core/lighthouse.js';
import type { Peer } from '../core/peer.js';
import { diffConfigs, isEmptyDiff, peerLabel } from '../config/diff.js';
import { ConfigError, resolveEndpoint, type PeerConfig, type WgQuickConfig } from '../config/wgquick.js';
import { reloadMesh } from './mesh-reload.js';
import type { EndpointNames } from './reresolve.js';
import type { PathTable, UdpPath } from './udp-path.js';
import type * as native from './native.js';

/** What a reload uses of the runtime. */
export interface ReloadHost {
  readonly engine: Engine;
  readonly paths: PathTable;
  readonly names: EndpointNames;
  readonly name: string;
  readonly listenPort: number;
  log(line: string): void;
  now(): number;
  /** A UDP socket on `port`, opened but not in use yet (throws, e.g. EADDRINUSE). */
  openUdp(port: number): native.UdpHandle;
  /** Put a socket from openUdp() in place of the one in use. */
  useUdpSocket(udp: native.UdpHandle): void;
  /** Close a socket from openUdp() that will not be used. */
  discardUdp(udp: native.UdpHandle): void;
  setFwmark(mark: number): void;
  addAddress(a: { addr: string; cidr: number; family: 4 | 6 }): Promise<void>;
  removeAddress(a: { addr: string; cidr: number; family: 4 | 6 }): Promise<void>;
  setDns(dns: string[], search: string[]): Promise<void>;
  setPortMapping(on: boolean): Promise<void>;
  syncRoutes(): Promise<void>;
  flushAndArm(): void;
}

export interface ReloadResult {
  /** One line per thing done, for the log and the reload command's answer. */
  done: string[];
  /** Something was restarted (PrivateKey or ListenPort). */
  restarted: boolean;
  /** The config the node now runs. */
  config: WgQuickConfig;
}

/** The keepalive a peer runs with: its own, or a lighthouse's registration keepalive. */
function keepaliveOf(p: PeerConfig): number {
  return p.persistentKeepalive ?? (p.lighthouse ? REGISTRATION_KEEPALIVE : 0);
}

/** The running side of the comparison: the file as last applied, less peers gone from the engine. */
export function runningConfig(engine: Engine, applied: WgQuickConfig): WgQuickConfig {
  return { ...applied, peers: applied.peers.filter((p) => engine.getPeer(p.publicKey) !== undefined) };
}

/** Apply `fresh` to the node, which runs `applied`. Throws (having changed nothing) when it cannot. */
export async function reloadConfig(rt: ReloadHost, applied: WgQuickConfig, fresh: WgQuickConfig): Promise<ReloadResult> {
  const engine = rt.engine;
  const d = diffConfigs(runningConfig(engine, applied), fresh);
  const done: string[] = [];

  // ── prepare: everything that can fail, before anything changes ──
  if (applied.interface.mesh && !fresh.interface.mesh) throw new Error('the file no longer has Certificate and CA: restart the node (keymesh down, then up) to leave the mesh');
  const resolved = new Map<PeerConfig, UdpPath>();
  const toResolve = [...d.added.map((a) => a.fresh).filter((p) => p.endpoint), ...d.changed.filter((c) => c.endpoint).map((c) => c.fresh)];
  for (const p of toResolve) {
    try {
      const r = await resolveEndpoint(p.endpoint!);
      resolved.set(p, rt.paths.fromLiteral(r.address, r.port));
    } catch (e) {
      throw new ConfigError(fresh.file, p.line, `Endpoint: ${(e as Error).message}`);
    }
  }
  let socket: native.UdpHandle | null = null;
  if (d.listenPort !== undefined && d.listenPort !== rt.listenPort) {
    try {
      socket = rt.openUdp(d.listenPort);
    } catch (e) {
      throw new Error(`ListenPort = ${d.listenPort}: ${(e as Error).message}`);
    }
  }

  // ── apply: nothing below throws on the node's account ──
  let restarted = false;
  try {
    if (socket) {
      const was = rt.listenPort;
      rt.useUdpSocket(socket);
      socket = null;
      restarted = true;
      done.push(`restarted the UDP socket: ListenPort changed ${was} → ${rt.listenPort} (sessions kept; peers follow the new port)`);
    }
    if (d.privateKey) {
      const n = engine.listPeers().length;
      engine.setPrivateKey(d.privateKey);
      restarted = true;
      done.push(`restarted the device's identity: PrivateKey changed, ${n} session(s) dropped, handshakes start again under the new key`);
    }
  } finally {
    if (socket) rt.discardUdp(socket);
  }
  const now = rt.now();
  for (const key of d.removed) {
    const peer = engine.getPeer(key);
    if (!peer) continue;
    rt.names.forget(peer);
    engine.removePeer(key);
    done.push(`peer ${peerLabel(peer)} removed`);
  }
  // every allowed IP taken away before any is given, so a prefix that moves lands where it should
  for (const c of d.changed) {
    const peer = engine.getPeer(c.publicKey);
    if (peer && c.allowedIps) for (const a of c.allowedIps.remove) engine.disallowIp(peer, a.addr, a.cidr);
  }
  for (const c of d.changed) {
    const peer = engine.getPeer(c.publicKey);
    if (!peer) continue;
    const what: string[] = [];
    if (c.presharedKey !== undefined) {
      // as with `wg set`: the current session stays; the next handshake mixes the new key in
      engine.upsertPeer({ publicKey: c.publicKey, presharedKey: c.presharedKey }, now);
      what.push(c.presharedKey ? 'PresharedKey changed' : 'PresharedKey removed');
    }
    if (c.allowedIps) {
      for (const a of c.allowedIps.add) engine.allowIp(peer, a.addr, a.cidr);
      what.push(`AllowedIPs ${[...c.allowedIps.add.map((a) => `+${a.text}`), ...c.allowedIps.remove.map((a) => `-${a.text}`)].join(' ')}`);
    }
    if (c.endpoint !== undefined) {
      rt.names.forget(peer);
      if (c.endpoint) {
        engine.setEndpoint(peer, resolved.get(c.fresh)!);
        rt.names.remember(peer, c.endpoint);
        what.push(`Endpoint ${c.endpoint.host}:${c.endpoint.port}`);
      } else what.push('Endpoint removed (the address in use is kept)');
    }
    if (c.lighthouse !== undefined) {
      peer.lighthouse = c.lighthouse;
      what.push(c.lighthouse ? 'now a lighthouse' : 'no longer a lighthouse');
    }
    if (c.persistentKeepalive !== undefined || c.lighthouse !== undefined) {
      engine.setPersistentKeepalive(peer, keepaliveOf(c.fresh), now);
      if (c.persistentKeepalive !== undefined) what.push(c.persistentKeepalive ? `PersistentKeepalive ${c.persistentKeepalive}` : 'PersistentKeepalive off');
    }
    if (c.name !== undefined) {
      engine.nameChanged(peer, c.name);
      what.push(c.name ? `Name ${c.name}` : 'Name removed');
    }
    done.push(`peer ${peerLabel(peer)}: ${what.join(', ')}`);
  }
  for (const { fresh: p, allowedIps } of d.added) {
    const peer = addPeer(engine, p, allowedIps, resolved.get(p) ?? null, now);
    if (p.endpoint) rt.names.remember(peer, p.endpoint);
    done.push(`peer ${peerLabel(p)} added`);
  }

  if (d.fwmark !== undefined) {
    rt.setFwmark(d.fwmark);
    done.push(`FwMark ${d.fwmark ? `0x${d.fwmark.toString(16)}` : 'off'}`);
  }
  if (d.isLighthouse !== undefined) {
    engine.isLighthouse = d.isLighthouse;
    done.push(d.isLighthouse ? 'now a lighthouse' : 'no longer a lighthouse');
  }
  if (d.mssClamp !== undefined) {
    engine.mssClamp = d.mssClamp;
    done.push(`MssClamp ${d.mssClamp ? 'on' : 'off'}`);
  }
  // The host's side: `ip` and resolvconf may fail; that is reported, the tunnel's side stays applied.
  const host = async (what: string, f: () => Promise<void>) =>
    f().then(
      () => done.push(what),
      (e: Error) => done.push(`${what} FAILED: ${e.message}`),
    );
  for (const a of d.addresses.remove) await host(`Address -${a.addr}/${a.cidr}`, () => rt.removeAddress(a));
  for (const a of d.addresses.add) await host(`Address +${a.addr}/${a.cidr}`, () => rt.addAddress(a));
  if (d.dns) await host(`DNS ${[...d.dns.dns, ...d.dns.search].join(', ') || 'removed'}`, () => rt.setDns(d.dns!.dns, d.dns!.search));
  if (d.portMapping !== undefined) await host(`PortMapping ${d.portMapping ? 'on' : 'off'}`, () => rt.setPortMapping(d.portMapping!));
  if (fresh.interface.mesh && (d.mesh || d.privateKey)) {
    try {
      done.push(reloadMesh(engine, fresh, rt.now()));
    } catch (e) {
      done.push(`mesh FAILED: ${(e as Error).message}`);
    }
  }
  if (d.adopted.length) done.push(`${d.adopted.join(', ')} taken as the file has them now`);
  if (d.needsRestart.length) done.push(`${d.needsRestart.join(', ')} changed: not applied until the node is restarted (keymesh down, then up)`);
  rt.flushAndArm();
  await rt.syncRoutes().catch((e: Error) => done.push(`routes FAILED: ${e.message}`));
  if (isEmptyDiff(d)) done.push('nothing changed');
  return { done, restarted, config: fresh };
}

/**
 * A new [Peer] section, as bring-up adds one, with `allowedIps`: those of its prefixes no later
 * [Peer] of the file takes from it (diff.ts).
 */
export function addPeer(engine: Engine, p: PeerConfig, allowedIps: Array<{ addr: Uint8Array; cidr: number }>, endpoint: UdpPath | null, now: number): Peer {
  const peer = engine.upsertPeer(
    {
      publicKey: p.publicKey,
      presharedKey: p.presharedKey ?? null,
      endpoint,
      allowedIps: allowedIps.map((a) => ({ addr: a.addr, cidr: a.cidr })),
      lighthouse: p.lighthouse,
      name: p.name ?? null,
    },
    now,
  );
  const keepalive = keepaliveOf(p);
  if (keepalive) engine.setPersistentKeepalive(peer, keepalive, now);
  return peer;
}
