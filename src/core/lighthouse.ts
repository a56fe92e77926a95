/**
 * Lighthouses: NAT traversal with keymesh's own nodes (sans-I/O; the engine drives it).
 *
 * A lighthouse is an ordinary keymesh node with a known address (`IsLighthouse = true`); members
 * list it as a peer with `Lighthouse = true` and an Endpoint. Everything between them travels on
 * the extension channel inside their WireGuard session (extension.ts), so it is authenticated by
 * the same keys, and a node not in the lighthouse's config cannot even complete a handshake.
 *
 *   registration  members keep a session with every lighthouse (persistent keepalives hold their
 *                 NAT mapping open). The lighthouse learns a member's reflexive address from the
 *                 source of its latest authenticated packet (no separate STUN), and its local
 *                 addresses from ADDRESSES.
 *   lookup        a member with no working path to a peer sends LOOKUP to every lighthouse.
 *   punching      the lighthouse answers CANDIDATES (the peer's addresses) to the asker and at the
 *                 same moment sends CANDIDATES (the asker's addresses) to the peer: both probe
 *                 each other's candidates (PATH_CHALLENGE, retried) so both NATs open. Candidates
 *                 then go through the endpoint cache's normal path validation. Before a session
 *                 exists, the handshake initiation goes to every candidate and over every relay.
 *   relay         a relay path (RelayPath) carries the pair's own WireGuard datagrams, sealed
 *                 under the pair's keys, inside RELAY/RELAYED messages of the member–lighthouse
 *                 sessions: the lighthouse sees only opaque bytes. A direct path always wins over
 *                 a relay (endpoint.ts); relaying is rate-limited per member at the lighthouse.
 *
 * Access control at the lighthouse: LOOKUP and RELAY are honoured only when both the asker and
 * the peer it names are in the lighthouse's own config (the asker is, or it would have no
 * session); everything else is counted and dropped. Members honour CANDIDATES and RELAYED only
 * from peers they configured as lighthouses, and only about peers in their own config.
 */
import type { Path } from './endpoint.js';

/** Persistent keepalive for lighthouse sessions when the config sets none: keeps NAT mappings open. */
export const REGISTRATION_KEEPALIVE = 10;
/** A peer is looked up at most this often. */
export const LOOKUP_MIN_INTERVAL = 500;
/** While traffic goes over a relay, the lighthouses are asked again (a new punch) this often. */
export const RELAY_RETRY_DIRECT = 5000;
/** Lighthouse side: lookups answered per member (token bucket: rate per second, burst). */
export const LOOKUP_RATE = 20;
export const LOOKUP_BURST = 40;
/** Lighthouse side: default relay budget per member, bytes per second (and its burst). */
export const DEFAULT_RELAY_RATE = 16 * 1024 * 1024;
export const RELAY_BURST_SECONDS = 0.25;
/** Relayed datagrams waiting to be processed after the batch that carried them. */
export const MAX_DEFERRED = 256;

/** A path to `targetId` through the lighthouse `via`: datagrams on it are wrapped in RELAY. */
export class RelayPath implements Path {
  readonly id: string;
  readonly hostId: string;
  readonly cookieBytes: Uint8Array;
  readonly via: string;

  constructor(
    viaKeyId: string,
    /** The lighthouse's public key (also the cookie MAC's "source" bytes for this path). */
    readonly viaKey: Uint8Array,
    readonly targetKeyId: string,
    /** How the lighthouse is shown (e.g. a short base64 key). */
    label: string,
  ) {
    this.via = viaKeyId;
    this.id = `relay via ${label}`;
    this.hostId = `relay:${viaKeyId}`;
    this.cookieBytes = viaKey;
  }

  toString(): string {
    return this.id;
  }
}

/** A token bucket per key (lookups and relay bytes per member at a lighthouse). */
export class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    /** Tokens added per second. */
    private readonly rate: number,
    private readonly burst: number,
  ) {}

  /** Would take(key, n, now) succeed? (Takes nothing.) */
  has(key: string, n: number, now: number): boolean {
    const b = this.buckets.get(key);
    return !b || Math.min(this.burst, b.tokens + ((now - b.at) * this.rate) / 1000) >= n;
  }

  /** Take `n` tokens for `key` at `now` (ms); false when there are not enough. */
  take(key: string, n: number, now: number): boolean {
    let b = this.buckets.get(key);
    if (!b) {
      // bounded: the least recently used bucket makes room (clearing them all would hand every
      // member a full burst again whenever a large mesh passes the bound)
      if (this.buckets.size >= 65536) this.buckets.delete(this.buckets.keys().next().value!);
      b = { tokens: this.burst, at: now };
      this.buckets.set(key, b);
    }
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) * this.rate) / 1000);
    b.at = now;
    this.buckets.delete(key); // re-insert: most recently used last
    this.buckets.set(key, b);
    if (b.tokens < n) return false;
    b.tokens -= n;
    return true;
  }
}

/** Counters a lighthouse (and a member) keeps; in `engine.stats().lighthouse`. */
export interface LighthouseStats {
  /** Lighthouse: LOOKUPs answered, and refused (not a lighthouse, unknown peer, rate, nothing known). */
  lookupsAnswered: number;
  lookupsRefused: number;
  /** Lighthouse: CANDIDATES sent to the peer asked about (punch requests). */
  punchesSent: number;
  /** Lighthouse: datagrams and bytes passed on, and refused (access control) or over the rate. */
  relayedPackets: number;
  relayedBytes: number;
  relayRefused: number;
  relayRateLimited: number;
  /** Member: LOOKUPs sent, CANDIDATES received, datagrams sent and received over relay paths. */
  lookupsSent: number;
  candidatesReceived: number;
  relaySent: number;
  relayReceived: number;
  /** Member: CANDIDATES or RELAYED from a peer that is not our lighthouse, or about a stranger. */
  ignored: number;
  /** Lighthouse: device names from a gateway refused (not certified with subnets, an address outside them, a bad name, too many). */
  namesRefused: number;
}

export function newLighthouseStats(): LighthouseStats {
  return {
    lookupsAnswered: 0,
    lookupsRefused: 0,
    punchesSent: 0,
    relayedPackets: 0,
    relayedBytes: 0,
    relayRefused: 0,
    relayRateLimited: 0,
    lookupsSent: 0,
    candidatesReceived: 0,
    relaySent: 0,
    relayReceived: 0,
    ignored: 0,
    namesRefused: 0,
  };
}
