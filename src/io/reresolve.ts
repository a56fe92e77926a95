/**
 * Endpoints configured by host name (Endpoint = vpn.example.org:51820): resolved again when a
 * handshake is retried or the active path is lost (dynamic DNS), and when the record's TTL runs
 * out. The first resolution starts at bring-up (runtime.ts); this file remembers the names.
 *
 * A name that does not resolve at bring-up (a laptop booting offline, a unit started before the
 * network: EAI_AGAIN; or a name that does not exist: ENOTFOUND) does not stop the node: the peer
 * is added without an endpoint and the name is looked up again
 *   - with backoff: 1 s, doubling to 30 s;
 *   - at once when netlink reports an address or route change (the network coming up), and the
 *     backoff starts again from 1 s (the resolver is often configured a moment after the address);
 *   - when traffic waits for the peer, a second apart at most (a user's ping gets through as soon
 *     as the resolver answers, whatever the backoff has grown to).
 * The first answer sets the endpoint and starts a handshake. One lookup per name is in flight at
 * a time: getaddrinfo runs on libuv's small thread pool, and a resolver that drops queries holds
 * a thread for seconds.
 *
 * May touch: the engine (to move a peer's endpoint and start a handshake), the path table, the
 * resolver (node:dns), the log, and the runtime's flush-and-re-arm. It owns one TTL timer per
 * name, and one retry timer per name not yet resolved.
 */
import { isIP } from 'node:net';
import { lookup } from 'node:dns/promises';
import { resolve4 as dnsResolve4 } from 'node:dns/promises';
import type { Engine } from '../core/engine.js';
import type { Peer } from '../core/peer.js';
import { resolveEndpoint } from '../config/wgquick.js';
import { shortKey } from './events.js';
import type { Log } from './log.js';
import type { PathTable } from './udp-path.js';

/** Retry delays for a name not resolved yet: the first, and the cap it doubles up to (ms). */
export const RETRY_FIRST = 1000;
export const RETRY_MAX = 30_000;

/** What the re-resolution uses of the runtime. */
export interface NamesHost {
  readonly engine: Engine;
  readonly paths: PathTable;
  readonly name: string;
  readonly stopped: boolean;
  readonly log: Log;
  now(): number;
  /** Send what the engine queued and re-arm the timer. */
  flushAndArm(): void;
  /** A peer got an endpoint it did not have (its route may need pinning). */
  endpointsChanged?(): void;
}

type Resolved = { address: string; port: number };

interface Unresolved {
  /** The delay before the next retry (ms). */
  delay: number;
  timer: NodeJS.Timeout | null;
  inFlight: boolean;
  /** The resolver's last error code (EAI_AGAIN, ENOTFOUND, …); a change is logged, a repeat is not. */
  error: string | null;
  attempts: number;
  lastAttempt: number;
  since: number;
}

interface HostName {
  host: string;
  port: number;
  lastResolve: number;
  timer: NodeJS.Timeout | null;
  /** Set while the name has never resolved: the peer has no endpoint yet. */
  unresolved: Unresolved | null;
}

export class EndpointNames {
  /** Peers whose Endpoint was given as a host name: re-resolved on failure and on the record's TTL. */
  private readonly hostnames = new Map<Peer, HostName>();

  constructor(private readonly rt: NamesHost) {}

  /**
   * `peer`'s Endpoint was configured as `endpoint`: remember it if it is a name. `first` is the
   * bring-up's lookup when it has not answered (yet) or failed: the peer then has no endpoint, and
   * the name is retried until it resolves.
   */
  remember(peer: Peer, endpoint: { host: string; port: number }, first?: Promise<Resolved>): void {
    if (isIP(endpoint.host) !== 0) return;
    const h: HostName = { host: endpoint.host, port: endpoint.port, lastResolve: Date.now(), timer: null, unresolved: null };
    this.hostnames.set(peer, h);
    if (!first) {
      this.resolvedOnce(peer, h);
      return;
    }
    h.unresolved = { delay: RETRY_FIRST, timer: null, inFlight: true, error: null, attempts: 1, lastAttempt: Date.now(), since: Date.now() };
    first.then(
      (r) => this.answered(peer, h, r),
      (e) => this.failed(peer, h, e as NodeJS.ErrnoException),
    );
  }

  /** The name resolved (at bring-up or later): watch its TTL and learn its other addresses. */
  private resolvedOnce(peer: Peer, h: HostName): void {
    this.scheduleTtlRefresh(peer);
    void this.learnAll(peer, h);
  }

  /** Names not resolved yet, for `keymesh show`: the host, the last error, since when (ms, wall clock). */
  unresolved(peer: Peer): { host: string; port: number; error: string | null; attempts: number; since: number } | null {
    const h = this.hostnames.get(peer);
    if (!h?.unresolved) return null;
    return { host: h.host, port: h.port, error: h.unresolved.error, attempts: h.unresolved.attempts, since: h.unresolved.since };
  }

  /**
   * The host's addresses or routes changed (the network may just have come up): look every name
   * that has not resolved yet up now, and start their backoff again from the first delay.
   */
  retryUnresolved(): void {
    for (const [peer, h] of this.hostnames) {
      if (!h.unresolved) continue;
      h.unresolved.delay = RETRY_FIRST;
      this.attempt(peer, h);
    }
  }

  /** Look a name that has not resolved up again now, unless a lookup is in flight or the last began less than `minGap` ms ago. */
  private attempt(peer: Peer, h: HostName, minGap = 0): void {
    const u = h.unresolved;
    if (!u || u.inFlight || this.rt.stopped || Date.now() - u.lastAttempt < minGap) return;
    u.lastAttempt = Date.now();
    if (u.timer) clearTimeout(u.timer);
    u.timer = null;
    u.inFlight = true;
    u.attempts++;
    resolveEndpoint({ host: h.host, port: h.port }).then(
      (r) => this.answered(peer, h, r),
      (e) => this.failed(peer, h, e as NodeJS.ErrnoException),
    );
  }

  /** A name that had not resolved now has: the peer gets its endpoint and a handshake starts. */
  private answered(peer: Peer, h: HostName, r: Resolved): void {
    const rt = this.rt;
    const u = h.unresolved;
    if (rt.stopped || this.hostnames.get(peer) !== h || !u) return;
    if (u.timer) clearTimeout(u.timer);
    h.unresolved = null;
    h.lastResolve = Date.now();
    const path = rt.paths.fromLiteral(r.address, r.port);
    const after = `${((Date.now() - u.since) / 1000).toFixed(1)} s`;
    const fields = { peer: shortKey(peer.publicKey), host: h.host, address: path.id, attempts: u.attempts, waitedSeconds: (Date.now() - u.since) / 1000 };
    if (peer.endpoint.path) {
      // the peer reached us first (it knows our address): keep the endpoint it proved
      rt.log(`${rt.name}: peer ${shortKey(peer.publicKey)} ${h.host} resolves to ${path.id} (after ${after}); keeping the endpoint it reached us from`, { event: 'endpoint-resolved', fields });
    } else {
      rt.log(`${rt.name}: peer ${shortKey(peer.publicKey)} ${h.host} resolves to ${path.id} (after ${after}, ${u.attempts} lookup(s)); connecting`, { event: 'endpoint-resolved', fields });
      rt.engine.setEndpoint(peer, path);
      rt.engine.initiateHandshake(peer, rt.now());
      rt.flushAndArm();
      rt.endpointsChanged?.();
    }
    this.resolvedOnce(peer, h);
  }

  private failed(peer: Peer, h: HostName, e: NodeJS.ErrnoException): void {
    const rt = this.rt;
    const u = h.unresolved;
    if (!u || this.hostnames.get(peer) !== h) return;
    u.inFlight = false;
    if (rt.stopped) return;
    const code = typeof e.code === 'string' ? e.code : 'error';
    const who = `${rt.name}: peer ${shortKey(peer.publicKey)}`;
    const fields = { peer: shortKey(peer.publicKey), host: h.host, error: code, attempts: u.attempts, retryMs: u.delay };
    if (code !== u.error) {
      // said once per kind of failure; the retries that fail the same way are debug lines
      const what =
        code === 'ENOTFOUND'
          ? `endpoint host "${h.host}" does not exist (NXDOMAIN): check the Endpoint; the peer has no endpoint until the name resolves`
          : `endpoint host "${h.host}" does not resolve yet (${code}): up without it`;
      rt.log(`${who} ${what}; retrying (${RETRY_FIRST / 1000} s doubling to ${RETRY_MAX / 1000} s, and at once when the network changes)`, {
        level: 'warn',
        event: 'resolve-failed',
        fields,
      });
    } else rt.log(`${who} ${h.host} still does not resolve (${code}); next try in ${u.delay / 1000} s`, { level: 'debug', event: 'resolve-failed', fields });
    u.error = code;
    u.timer = setTimeout(() => {
      u.timer = null;
      this.attempt(peer, h);
    }, u.delay);
    u.timer.unref();
    u.delay = Math.min(u.delay * 2, RETRY_MAX);
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
    const h = this.hostnames.get(peer);
    if (h?.unresolved?.timer) clearTimeout(h.unresolved.timer);
    this.hostnames.delete(peer);
  }

  /** Forget every name and stop their timers (shutdown). */
  clear(): void {
    for (const h of this.hostnames.values()) {
      if (h.timer) clearTimeout(h.timer);
      if (h.unresolved?.timer) clearTimeout(h.unresolved.timer);
    }
    this.hostnames.clear();
  }

  /** Resolve a peer's endpoint host name again; move the endpoint if it points elsewhere now. */
  async reresolve(peer: Peer, why: string, onlyIfStale = false): Promise<void> {
    const rt = this.rt;
    const h = this.hostnames.get(peer);
    if (!h || rt.stopped) return;
    if (h.unresolved) return this.attempt(peer, h, RETRY_FIRST); // (not the 5 s rule: a second apart)
    if (Date.now() - h.lastResolve < 5000 && why !== 'ttl') return;
    h.lastResolve = Date.now();
    let r: { address: string; port: number };
    try {
      r = await resolveEndpoint({ host: h.host, port: h.port });
    } catch (e) {
      rt.log(`${rt.name}: peer ${shortKey(peer.publicKey)} re-resolving ${h.host}: ${(e as Error).message}`, {
        level: 'warn',
        event: 'resolve-failed',
        fields: { peer: shortKey(peer.publicKey), host: h.host, error: (e as NodeJS.ErrnoException).code ?? 'error' },
      });
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
    rt.log(`${rt.name}: peer ${shortKey(peer.publicKey)} ${h.host} now resolves to ${path.id} (${why})`, {
      event: 'endpoint-resolved',
      fields: { peer: shortKey(peer.publicKey), host: h.host, address: path.id, why },
    });
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
