/**
 * The host's own addresses as keymesh uses them (multihoming): its local ends — a source address
 * and the interface packets leave through — the paths to a peer's address from each of them, and
 * what a change of them means for every peer.
 *
 * No I/O here: the runtime reads the interfaces (`os.networkInterfaces()`, each time netlink says
 * something changed) and hands the list in; the unit tests hand in a fake host's, so the same code
 * decides in both.
 */
import type { Engine } from '../core/engine.js';
import type { Path } from '../core/endpoint.js';
import { PathTable, UdpPath } from './udp-path.js';

export interface LocalEnd {
  /** 16 bytes, IPv4 as ::ffff:a.b.c.d. */
  addr: Uint8Array;
  /** Interface index (0: unknown, routing chooses the interface). */
  ifindex: number;
  family: 4 | 6;
}

/** The runtime's path type, or null for another kind (a relay path). */
export function udpOf(p: Path | null): UdpPath | null {
  return p instanceof UdpPath ? p : null;
}

/** Addresses worth offering or trying as paths: not unspecified, loopback, link-local or multicast. */
export function usableRemote(a: Uint8Array): boolean {
  const mapped = a[10] === 0xff && a[11] === 0xff && a.subarray(0, 10).every((x) => x === 0);
  if (mapped) {
    const b0 = a[12];
    return !(b0 === 0 || b0 === 127 || (b0 === 169 && a[13] === 254) || b0 >= 224);
  }
  if (a.every((x, i) => (i < 15 ? x === 0 : x <= 1))) return false; // :: and ::1
  if (a[0] === 0xfe && (a[1] & 0xc0) === 0x80) return false; // fe80::/10
  return a[0] !== 0xff; // multicast
}

const sameEnd = (x: LocalEnd, y: LocalEnd) => x.ifindex === y.ifindex && x.addr.every((b, i) => b === y.addr[i]);

export class LocalEnds {
  private ends: LocalEnd[] = [];
  /**
   * Addresses we can be reached at that are no local end: the router's side of a port mapping
   * (port-mapping.ts). Announced with the local ends; never a source to send from.
   */
  private mapped: Array<{ addr: Uint8Array; port: number }> = [];

  constructor(private readonly paths: PathTable) {}

  get current(): readonly LocalEnd[] {
    return this.ends;
  }

  /** The paths to a peer's address: one from each local end of its family, or one where routing chooses if there is none. */
  pathsTo(addr: Uint8Array, port: number): UdpPath[] {
    if (!usableRemote(addr)) return [];
    const fam = addr[10] === 0xff && addr[11] === 0xff && addr.subarray(0, 10).every((x) => x === 0) ? 4 : 6;
    const out: UdpPath[] = [];
    for (const l of this.ends) if (l.family === fam) out.push(this.paths.get(addr, 0, port, l.addr, 0, l.ifindex));
    return out.length ? out : [this.paths.get(addr, 0, port)];
  }

  /** The port mappings we hold now (replacing the previous list); apply() announces them. */
  setMapped(list: Array<{ addr: Uint8Array; port: number }>): void {
    this.mapped = list.map((m) => ({ addr: m.addr.slice(), port: m.port }));
  }

  /** Forget every local end (the warm-up's throwaway wire). */
  reset(): void {
    this.ends = [];
    this.mapped = [];
  }

  /**
   * The host's local ends are now `ends`: apply that to the engine and its peers.
   *  - A peer whose active path leaves from a vanished address gets the same remote from a local
   *    end that exists now (or from wherever routing chooses), and no spare from the vanished
   *    address stays (a failover onto it would send into nothing).
   *  - The engine learns the addresses to announce (it tells every keymesh peer when they change).
   *  - Unless `quiet`: the engine is told our addresses or routes changed, so it sends from where
   *    we are now at once and, for a peer whose paths may all be gone, starts recovery rounds.
   * Returns the local ends that vanished.
   */
  apply(engine: Engine, ends: LocalEnd[], port: number, now: number, quiet = false): LocalEnd[] {
    const gone = this.ends.filter((o) => !ends.some((n) => sameEnd(n, o)));
    this.ends = ends.map((e) => ({ addr: e.addr.slice(), ifindex: e.ifindex, family: e.family }));
    if (gone.length > 0) {
      const isGone = (p: UdpPath) => p.hasLocal && gone.some((g) => g.ifindex === p.ifindex && g.addr.every((b, i) => b === p.local16[i]));
      for (const peer of engine.listPeers()) {
        const ep = udpOf(peer.endpoint.path);
        if (ep && isGone(ep)) engine.setEndpoint(peer, this.pathsTo(ep.addr16, ep.port)[0]);
        peer.endpoint.forget((p) => {
          const u = udpOf(p);
          return u !== null && isGone(u);
        });
      }
    }
    engine.setLocalAddresses([...this.ends.map((e) => ({ addr: e.addr, port })), ...this.mapped], now);
    if (!quiet) engine.localAddressesChanged(now);
    return gone;
  }
}
