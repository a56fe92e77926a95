/**
 * The keymesh protocol engine: WireGuard (whitepaper §5–6) as a sans-I/O state machine.
 *
 * The runtime feeds it
 *   handleDatagram / handleDatagramBatch   — bytes that arrived on a UDP path,
 *   handleTunPacket / handleTunBatch       — IP packets read from the TUN device,
 *   tick(now)                              — when `nextDeadline()` has passed,
 * and the engine answers through the `Sink` it was given: datagrams to send on a path, packets to
 * write to the TUN device, and events. It never reads a clock (every call carries `now`, in
 * milliseconds of a monotonic clock), never draws randomness except from the injected `random`,
 * and imports no I/O.
 *
 *                 ┌─────────────── Engine ────────────────┐
 *   TUN packet ──▶│ allowed-IPs → peer → keypair → seal   │──▶ sink.send(path, datagram)
 *   datagram   ──▶│ index → keypair → replay → open → ACL │──▶ sink.writeTun(packet)
 *   tick(now)  ──▶│ per-peer timers (timers.ts)           │──▶ sink.event(...)
 *                 └────────────────────────────────────────┘
 *
 * The data path copies nothing and allocates nothing: a batch of TUN packets is padded, sealed
 * and framed in place in the caller's buffer (which leaves TRANSPORT_HEADROOM bytes before and
 * TRANSPORT_TAILROOM bytes after each packet), and received datagrams are opened in place; the
 * sink is handed (buffer, offset, length) triples that are valid only during the call.
 *
 * This file holds the engine's state and its public API. The work is done, as in the kernel
 * module (send.c, receive.c, …), by functions that take the engine as their first argument and
 * reach the state it marks @internal, one concern per file:
 *   send.ts               TUN packets → allowed IPs → seal → datagrams; staging, keepalives
 *   receive.ts            datagrams → index → replay → open → source check → TUN
 *   handshake.ts          initiations, responses, cookie replies, the under-load gate
 *   timer-effects.ts      what tick() does when a peer's deadline passes
 *   deadline-index.ts     the heap of peers' deadlines behind nextDeadline()
 *   paths.ts              HELLO, path validation, probes, recovery, ADDRESSES, duplication
 *   lighthouse-lookup.ts  lookups, candidates and hole punching
 *   lighthouse-relay.ts   relaying through a lighthouse
 * Each of them says at its top what it may touch. None imports I/O, reads a clock or arms a timer.
 */
import { lookupName, ping, setDeviceNames } from './names.js';
import { lookupAddress } from './directory.js';
import { AllowedIps } from './allowedips.js';
import {
  DEFAULT_MTU,
  PADDING_MULTIPLE,
  REKEY_TIMEOUT_JITTER_MAX,
  TRANSPORT_HEADER_SIZE,
  UNDER_LOAD_HANDSHAKES_PER_SECOND,
} from './constants.js';
import { CookieChecker } from './cookie.js';
import { nobleCrypto, type Crypto } from './crypto.js';
import { earliestDeadline } from './deadline-index.js';
import type { EndpointChange, Path, PathEntry } from './endpoint.js';
import { RELAY_HEADER, type ExtMessage } from './extension.js';
import { dropSessions, sendInitiation } from './handshake.js';
import { PendingIntroductions } from './introductions.js';
import type { Waiting } from './directory.js';
import { DEFAULT_IDLE_FORGET, Membership, onCrl, reauthorize, type MeshAuthority, type MembershipCounters } from './membership.js';
import { IndexTable } from './index-table.js';
import type { Keypair } from './keypair.js';
import { drainRelayed, relayOut } from './lighthouse-relay.js';
import {
  DEFAULT_RELAY_RATE,
  LOOKUP_BURST,
  LOOKUP_RATE,
  newLighthouseStats,
  RELAY_BURST_SECONDS,
  RelayPath,
  TokenBuckets,
  type LighthouseStats,
} from './lighthouse.js';
import { LocalIdentity, ZERO_KEY } from './noise.js';
import { sendAddresses, sendExtension } from './paths.js';
import { Peer } from './peer.js';
import { onPortUnreachable, onTimeExceeded, Openers } from './punch.js';
import { IcmpRateLimit } from './icmp.js';
import { IPV6_MIN_MTU, onPacketTooBig, pmtuActivated } from './pmtu.js';
import { RateLimiter } from './ratelimiter.js';
import { HandshakeQueue } from './handshake-gate.js';
import { growRx, receiveAdmittedHandshake, receiveDatagram, receiveDatagramBatch } from './receive.js';
import { growTx, sendKeepalive, sendTunBatch, TX_SLOT_EXTRA } from './send.js';
import { fireTimers } from './timer-effects.js';
import type { TimerName } from './timers.js';
import { createNobleTransportAead, type TransportAead } from './transport-aead.js';

export type EngineEvent =
  | { type: 'handshake-initiated'; peer: Peer; retry: boolean }
  /** A handshake was wanted (traffic is waiting) but the peer has no endpoint and no lighthouse knows one. */
  | { type: 'endpoint-missing'; peer: Peer }
  | { type: 'handshake-complete'; peer: Peer; initiator: boolean }
  | { type: 'handshake-failed'; peer: Peer }
  | { type: 'endpoint-changed'; peer: Peer; from: Path | null; to: Path; reason: string }
  | { type: 'peer-speaks-keymesh'; peer: Peer }
  | { type: 'path-lost'; peer: Peer; path: Path }
  /** A lighthouse told us where `peer` may be (answer = it answered our lookup; else a punch request). */
  | { type: 'peer-found'; peer: Peer; lighthouse: Peer; answer: boolean; candidates: Path[] }
  | { type: 'keys-zeroed'; peer: Peer }
  /** membership.ts: a peer we did not configure was admitted by its certificate, or a certified peer was forgotten. */
  | { type: 'peer-admitted'; peer: Peer }
  | { type: 'peer-removed'; peer: Peer; reason: string }
  /** names.ts: a lighthouse answered a lookup by name (`key`: the holder — the member, or a device's gateway). */
  | { type: 'name-answer'; name: string; found: boolean; key: Uint8Array | null; addresses: Uint8Array[] }
  /** names.ts: the PONG to our PING, and the path it came back on. */
  | { type: 'pong'; peer: Peer; path: Path; token: Uint8Array; rttMs: number }
  /** The peer's tunnel MTU changed (pmtu.ts): `pmtu` is the active path's IP-level MTU, when known. */
  | { type: 'pmtu-changed'; peer: Peer; path: Path; from: number; to: number; pmtu: number | null; source: string };

export interface Sink {
  /** Send buf[off .. off+len) (valid only during this call) as one UDP datagram on `path`. */
  send(path: Path, buf: Uint8Array, off: number, len: number): void;
  /**
   * Optional: send one datagram as `send` does but with this IP TTL / hop limit (the NAT openers
   * of punch.ts). A runtime without it sends no openers.
   */
  sendTtl?(path: Path, buf: Uint8Array, off: number, len: number, ttl: number): void;
  /** Write the IP packet buf[off .. off+len) (valid only during this call) to the TUN device. */
  writeTun(buf: Uint8Array, off: number, len: number): void;
  event(e: EngineEvent): void;
}

/** Bytes a TUN packet handed to handleTunBatch must have free before it (the transport header). */
export const TRANSPORT_HEADROOM = TRANSPORT_HEADER_SIZE;
/** Bytes it must have free after it: up to 15 of padding and the 16-byte Poly1305 tag. */
export const TRANSPORT_TAILROOM = PADDING_MULTIPLE - 1 + 16;

/** Why a datagram or TUN packet was dropped; each has a counter in `stats().drops`. */
export const DROP_REASONS = [
  'malformed', // not a WireGuard message of a valid type and size
  'badMac1', // handshake message whose mac1 is not ours
  'cookieSent', // under load without a valid mac2: answered with a cookie reply instead
  'cookieShed', // under load without a valid mac2, over the cookie-reply budget (handshake-gate.ts): not answered
  'handshakeShed', // a handshake message that found the handshake queue full (handshake-gate.ts)
  'rateLimited', // under load, source over its handshake rate
  'handshakeInvalid', // handshake message that did not decrypt/authenticate (or unknown static key)
  'staleTimestamp', // initiation replay: TAI64N not newer than the last accepted one
  'initiationFlood', // initiations from one peer faster than HANDSHAKE_INITIATION_RATE
  'crossedInitiation', // the peer's initiation crossed ours and ours wins the tie-break (handshake.ts)
  'unknownIndex', // receiver index not in the index table
  'unexpectedMessage', // response or cookie reply that matches no handshake in flight
  'expiredKeypair', // transport packet under a keypair past REJECT_AFTER_TIME or zeroed
  'replay', // transport counter already seen or too old
  'badAead', // transport packet that failed authentication
  'invalidInnerPacket', // decrypted payload that is not a complete IPv4/IPv6 packet
  'disallowedSource', // decrypted packet whose source is outside the sending peer's allowed IPs
  'noRoute', // TUN packet to a destination no peer is allowed
  'noEndpoint', // nothing to send to: the peer has no known endpoint
  'tooBig', // TUN packet larger than the MTU
  'stagedOverflow', // packet pushed out of a peer's full staging queue
  'noPrivateKey', // the device has no private key
  'badExtension', // an extension-channel message we cannot parse
  'amplificationLimit', // not sent to an unvalidated path: over its anti-amplification budget
  'pmtuTooBig', // an inner packet larger than the path carries, with DF (or IPv6): answered with ICMP (pmtu.ts)
  'pmtuSettling', // the same, while a search after a black hole settles: dropped without ICMP (pmtu.ts)
  'notAdmitted', // from a pending peer, anything but its certificate; or an initiation whose introduced certificate no longer checks out (membership.ts)
  'admissionLimited', // an initiation from an unknown key while too many are pending, or its source is over its rate (membership.ts)
  'deviceOutsideMesh', // a gateway's stock WireGuard device and an address outside the mesh's networks, either way (device-guard.ts)
] as const;
export type DropReason = (typeof DROP_REASONS)[number];

export interface PeerOptions {
  publicKey: Uint8Array;
  presharedKey?: Uint8Array | null;
  endpoint?: Path | null;
  /** Seconds; 0 or undefined disables. */
  persistentKeepalive?: number;
  allowedIps?: Array<{ addr: Uint8Array; cidr: number }>;
  /** `Lighthouse = true`: register with this peer and ask it about others. */
  lighthouse?: boolean;
  /** `Name =`: what it is called in the mesh's names (names.ts); a certificate's name takes precedence. */
  name?: string | null;
  /** A gateway's stock WireGuard device (device-guard.ts): it reaches the mesh's networks only. */
  device?: boolean;
}

export interface EngineOptions {
  /**
   * Tests: check the deadline index against a full scan of every peer at each nextDeadline() call
   * and throw on a difference (the index's naive twin).
   */
  checkDeadlines?: boolean;
  privateKey: Uint8Array | null;
  random: (n: number) => Uint8Array;
  crypto?: Crypto;
  aead?: TransportAead;
  mtu?: number;
  /** Milliseconds to add to `now` to get Unix time (for TAI64N timestamps and reported handshake times). */
  wallClockOffset?: number;
  /** Handshake messages per second above which the engine is under load (cookies required). */
  underLoadThreshold?: number;
  /**
   * Turns an address a peer announced (16 bytes, IPv4-mapped for IPv4) and port into the Paths the
   * runtime can reach it on — one per local end that can (e.g. one per uplink); empty for addresses
   * it cannot use. Without it, announcements are ignored.
   */
  makePaths?: (addr: Uint8Array, port: number) => Path[];
  /** `IsLighthouse = true`: answer lookups and relay between the peers in our config. */
  isLighthouse?: boolean;
  /** NAT openers and PUNCH_OPEN before full probes to punched IPv4 candidates (punch.ts); default true. */
  punchOpeners?: boolean;
  /** The remote address (16 bytes, IPv4-mapped) and port of a runtime path, for CANDIDATES; null if it has none. */
  addressOf?: (p: Path) => { addr: Uint8Array; port: number } | null;
  /** Lighthouse: relayed bytes per second allowed per member (default DEFAULT_RELAY_RATE). */
  relayRate?: number;
  /** Path MTU discovery with keymesh peers (pmtu.ts); default true. */
  pmtuDiscovery?: boolean;
  /** Fast failover for stock WireGuard peers: the handshake as path probe (stock-paths.ts); default true. */
  stockFailover?: boolean;
  /**
   * Tests: false makes this engine a stock WireGuard twin — it sends no HELLO and drops every
   * extension message as a stock peer would (an invalid inner packet). Default true.
   */
  extensions?: boolean;
  /** Lower the MSS of TCP SYNs crossing the tunnel to fit the path (mss.ts); default true (`MssClamp = off`). */
  mssClamp?: boolean;
  /**
   * The IP-level MTU the host's routing gives a runtime path (its interface's, or less when an
   * ICMP message taught the kernel a smaller one), or null when unknown (pmtu.ts).
   */
  routeMtu?: (p: Path) => number | null;
  /** Mesh membership (membership.ts): admit peers by a certificate of this CA. */
  mesh?: MeshAuthority;
  /** Certified peers are forgotten after this many ms without traffic (default 10 min). */
  meshIdleForget?: number;
  /** `DevicesMayLeave = true`: a gateway's devices may reach addresses outside the mesh's networks (device-guard.ts). */
  devicesMayLeave?: boolean;
}

export interface EngineStats {
  drops: Record<DropReason, number>;
  rxPackets: number;
  txPackets: number;
  handshakesSent: number;
  handshakesReceived: number;
  underLoad: boolean;
  lighthouse: LighthouseStats;
  /** NAT openers and PUNCH_OPEN (punch.ts). */
  punch: Openers['stats'] & { ttl: number; ttlConfirmed: boolean };
  /** Path MTU (pmtu.ts). */
  pmtu: PmtuCounters;
  /** Handshake initiations sent as path probes to stock WireGuard peers (stock-paths.ts). */
  stockPathHandshakes: number;
  /** Mesh membership (membership.ts); null without a CA. */
  mesh: MembershipCounters | null;
}

export interface PmtuCounters {
  /** PMTU_PROBEs sent, and their bytes on the wire (IP level). */
  probes: number;
  probeBytes: number;
  blackHoles: number;
  /** ICMP "fragmentation needed" / "packet too big" written into the TUN device, and those the rate limit held back. */
  icmpSent: number;
  icmpRateLimited: number;
  /** Inner IPv4 packets without DF fragmented to fit, and the fragments made. */
  fragmented: number;
  fragments: number;
  /** Inner IPv6 packets of up to 1280 bytes (IPv6's minimum MTU) fragmented to fit a path that carries less. */
  ipv6MinMtu: number;
  /** TCP SYNs whose MSS was lowered (both directions). */
  mssClamped: number;
  /** ICMP too-big reports from the socket's error queue, and those that matched one of our sessions and lowered a path. */
  tooBigReports: number;
  tooBigApplied: number;
}

/** @internal What a receiver index names (index-table.ts): a keypair, or a handshake in flight. */
export interface IndexEntry {
  peer: Peer;
  keypair: Keypair | null; // null while the index names an in-flight handshake
}

/** What handleDatagram did with a datagram; for tests and diagnostics. */
/** 'queued': a handshake message that passed the gate and waits for Engine.processHandshakes (handshake-gate.ts). */
export type DatagramResult = 'data' | 'keepalive' | 'extension' | 'initiation' | 'response' | 'cookie' | 'queued' | DropReason;

/**
 * A map key for 32-byte keys and addresses: one character per byte (a flat one-byte string of
 * key.length characters — not a hex rope, which costs ~1.5 KB per peer at 10,000 peers). Never shown.
 */
export function keyId(key: Uint8Array): string {
  return String.fromCharCode.apply(null, key as unknown as number[]);
}

export class Engine {
  readonly crypto: Crypto;
  readonly aead: TransportAead;
  readonly mtu: number;
  wallClockOffset: number;
  /** @internal */ local: LocalIdentity | null = null;
  /** @internal */ checker: CookieChecker | null = null;
  /** @internal */ readonly random: (n: number) => Uint8Array;
  /** @internal */ readonly peers = new Map<string, Peer>();
  /** @internal */ readonly indexes: IndexTable<IndexEntry>;
  /** @internal */ readonly routes = new AllowedIps<Peer>();
  /** @internal */ readonly ratelimiter = new RateLimiter();
  /** @internal Handshake messages that passed the gate, waiting for their Noise work (handshake-gate.ts). */
  readonly handshakes = new HandshakeQueue();
  /** @internal */ readonly underLoadThreshold: number;
  // -Infinity, not 0: the first handshake (in the runtime's warm-up) opens a window whatever the clock says
  /** @internal */ handshakeWindowStart = -Infinity;
  /** @internal */ handshakeWindowCount = 0;
  /** @internal */ underLoadUntil = -Infinity;
  private forcedUnderLoad = false;
  /** @internal */ readonly counters: EngineStats;
  private readonly jitterBuf = new Uint8Array(2);

  // Transmit scratch: a batch of padded packets laid out in fixed slots.
  /** @internal */ txCap = 0;
  /** @internal */ txBuf = new Uint8Array(0);
  /** @internal */ txPeerOf: Array<Peer | null> = [];
  /** @internal */ txSealOffs = new Uint32Array(0);
  /** @internal */ txSealLens = new Uint32Array(0);
  /** @internal */ readonly txPeers: Peer[] = [];
  // Receive scratch for batched opens.
  /** @internal */ rxCap = 0;
  /** @internal */ rxHis = new Uint32Array(0);
  /** @internal */ rxLos = new Uint32Array(0);
  /** @internal */ rxOffs = new Uint32Array(0);
  /** @internal */ rxLens = new Uint32Array(0);
  /** @internal */ rxOk = new Uint8Array(0);
  /** @internal */ rxIdx = new Uint32Array(0);
  /** @internal */ readonly oneOff = new Uint32Array(1);
  private tunScratch = new Uint8Array(0);
  /** @internal */ readonly oneLen = new Uint32Array(1);
  /** @internal */ readonly onePath: Path[] = [];
  /** @internal */ readonly makePaths: ((addr: Uint8Array, port: number) => Path[]) | null;
  /** @internal */ localAddresses: Array<{ addr: Uint8Array; port: number }> = [];
  /** The runtime's sink; `sink` wraps it to carry relay paths through their lighthouse. */
  private readonly out: Sink;
  /** @internal */ readonly sink: Sink;
  /** `IsLighthouse = true`; a reload may change it (config-reload.ts). */
  isLighthouse: boolean;
  /** @internal device-guard.ts */ readonly devicesMayLeave: boolean;
  /** @internal */ readonly addressOf: ((p: Path) => { addr: Uint8Array; port: number } | null) | null;
  /** @internal */ readonly relayBudget: TokenBuckets;
  /** @internal */ readonly lookupBudget = new TokenBuckets(LOOKUP_RATE, LOOKUP_BURST);
  /** @internal Lighthouse: lookups it could not answer yet (introductions.ts). */ readonly introductions = new PendingIntroductions();
  /** @internal */ readonly lh = newLighthouseStats();
  /** @internal NAT openers and the TTL ladder (punch.ts). */ readonly openers = new Openers();
  /** @internal Path MTU (pmtu.ts). */ readonly pmtuDiscovery: boolean;
  /** @internal stock-paths.ts */ readonly stockFailover: boolean;
  /** @internal false: a stock WireGuard twin for tests (no extension channel). */ readonly extensions: boolean;
  /** @internal `MssClamp`; a reload may change it. */ mssClamp: boolean;
  /** @internal */ readonly routeMtu: ((p: Path) => number | null) | null;
  /** @internal ICMP errors written into the TUN device: scratch and rate limit (icmp.ts). */ readonly icmpBuf = new Uint8Array(IPV6_MIN_MTU);
  /** @internal */ readonly icmpLimit = new IcmpRateLimit();
  /** @internal Fragments of one inner packet (fragment.ts). */ fragBuf: Uint8Array;
  /** @internal */ readonly fragOffs = new Uint32Array(64);
  /** @internal */ readonly fragLens = new Uint32Array(64);
  private readonly relayPaths = new Map<string, RelayPath>();
  /** @internal */ readonly relayBuf: Uint8Array;
  /** @internal */ readonly relayOffs = new Uint32Array(1);
  /** @internal */ readonly relayLens = new Uint32Array(1);
  /** Datagrams that arrived over a relay, handled after the batch that carried them. @internal */
  deferred: Array<{ data: Uint8Array; path: Path }> = [];
  /** @internal */ inbound = 0;
  /** `now` of the latest call in (relay wrapping happens inside the sink, which has no `now`). @internal */
  clock = 0;
  // The deadline index (deadline-index.ts).
  /** @internal */ readonly deadlineHeap: Array<{ peer: Peer; at: number }> = [];
  /** @internal */ readonly dirtyPeers = new Set<Peer>();
  /** Rebuild the whole deadline index at the next nextDeadline(). @internal */
  allDirty = true;
  /** How many times the whole deadline index was rebuilt (benchmarks read it). @internal */
  deadlineRebuilds = 0;
  /** @internal */ readonly checkDeadlines: boolean;
  /** @internal Mesh membership (membership.ts); null without a CA. */ membership: Membership | null;
  private readonly meshIdleForget: number;
  /** @internal directory.ts: packets for overlay addresses being looked up. */ readonly waiting = new Map<string, Waiting>();
  /** @internal names.ts: when each name was last asked of the lighthouses. */ readonly namesAsked = new Map<string, number>();
  /** @internal names.ts: peers by the name they go by (certificate or `Name =`). */ readonly peersByName = new Map<string, Peer>();
  /** @internal names.ts: a gateway's devices, told to its lighthouses. */ deviceNames: Array<{ name: string; addresses: Uint8Array[] }> = [];
  /** @internal */ deviceNamesSent = false;

  constructor(sink: Sink, opts: EngineOptions) {
    this.out = sink;
    this.sink = {
      send: (path, buf, off, len) => {
        if (path.via === undefined) this.out.send(path, buf, off, len);
        else relayOut(this, path as RelayPath, buf, off, len);
      },
      writeTun: (buf, off, len) => this.out.writeTun(buf, off, len),
      event: (e) => this.out.event(e),
    };

    if (sink.sendTtl) {
      const sendTtl = sink.sendTtl.bind(sink);
      this.sink.sendTtl = (path, buf, off, len, ttl) => {
        if (path.via === undefined) sendTtl(path, buf, off, len, ttl);
      };
    }
    this.checkDeadlines = opts.checkDeadlines ?? false;
    this.crypto = opts.crypto ?? nobleCrypto;
    this.aead = opts.aead ?? createNobleTransportAead();
    this.mtu = opts.mtu ?? DEFAULT_MTU;
    this.random = opts.random;
    this.wallClockOffset = opts.wallClockOffset ?? 0;
    this.underLoadThreshold = opts.underLoadThreshold ?? UNDER_LOAD_HANDSHAKES_PER_SECOND;
    this.makePaths = opts.makePaths ?? null;
    this.isLighthouse = opts.isLighthouse ?? false;
    this.devicesMayLeave = opts.devicesMayLeave ?? false;
    this.openers.enabled = opts.punchOpeners ?? true;
    this.addressOf = opts.addressOf ?? null;
    this.pmtuDiscovery = opts.pmtuDiscovery ?? true;
    this.stockFailover = opts.stockFailover ?? true;
    this.extensions = opts.extensions ?? true;
    this.mssClamp = opts.mssClamp ?? true;
    this.routeMtu = opts.routeMtu ?? null;
    this.meshIdleForget = opts.meshIdleForget ?? DEFAULT_IDLE_FORGET;
    this.membership = opts.mesh ? new Membership(opts.mesh, this.meshIdleForget) : null;
    // an inner packet cut into pieces of at least 68 bytes (RFC 791's minimum), each with a header of up to 60
    this.fragBuf = new Uint8Array(2 * (this.mtu + 60 * 64));
    const rate = opts.relayRate ?? DEFAULT_RELAY_RATE;
    this.relayBudget = new TokenBuckets(rate, Math.max(rate * RELAY_BURST_SECONDS, 65536));
    // a relayed datagram (at most MTU + transport overhead) plus the RELAY header, padding and tag
    this.relayBuf = new Uint8Array(TRANSPORT_HEADER_SIZE + RELAY_HEADER + this.mtu + TX_SLOT_EXTRA + PADDING_MULTIPLE + 16);
    this.indexes = new IndexTable<IndexEntry>(this.random);
    const drops = {} as Record<DropReason, number>;
    for (const r of DROP_REASONS) drops[r] = 0;
    this.counters = { drops, rxPackets: 0, txPackets: 0, handshakesSent: 0, handshakesReceived: 0, underLoad: false, lighthouse: this.lh, punch: { ...this.openers.stats, ttl: 0, ttlConfirmed: false },
      pmtu: { probes: 0, probeBytes: 0, blackHoles: 0, icmpSent: 0, icmpRateLimited: 0, fragmented: 0, fragments: 0, ipv6MinMtu: 0, mssClamped: 0, tooBigReports: 0, tooBigApplied: 0 },
      stockPathHandshakes: 0,
      mesh: this.membership?.counters ?? null,
    };
    this.setPrivateKey(opts.privateKey);
    growTx(this, 64);
    growRx(this, 64);
  }

  // ───────────────────────────── configuration ─────────────────────────────

  get publicKey(): Uint8Array | null {
    return this.local?.publicKey ?? null;
  }

  get privateKey(): Uint8Array | null {
    return this.local?.privateKey ?? null;
  }

  /** Set or clear the static private key. Existing sessions are dropped (their keys no longer match). */
  setPrivateKey(privateKey: Uint8Array | null): void {
    this.allDirty = true;
    if (privateKey && this.local && keyId(privateKey) === keyId(this.local.privateKey)) return;
    this.local = privateKey ? new LocalIdentity(this.crypto, privateKey.slice()) : null;
    if (this.local) {
      if (this.checker) this.checker.setLocalPublicKey(this.local.publicKey);
      else this.checker = new CookieChecker(this.crypto, this.random, this.local.publicKey);
    }
    for (const peer of this.peers.values()) {
      dropSessions(this, peer);
      if (this.local) peer.handshake.rekeyLocal(this.local);
    }
  }

  /** Add a peer, or update an existing one with the given fields. Returns the peer. */
  upsertPeer(o: PeerOptions, now: number): Peer {
    this.allDirty = true;
    const id = keyId(o.publicKey);
    let peer = this.peers.get(id);
    if (!peer) {
      // Peers may be configured before the private key (the UAPI allows it): they get a
      // placeholder identity until setPrivateKey() re-keys every handshake.
      peer = new Peer(o.publicKey.slice(), id, this.local ?? new LocalIdentity(this.crypto, new Uint8Array(32)), this.crypto, undefined, this.mtu);
      this.peers.set(id, peer);
    }
    if (o.presharedKey !== undefined) peer.handshake.presharedKey = o.presharedKey ? o.presharedKey.slice() : ZERO_KEY;
    if (o.endpoint) this.emitEndpointChange(peer, peer.endpoint.configure(o.endpoint));
    if (o.allowedIps) for (const a of o.allowedIps) this.routes.insert(a.addr, a.cidr, peer);
    if (o.lighthouse !== undefined) peer.lighthouse = o.lighthouse;
    if (o.device !== undefined) peer.device = o.device;
    if (o.name !== undefined) this.nameChanged(peer, o.name);
    if (o.persistentKeepalive !== undefined) this.setPersistentKeepalive(peer, o.persistentKeepalive, now);
    return peer;
  }

  getPeer(publicKey: Uint8Array): Peer | undefined {
    return this.peers.get(keyId(publicKey));
  }

  listPeers(): Peer[] {
    return [...this.peers.values()];
  }

  removePeer(publicKey: Uint8Array): boolean {
    this.allDirty = true;
    const peer = this.peers.get(keyId(publicKey));
    if (!peer) return false;
    dropSessions(this, peer);
    peer.timers.stopAll();
    this.routes.removeValue(peer);
    this.peers.delete(peer.keyId);
    for (const n of [peer.name, peer.cert?.name]) if (n && this.peersByName.get(n) === peer) this.peersByName.delete(n);
    for (const [k, r] of this.relayPaths) if (r.via === peer.keyId || r.targetKeyId === peer.keyId) this.relayPaths.delete(k);
    this.introductions.forget(peer.keyId);
    return true;
  }

  /** Zero the counters (drops, packets, handshakes, lighthouse, path MTU): after the runtime's warm-up traffic. */
  resetCounters(): void {
    const c = this.counters;
    for (const r of DROP_REASONS) c.drops[r] = 0;
    c.rxPackets = c.txPackets = c.handshakesSent = c.handshakesReceived = c.stockPathHandshakes = 0;
    for (const k of Object.keys(this.lh) as Array<keyof typeof this.lh>) this.lh[k] = 0;
    for (const k of Object.keys(c.pmtu) as Array<keyof PmtuCounters>) c.pmtu[k] = 0;
  }

  removeAllPeers(): void {
    for (const p of [...this.peers.values()]) this.removePeer(p.publicKey);
  }

  /** More ways to reach the peer (e.g. every address of its Endpoint's host name): candidates, not the endpoint. */
  addCandidatePaths(peer: Peer, paths: Path[]): void {
    this.allDirty = true;
    peer.endpoint.ensure(paths);
  }

  setEndpoint(peer: Peer, path: Path): void {
    this.allDirty = true;
    this.emitEndpointChange(peer, peer.endpoint.configure(path));
  }

  /** Seconds; 0 disables. As in wireguard-go, enabling it sends a keepalive at once. */
  setPersistentKeepalive(peer: Peer, seconds: number, now: number): void {
    this.allDirty = true;
    this.clock = now;
    const before = peer.timers.persistentKeepaliveInterval;
    peer.timers.persistentKeepaliveInterval = seconds * 1000;
    if (seconds === 0) peer.timers.persistentKeepalive = Infinity;
    else if (before === 0 && this.local && peer.endpoint.path) sendKeepalive(this, peer, now);
    else peer.timers.persistentKeepalive = Math.min(peer.timers.persistentKeepalive, now + seconds * 1000);
  }

  allowIp(peer: Peer, addr: Uint8Array, cidr: number): void {
    this.routes.insert(addr, cidr, peer);
  }

  /** Take addr/cidr from `peer` (only if it is `peer`'s: a prefix another peer took since is left). */
  disallowIp(peer: Peer, addr: Uint8Array, cidr: number): boolean {
    return this.routes.remove(addr, cidr, peer);
  }

  clearAllowedIps(peer: Peer): void {
    this.routes.removeValue(peer);
  }

  allowedIpsOf(peer: Peer): Array<{ addr: Uint8Array; cidr: number; family: 4 | 6 }> {
    return this.routes.entriesFor(peer);
  }

  /** Longest-prefix match of an address (4 or 16 bytes) to a peer. */
  lookupRoute(addr: Uint8Array): Peer | undefined {
    return this.routes.lookup(addr, 0, addr.length === 4 ? 4 : 6);
  }

  /** The runtime may declare load it sees (e.g. a deep socket queue); cookies are then required. */
  setUnderLoad(flag: boolean): void {
    this.forcedUnderLoad = flag;
  }

  isUnderLoad(now: number): boolean {
    return this.forcedUnderLoad || now < this.underLoadUntil;
  }

  stats(now = 0): EngineStats {
    const mesh = this.membership ? { ...this.membership.counters, refused: { ...this.membership.counters.refused } } : null;
    return { ...this.counters, mesh, drops: { ...this.counters.drops }, underLoad: this.isUnderLoad(now), lighthouse: { ...this.lh }, punch: { ...this.openers.stats, ttl: this.openers.ttl, ttlConfirmed: this.openers.confirmed }, pmtu: { ...this.counters.pmtu } };
  }

  /** Unix time in ms of the peer's last handshake, 0 if never (the UAPI's convention). */
  lastHandshakeUnix(peer: Peer): number {
    return peer.lastHandshake === null ? 0 : peer.lastHandshake + this.wallClockOffset;
  }

  // ───────────────────────────── inbound datagrams ─────────────────────────────

  /**
   * One datagram from `path`. Transport data is decrypted in place in `data`.
   * Returns what was done with it; hostile input is counted, never thrown.
   */
  handleDatagram(data: Uint8Array, path: Path, now: number): DatagramResult {
    this.clock = now;
    this.inbound++;
    try {
      return receiveDatagram(this, data, path, now);
    } finally {
      if (--this.inbound === 0 && this.deferred.length > 0) drainRelayed(this, now);
    }
  }

  /**
   * A batch of datagrams laid out in `buf` (datagram i at offs[i], lens[i] bytes, from paths[i]).
   * Consecutive transport packets for the same receiver index are opened with one AEAD call.
   * Handshake messages that pass the gate are queued for processHandshakes (handshake-gate.ts);
   * handleDatagram, one datagram at a time, does their work at once.
   */
  handleDatagramBatch(buf: Uint8Array, offs: Uint32Array, lens: Uint32Array, paths: Path[], count: number, now: number): void {
    this.clock = now;
    this.inbound++;
    try {
      receiveDatagramBatch(this, buf, offs, lens, paths, count, now);
    } finally {
      if (--this.inbound === 0 && this.deferred.length > 0) drainRelayed(this, now);
    }
  }

  /**
   * Do the Noise work of up to `max` handshake messages that handleDatagramBatch queued (oldest
   * first); returns how many still wait. The runtime calls it between its reads of the socket, a
   * slice at a time, so transport data never waits behind a flood of handshakes.
   */
  processHandshakes(now: number, max = Infinity): number {
    this.clock = now;
    this.inbound++;
    try {
      for (let i = 0; i < max; i++) {
        const m = this.handshakes.shift();
        if (!m) break;
        receiveAdmittedHandshake(this, m.data, m.path, now);
      }
    } finally {
      if (--this.inbound === 0 && this.deferred.length > 0) drainRelayed(this, now);
    }
    return this.handshakes.length;
  }

  /** Handshake messages waiting for processHandshakes. */
  get pendingHandshakes(): number {
    return this.handshakes.length;
  }

  // ───────────────────────────── outbound packets ─────────────────────────────

  /** One IP packet read from the TUN device (copied into scratch space with head- and tailroom). */
  handleTunPacket(packet: Uint8Array, now: number): void {
    const need = TRANSPORT_HEADROOM + packet.length + TRANSPORT_TAILROOM;
    if (this.tunScratch.length < need) this.tunScratch = new Uint8Array(Math.max(need, 2048));
    this.tunScratch.set(packet, TRANSPORT_HEADROOM);
    this.oneOff[0] = TRANSPORT_HEADROOM;
    this.oneLen[0] = packet.length;
    this.handleTunBatch(this.tunScratch, this.oneOff, this.oneLen, 1, now);
  }

  /**
   * A batch of IP packets from the TUN device: packet i at buf[offs[i] .. offs[i]+lens[i]), with
   * TRANSPORT_HEADROOM free bytes before it and TRANSPORT_TAILROOM after it. Packets are routed by
   * destination, then each peer's share is padded, sealed with one AEAD call and framed, in place.
   */
  handleTunBatch(buf: Uint8Array, offs: Uint32Array, lens: Uint32Array, count: number, now: number): void {
    this.clock = now;
    sendTunBatch(this, buf, offs, lens, count, now);
  }

  // ───────────────────────────── handshakes ─────────────────────────────

  /** Public entry: start a handshake with a peer now (e.g. after an endpoint change). */
  initiateHandshake(peer: Peer, now: number): void {
    this.allDirty = true;
    this.clock = now;
    sendInitiation(this, peer, false, now);
  }

  // ───────────────────────────── timers ─────────────────────────────

  /** The earliest time tick() has work to do, or Infinity. */
  nextDeadline(): number {
    return earliestDeadline(this);
  }

  /** Fire every timer whose deadline is ≤ now. Returns what fired, for tests and logs. */
  tick(now: number): Array<{ peer: Peer; timer: TimerName }> {
    this.clock = now;
    return fireTimers(this, now);
  }

  // ───────────────────────────── lighthouses (lighthouse.ts) ─────────────────────────────

  /** The relay path to `target` through the lighthouse `via` (one object per pair). */
  relayPath(via: Peer, target: Peer): RelayPath {
    const k = `${via.keyId}/${target.keyId}`;
    let r = this.relayPaths.get(k);
    if (!r) {
      let label = '';
      for (let i = 0; i < 4; i++) label += (via.publicKey[i] < 16 ? '0' : '') + via.publicKey[i].toString(16);
      r = new RelayPath(via.keyId, via.publicKey, target.keyId, label);
      this.relayPaths.set(k, r);
    }
    return r;
  }

  // ───────────────────────────── mesh membership (membership.ts) ─────────────────────────────

  /**
   * Admit peers by certificates of this CA from now on; or, already a mesh member, a new CA / own
   * certificate / revocation list (a reload): certified peers are checked again under it.
   */
  setMeshAuthority(authority: MeshAuthority, now: number): void {
    this.clock = now;
    this.allDirty = true;
    if (!this.membership) {
      this.membership = new Membership(authority, this.meshIdleForget);
      this.counters.mesh = this.membership.counters;
    } else reauthorize(this, authority, now);
  }

  /** The mesh CA in force (null: not a mesh member). */
  get meshAuthority(): MeshAuthority | null {
    return this.membership?.authority ?? null;
  }

  /** A revocation list from the configuration: adopted if newer than ours and passed on. */
  offerRevocations(bytes: Uint8Array, now: number): 'newer' | 'old' | string {
    this.clock = now;
    this.allDirty = true;
    return onCrl(this, bytes, now);
  }

  // ───────────────────────────── names (names.ts) ─────────────────────────────

  /** @internal A peer's configured name changed (a certificate's name is indexed by membership.ts). */
  nameChanged(peer: Peer, name: string | null): void {
    if (peer.name && this.peersByName.get(peer.name) === peer) this.peersByName.delete(peer.name);
    peer.name = name;
    if (name && !peer.cert) this.peersByName.set(name, peer);
  }

  /** The peer that goes by `name` here (its certificate's name, or `Name =`), if any. */
  peerByName(name: string): Peer | undefined {
    return this.peersByName.get(name);
  }

  /** Ask the lighthouses where `name` is ("bob", "phone.gw"); the answer is a 'name-answer' event. */
  lookupName(name: string, now: number): boolean {
    this.clock = now;
    this.allDirty = true;
    return lookupName(this, name, now);
  }

  /** Ask the lighthouses who holds an overlay address (4 or 16 bytes), with no packet for it yet (directory.ts). */
  findAddress(addr: Uint8Array, now: number): boolean {
    this.clock = now;
    this.allDirty = true;
    return lookupAddress(this, addr, null, now);
  }

  /** Gateway: the names and addresses of our stock WireGuard devices, for the lighthouses (names.ts). */
  setDeviceNames(names: Array<{ name: string; addresses: Uint8Array[] }>, now: number): void {
    this.clock = now;
    setDeviceNames(this, names, now);
  }

  /** `keymesh ping`: a PING on the peer's active path (a 'pong' event answers), or null when a handshake had to start first. */
  ping(peer: Peer, now: number): Uint8Array | null {
    this.clock = now;
    this.allDirty = true;
    return ping(this, peer, now);
  }

  // ───────────────────────────── our addresses ─────────────────────────────

  /**
   * The runtime's view of the host's own addresses (16 bytes each, IPv4-mapped) and listen port.
   * When the set changes, every keymesh peer is told.
   */
  setLocalAddresses(addresses: Array<{ addr: Uint8Array; port: number }>, now: number): void {
    this.allDirty = true;
    this.clock = now;
    const key = (l: Array<{ addr: Uint8Array; port: number }>) => l.map((a) => `${keyId(a.addr)}:${a.port}`).sort().join(',');
    if (key(addresses) === key(this.localAddresses)) return;
    this.localAddresses = addresses.map((a) => ({ addr: a.addr.slice(), port: a.port }));
    for (const peer of this.peers.values()) if (peer.keypairs.current) sendAddresses(this, peer, now);
  }

  /**
   * The runtime saw the host's addresses, links or routes change: tell every peer at once (an
   * authenticated keepalive from our new source address lets it find us — after validating it,
   * for a keymesh peer), instead of waiting for the next timer.
   */
  localAddressesChanged(now: number): void {
    this.allDirty = true;
    this.clock = now;
    this.openers.reset(); // another network: other NATs in front of us, perhaps
    for (const peer of this.peers.values()) {
      if (!peer.keypairs.current || !peer.endpoint.path) continue;
      sendKeepalive(this, peer, now);
      // Our paths may all be gone: look for working ones now (a round ends at once if the
      // active path still works).
      peer.endpoint.startRecovery(now, true);
    }
  }

  /**
   * The runtime read an ICMP "time exceeded" off the socket's error queue: a datagram we sent to
   * addr:port (16 bytes, IPv4-mapped) ran out of TTL at the router `offender`; `payload` is the
   * start of that datagram's payload as the ICMP quoted it (punch.ts).
   */
  handleTimeExceeded(addr: Uint8Array, port: number, offender: Uint8Array | null, payload: Uint8Array, now: number): void {
    this.clock = now;
    onTimeExceeded(this, addr, port, offender, payload, now);
  }

  /** The same for an ICMP "port unreachable" (punch.ts: an opener that reached the peer's NAT). */
  handlePortUnreachable(addr: Uint8Array, port: number, offender: Uint8Array | null, payload: Uint8Array, now: number): void {
    this.clock = now;
    onPortUnreachable(this, addr, port, offender, payload, now);
  }

  // ───────────────────────────── helpers ─────────────────────────────

  /** @internal */ readonly jitterFn = (): number => this.jitter();

  /** @internal */
  jitter(): number {
    const r = this.random(2);
    return ((r[0] << 8) | r[1]) % REKEY_TIMEOUT_JITTER_MAX;
  }

  /** @internal */
  drop(reason: DropReason): DropReason {
    this.counters.drops[reason]++;
    return reason;
  }

  /** @internal For tests that forge control messages (paths.ts has the code). */
  sendExtension(peer: Peer, path: Path, m: ExtMessage, now: number, entry?: PathEntry): boolean {
    return sendExtension(this, peer, path, m, now, entry);
  }

  /** @internal */
  emitEndpointChange(peer: Peer, change: EndpointChange | null): void {
    if (!change) return;
    peer.pathChanges++;
    this.sink.event({ type: 'endpoint-changed', peer, from: change.from, to: change.to, reason: change.reason });
    // another path: what it carries is looked at (again) now
    pmtuActivated(this, peer, this.clock);
  }

  /**
   * The runtime read an ICMP "fragmentation needed" / "packet too big" (or a local EMSGSIZE) off
   * the socket's error queue about a datagram to addr:port: the path carries `mtu` bytes at the
   * IP level; `payload` is the start of that datagram as quoted (pmtu.ts).
   */
  handlePacketTooBig(addr: Uint8Array, port: number, mtu: number, payload: Uint8Array, now: number): void {
    this.clock = now;
    this.allDirty = true;
    onPacketTooBig(this, addr, port, mtu, payload, now);
  }
}
