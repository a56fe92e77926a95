/**
 * Endpoints configured by host name (Endpoint = vpn.example.org:51820): resolved again when a
 * handshake is retried or the active path is lost (dynamic DNS), and when the record's TTL runs
 * out. The first resolution happens at bring-up (runtime.ts); this file remembers the names.
 *
 * May touch: the engine (to move a peer's endpoint and start a handshake), the path table, the
 * resolver (node:dns), the log, and the runtime's flush-and-re-arm. It owns one TTL timer per name.
 */
import { isIP } from 'node:net';
import { lookup } from 'node:dns/promises';
import { resolve4 as dnsResolve4 } from 'node:dns/promises';
import type { Engine } from '../core/engine.js';
import type { Peer } from '../core/peer.js';
import { resolveEndpoint } from '../config/wgquick.js';
import { shortKey } from './events.js';
import type { PathTable } from './udp-path.js';

/** What the re-resolution uses of the runtime. */
export interface NamesHost {
  readonly engine: Engine;
  readonly paths: PathTable;
  readonly name: string;
  readonly stopped: boolean;
  log(line: string): void;
  now(): number;
  /** Send what the engine queued and re-arm the timer. */
  flushAndArm(): void;
}

interface HostName {
  host: string;
  port: number;
  lastResolve: number;
  timer: NodeJS.Timeout | null;
}

export class EndpointNames {
  /** Peers whose Endpoint was given as a host name: re-resolved on failure and on the record's TTL. */
  private readonly hostnames = new Map<Peer, HostName>();

  constructor(private readonly rt: NamesHost) {}

  /** `peer`'s Endpoint was configured as `endpoint` (just resolved): remember it if it is a name. */
  remember(peer: Peer, endpoint: { host: string; port: number }): void {
    if (isIP(endpoint.host) !== 0) return;
    this.hostnames.set(peer, { host: endpoint.host, port: endpoint.port, lastResolve: Date.now(), timer: null });
    this.scheduleTtlRefresh(peer);
    void this.learnAll(peer, endpoint);
  }

  /**
   * Every address the name has (A and AAAA) becomes a candidate path to the peer, beside the one
   * the endpoint uses: a stock peer's spare when the active one goes silent (stock-paths.ts), a
   * keymesh peer's recovery candidate.
   */
  private async learnAll(peer: Peer, endpoint: { host: string; port: number }): Promise<void> {
    let all: Array<{ address: string }>;
    try {
      all = await lookup(endpoint.host, { all: true });
    } catch {
      return; // (the endpoint itself was resolved; the others are a bonus)
    }
    const rt = this.rt;
    if (rt.stopped || !this.hostnames.has(peer)) return;
    rt.engine.addCandidatePaths(
      peer,
      all.map((a) => rt.paths.fromLiteral(a.address, endpoint.port)),
    );
  }

  has(peer: Peer): boolean {
    return this.hostnames.has(peer);
  }

  /** Forget `peer`'s name (it was removed, or given an explicit address). */
  forget(peer: Peer): void {
    this.hostnames.delete(peer);
  }

  /** Forget every name and stop their timers (shutdown). */
  clear(): void {
    for (const h of this.hostnames.values()) if (h.timer) clearTimeout(h.timer);
    this.hostnames.clear();
  }

  /** Resolve a peer's endpoint host name again; move the endpoint if it points elsewhere now. */
  async reresolve(peer: Peer, why: string, onlyIfStale = false): Promise<void> {
    const rt = this.rt;
    const h = this.hostnames.get(peer);
    if (!h || rt.stopped) return;
    if (Date.now() - h.lastResolve < 5000 && why !== 'ttl') return;
    h.lastResolve = Date.now();
    let r: { address: string; port: number };
    try {
      r = await resolveEndpoint({ host: h.host, port: h.port });
    } catch (e) {
      rt.log(`${rt.name}: peer ${shortKey(peer.publicKey)} re-resolving ${h.host}: ${(e as Error).message}`);
      return;
    }
    if (rt.stopped || this.hostnames.get(peer) !== h) return;
    const path = rt.paths.fromLiteral(r.address, r.port);
    const current = peer.endpoint.path;
    if (current?.id === path.id) return;
    // The endpoint is still one of the name's addresses (another A or AAAA record, a failover to
    // it: stock-paths.ts): leave it — moving back could be moving into the path that just died.
    const now16 = current ? rt.engine.addressOf?.(current) : null;
    if (now16 && now16.port === h.port) {
      let all: Array<{ address: string }> = [];
      try {
        all = await lookup(h.host, { all: true });
      } catch {
        /* keep the answer above */
      }
      if (rt.stopped || this.hostnames.get(peer) !== h) return;
      const ids = new Set(all.map((a) => rt.paths.fromLiteral(a.address, h.port).addr16.join(',')));
      if (ids.has(now16.addr.join(','))) return;
    }
    // On a TTL refresh, leave a working session alone (its endpoint may have roamed on purpose).
    if (onlyIfStale && peer.lastHandshake !== null && rt.now() - peer.lastHandshake < 135_000) return;
    rt.log(`${rt.name}: peer ${shortKey(peer.publicKey)} ${h.host} now resolves to ${path.id} (${why})`);
    rt.engine.setEndpoint(peer, path);
    rt.engine.initiateHandshake(peer, rt.now());
    rt.flushAndArm();
  }

  /** Re-resolve when the DNS record's TTL runs out (30 s – 1 h; 5 min when the TTL is unknown, e.g. /etc/hosts). */
  private scheduleTtlRefresh(peer: Peer): void {
    const h = this.hostnames.get(peer);
    if (!h) return;
    const lookupTtl = async (): Promise<number> => {
      try {
        const recs = await dnsResolve4(h.host, { ttl: true });
        return Math.min(...recs.map((x) => x.ttl));
      } catch {
        return 300;
      }
    };
    void lookupTtl().then((ttl) => {
      if (this.rt.stopped || this.hostnames.get(peer) !== h) return;
      const seconds = Math.min(Math.max(ttl, 30), 3600);
      h.timer = setTimeout(() => {
        void this.reresolve(peer, 'ttl', true).finally(() => this.scheduleTtlRefresh(peer));
      }, seconds * 1000);
      h.timer.unref();
    });
  }
}
