/**
 * What `keymesh show` prints beyond what the UAPI carries: the device's offloads and counters,
 * and per peer its session, paths, relaying and lighthouse state.
 *
 * May touch: nothing; it reads the engine, the pump's handles and counters, and the addon's
 * counters (less what the warm-up added to them).
 */
import type { Engine } from '../core/engine.js';
import { formatAddress } from '../core/ip.js';
import type { Peer } from '../core/peer.js';
import { encodeKey } from '../config/keys.js';
import * as native from './native.js';
import { udpOf } from './local-ends.js';
import type { Pump } from './pump.js';
import type { PortMapping } from './portmap/client.js';
import type { EndpointNames } from './reresolve.js';

/** What the status reads of the runtime. */
export interface StatusHost {
  readonly engine: Engine;
  readonly pump: Pump;
  readonly name: string;
  readonly listenPort: number;
  readonly mtu: number;
  readonly fwmark: number;
  /** Endpoints given as host names (those not resolved yet are shown). */
  readonly names: EndpointNames;
  /** The port mapping held on the gateway now, if any (port-mapping.ts). */
  readonly portMappings: { readonly mapping: PortMapping | null };
  /** The addon's counters when the warm-up was done (null: no warm-up). */
  readonly nativeBase: { io: object | null; offload: object | null };
  /** The mesh's resolver (mesh-dns.ts). */
  readonly dns: { status(): object | null };
  now(): number;
}

/** Everything `keymesh show` prints, beyond what the UAPI carries. */
export function showStatus(rt: StatusHost): object {
  const now = rt.now();
  const keyOf = (id: string | null | undefined) => {
    const l = id ? rt.engine.listPeers().find((x) => x.keyId === id) : undefined;
    return l ? encodeKey(l.publicKey) : null;
  };
  return {
    interface: rt.name,
    publicKey: rt.engine.publicKey ? encodeKey(rt.engine.publicKey) : null,
    listenPort: rt.listenPort,
    mtu: rt.mtu,
    fwmark: rt.fwmark,
    aead: rt.engine.aead.name,
    portMapping: mappingStatus(rt.portMappings.mapping),
    stats: rt.engine.stats(now),
    offload: {
      tun: rt.pump.tun?.offload ?? null,
      udp: rt.pump.udpOff,
      counters: since(native.offloadCounters(), rt.nativeBase.offload),
    },
    runtime: { ...rt.pump.counters, native: since(native.counters(), rt.nativeBase.io) },
    isLighthouse: rt.engine.isLighthouse,
    mesh: meshStatus(rt.engine),
    dns: rt.dns.status(),
    peers: rt.engine.listPeers().map((p: Peer) => ({
      publicKey: encodeKey(p.publicKey),
      endpoint: p.endpoint.path?.id ?? null,
      unresolvedEndpoint: unresolvedStatus(rt.names.unresolved(p)),
      allowedIps: rt.engine.allowedIpsOf(p).map((a) => `${formatAddress(a.addr)}/${a.cidr}`),
      latestHandshake: p.lastHandshake === null ? null : Math.round(rt.engine.lastHandshakeUnix(p) / 1000),
      secondsSinceHandshake: p.lastHandshake === null ? null : Math.round((now - p.lastHandshake) / 1000),
      rxBytes: p.rxBytes,
      txBytes: p.txBytes,
      persistentKeepalive: p.persistentKeepalive,
      presharedKey: p.handshake.presharedKey.some((b) => b !== 0),
      handshakes: p.handshakesCompleted,
      pathChanges: p.pathChanges,
      session: p.keypairs.current
        ? {
            role: p.keypairs.current.isInitiator ? 'initiator' : 'responder',
            ageSeconds: Math.round((now - p.keypairs.current.created) / 1000),
          }
        : null,
      stagedPackets: p.staged.length,
      tunnelMtu: p.tunnelMtu,
      stockPaths: p.stock
        ? {
            phase: p.stock.phase,
            handshakes: p.stock.handshakes,
            results: p.stock.results.map((r) => ({ path: r.path, ok: r.ok, why: r.why, secondsAgo: Math.round((now - r.at) / 100) / 10 })),
          }
        : null,
      speaksKeymesh: p.endpoint.speaksKeymesh,
      // mesh membership (membership.ts): how it came to be a peer, and the certificate it showed
      membership: p.membership,
      name: p.cert?.name ?? p.name ?? null,
      device: p.device,
      certificate: p.cert
        ? {
            name: p.cert.name,
            groups: p.cert.groups,
            lighthouse: p.cert.lighthouse,
            fingerprint: p.cert.fingerprint,
            notAfter: new Date(p.cert.notAfter * 1000).toISOString(),
            expiresInDays: Math.floor((p.cert.notAfter * 1000 - Date.now()) / 86_400_000),
          }
        : null,
      lighthouse: p.lighthouse,
      foundVia: keyOf(p.foundVia),
      relayReason: p.endpoint.whyRelayed(),
      relayed: { packets: p.relayedPackets, bytes: p.relayedBytes },
      paths: p.endpoint.list().map((e) => ({
        path: udpOf(e.path)?.remoteId ?? e.path.id,
        kind: e.path.via === undefined ? 'direct' : 'relay',
        via: keyOf(e.path.via),
        local: udpOf(e.path)?.local || null,
        state: e.state,
        active: e === p.endpoint.active,
        rttMs: e.srtt === null ? null : Math.round(e.srtt * 10) / 10,
        pmtu: e.mtu ? { mtu: e.mtu.pmtu, state: e.mtu.state, source: e.mtuSource, probes: e.mtu.probesSent, probeBytes: e.mtu.probeBytes, blackHoles: e.mtu.blackHoles } : null,
        lastReceiveSecondsAgo: e.lastReceive === -Infinity ? null : Math.round((now - e.lastReceive) / 100) / 10,
      })),
    })),
  };
}

/** An Endpoint name that has not resolved yet: HOST:PORT, the resolver's last error, lookups, since when. */
function unresolvedStatus(u: ReturnType<EndpointNames['unresolved']>): object | null {
  if (!u) return null;
  return { endpoint: `${u.host}:${u.port}`, error: u.error, lookups: u.attempts, seconds: Math.round((Date.now() - u.since) / 1000) };
}

/** Counters now minus counters at `base` (numeric fields; a null base leaves them as they are). */
function since<T extends object | null>(now: T, base: object | null): T {
  if (!now || !base) return now;
  const out: Record<string, unknown> = { ...now };
  for (const [k, v] of Object.entries(base)) if (typeof v === 'number' && typeof out[k] === 'number') out[k] = (out[k] as number) - v;
  return out as T;
}

/** The port mapping as `keymesh show` prints it: protocol, gateway, external address:port, lifetime left. */
function mappingStatus(m: PortMapping | null): object | null {
  if (!m) return null;
  return {
    protocol: m.protocol,
    gateway: m.gateway,
    external: `${m.externalAddress}:${m.externalPort}`,
    internalPort: m.internalPort,
    // null: a permanent (lease 0) UPnP mapping
    secondsLeft: m.lifetime === 0 ? null : Math.max(0, Math.round((m.expiresAt - Date.now()) / 1000)),
  };
}

/** Our own certificate and the revocation list in force, when the node is a mesh member. */
function meshStatus(engine: Engine): object | null {
  const a = engine.meshAuthority;
  if (!a) return null;
  const own = a.own;
  return {
    name: own.name,
    addresses: own.addresses.map((x) => `${formatAddress(x.addr)}/${x.bits}`),
    groups: own.groups,
    fingerprint: own.fingerprint,
    notAfter: new Date(own.notAfter * 1000).toISOString(),
    networks: a.networks.map((x) => `${formatAddress(x.addr)}/${x.bits}`),
    revocationSerial: a.crlSerial?.() ?? null,
    pending: engine.listPeers().filter((p) => p.membership === 'pending').length,
    certified: engine.listPeers().filter((p) => p.membership === 'certified').length,
  };
}
