/**
 * Between the UAPI (what `wg` speaks, src/uapi/) and the engine: the `get=1` view of the running
 * device, and the `set=1` operation applied to it.
 *
 * May touch: the engine's peers and keys, the path table, the endpoint host names (an explicit
 * address replaces a name), and what the runtime offers for the rest: rebinding the UDP socket,
 * the fwmark, the routes, flush-and-re-arm and the log. No fd is touched here.
 */
import { keyId, type Engine } from '../core/engine.js';
import type { DeviceChange, DeviceSnapshot } from '../uapi/protocol.js';
import { udpOf } from './local-ends.js';
import type { EndpointNames } from './reresolve.js';
import type { PathTable } from './udp-path.js';

/** What the UAPI bridge uses of the runtime. */
export interface UapiHost {
  readonly engine: Engine;
  readonly paths: PathTable;
  readonly names: EndpointNames;
  readonly name: string;
  readonly listenPort: number;
  readonly fwmark: number;
  log(line: string): void;
  now(): number;
  /** Listen on another UDP port (throws, changing nothing, when it cannot). */
  rebind(port: number): void;
  /** Mark the UDP socket's packets (SO_MARK) with `mark`, if it is new and the socket is open. */
  setFwmark(mark: number): void;
  /** Make the kernel's routes match the peers' allowed IPs. */
  syncRoutes(): Promise<void>;
  /** Send what the engine queued and re-arm the timer. */
  flushAndArm(): void;
}

/** The UAPI `get=1` view. */
export function uapiSnapshot(rt: UapiHost): DeviceSnapshot {
  return {
    privateKey: rt.engine.privateKey ?? undefined,
    listenPort: rt.listenPort,
    fwmark: rt.fwmark,
    peers: rt.engine.listPeers().map((p) => {
      const ep = udpOf(p.endpoint.path);
      const psk = p.handshake.presharedKey;
      return {
        publicKey: p.publicKey,
        presharedKey: psk.some((b) => b !== 0) ? psk : undefined,
        endpoint: ep ? { address: ep.address, port: ep.port, family: ep.family } : undefined,
        persistentKeepalive: p.persistentKeepalive,
        lastHandshakeMs: rt.engine.lastHandshakeUnix(p),
        rxBytes: BigInt(p.rxBytes),
        txBytes: BigInt(p.txBytes),
        allowedIps: rt.engine.allowedIpsOf(p),
      };
    }),
  };
}

/** The UAPI `set=1` operation. Validation already happened in the parser. */
export function uapiApply(rt: UapiHost, c: DeviceChange): void {
  const engine = rt.engine;
  const now = rt.now();
  if (c.privateKey !== undefined) {
    engine.setPrivateKey(c.privateKey);
    // as wireguard-go: a peer with our own (new) public key cannot be talked to; it goes
    const self = engine.publicKey && engine.getPeer(engine.publicKey);
    if (self) {
      rt.names.forget(self);
      engine.removePeer(self.publicKey);
    }
  }
  if (c.listenPort !== undefined && c.listenPort !== rt.listenPort) rt.rebind(c.listenPort);
  if (c.fwmark !== undefined) rt.setFwmark(c.fwmark);
  if (c.replacePeers) engine.removeAllPeers();
  const own = engine.publicKey ? keyId(engine.publicKey) : null;
  for (const pc of c.peers) {
    if (keyId(pc.publicKey) === own) continue; // wireguard-go ignores a section for our own key
    if (pc.remove) {
      const gone = engine.getPeer(pc.publicKey);
      if (gone) rt.names.forget(gone);
      engine.removePeer(pc.publicKey);
      continue;
    }
    const existing = engine.getPeer(pc.publicKey);
    if (pc.updateOnly && !existing) continue;
    const peer = engine.upsertPeer(
      {
        publicKey: pc.publicKey,
        presharedKey: pc.presharedKey === undefined ? undefined : pc.presharedKey,
        endpoint: pc.endpoint ? rt.paths.fromLiteral(pc.endpoint.address, pc.endpoint.port) : undefined,
      },
      now,
    );
    if (pc.endpoint) rt.names.forget(peer); // an explicit address overrides the configured name
    if (pc.replaceAllowedIps) engine.clearAllowedIps(peer);
    for (const a of pc.allowedIps) {
      if (a.remove) engine.disallowIp(peer, a.addr, a.cidr);
      else engine.allowIp(peer, a.addr, a.cidr);
    }
    if (pc.persistentKeepalive !== undefined) engine.setPersistentKeepalive(peer, pc.persistentKeepalive, now);
  }
  rt.flushAndArm();
  rt.syncRoutes().catch((e) => rt.log(`${rt.name}: route update failed: ${e.message}`));
}
