/**
 * Mesh membership (keymesh's own; sans-I/O): peers admitted by a certificate from the mesh CA
 * instead of a `[Peer]` section.
 *
 * The certificate (cert.ts has the format) binds a WireGuard public key to a name, overlay
 * addresses and routed subnets. It proves itself, so nobody keeps a member database: a node that
 * has the CA accepts any public key whose certificate checks out, and a lighthouse is the
 * directory only because members show it their certificates.
 *
 *   unknown key ──initiation──▶ PENDING ──CERT_OWN, checks pass──▶ CERTIFIED (allowed IPs = the
 *        │     (bounded, rate-limited       │                        certificate's addresses
 *        │      per source, cookies          └──refused / PENDING_TIMEOUT──▶ forgotten)
 *        │      under load as any initiation)
 *        └──its certificate was introduced by a lighthouse first──▶ CERTIFIED at once
 *
 * A pending peer carries nothing but EXT_CERT: its data and every other extension message are
 * dropped (`notAdmitted`), and it is asked for its certificate (CERT_REQUEST) if it sends data
 * first. The side that initiates sends CERT_OWN before anything else of the new session (the
 * first message after the handshake response), so the responder admits it before its data.
 *
 * Every admission checks, each time (MeshAuthority.check): the CA's signature, the certificate's
 * and the CA's validity window, the revocation list, addresses and subnets inside the CA's
 * networks; and here, that the certificate's key is the session's static key. Each refusal has
 * a counter; nothing about a refused peer is kept.
 *
 * Revocation lists spread by gossip: a node passes a list newer than its own (higher serial,
 * the CA's signature checked) to every keymesh peer it holds a session with, and ends the
 * sessions of every peer the list revokes. Certified peers are forgotten after `idleForget` ms
 * without traffic and when their certificate expires.
 *
 * May touch: the engine's peers, routes, counters and mesh state; a peer's membership fields,
 * sessions and staged packets.
 */
import { touch } from './deadline-index.js';
import type { Path } from './endpoint.js';
import { keyId, type Engine } from './engine.js';
import { CERT_CHUNK, CERT_CRL, CERT_INTRODUCED, CERT_OWN, CERT_REQUEST, EXT_CERT } from './extension.js';
import { TokenBuckets } from './lighthouse.js';
import { introduceWaiting } from './lighthouse-lookup.js';
import { claimWaiting, introduceWaitingAddr } from './directory.js';
import { maybeHello, sendExtension } from './paths.js';
import { flushStaged } from './send.js';
import { Peer } from './peer.js';

/** A node certificate that checked out (cert.ts decodes and verifies; the engine sees only this). */
export interface MeshCert {
  /** The certificate's canonical encoding, passed on as is. */
  readonly bytes: Uint8Array;
  /** SHA-256 of `bytes`, hex. */
  readonly fingerprint: string;
  readonly name: string;
  /** The node's X25519 (WireGuard) public key. */
  readonly publicKey: Uint8Array;
  /** Overlay addresses (4 or 16 bytes) with the prefix length of their network. */
  readonly addresses: ReadonlyArray<{ addr: Uint8Array; bits: number }>;
  readonly subnets: ReadonlyArray<{ addr: Uint8Array; bits: number }>;
  readonly groups: readonly string[];
  readonly lighthouse: boolean;
  /** Unix seconds. */
  readonly notBefore: number;
  readonly notAfter: number;
}

/** What the engine needs of the mesh CA (mesh-authority.ts builds it from the configured files). */
export interface MeshAuthority {
  /** Our own certificate. */
  readonly own: MeshCert;
  /** The CA's DNS domain of the mesh's names ("mesh" if the authority has none). */
  readonly domain?: string;
  /** The CA's networks: every member's addresses and subnets lie inside them. */
  readonly networks: ReadonlyArray<{ addr: Uint8Array; bits: number }>;
  /** Decode and check a node certificate at `unixSec`: the certificate, or the refusal reason. */
  check(bytes: Uint8Array, unixSec: number): MeshCert | string;
  /** The newest revocation list held (to pass on), or null. */
  crl(): Uint8Array | null;
  /** A revocation list from a peer or a file: 'newer' (adopted), 'old' (not newer than ours), or a refusal reason. */
  offerCrl(bytes: Uint8Array): 'newer' | 'old' | string;
  isRevoked(fingerprint: string): boolean;
  /** The serial of the list in force, for display (null: none). */
  crlSerial?(): string | null;
}

/** Pending peers at most (beyond that, initiations from unknown keys are dropped until some expire). */
export const MAX_PENDING = 256;
/** A pending peer without a valid certificate is forgotten this long after its handshake. */
export const PENDING_TIMEOUT = 3000;
/** New pending peers per source host: per second, and burst. */
export const PENDING_RATE = 2;
export const PENDING_BURST = 8;
/** Certified peers are forgotten after this long without traffic (configurable: EngineOptions.meshIdleForget). */
export const DEFAULT_IDLE_FORGET = 10 * 60_000;
/** Certificates lighthouses introduced, kept until the peer they name is created (or pushed out). */
export const MAX_INTRODUCED = 1024;
/** A pending peer that sends data is asked for its certificate at most this often. */
export const CERT_REQUEST_INTERVAL = 500;

export interface MembershipCounters {
  /** Peers admitted by certificate (from pending, or at once from an introduction). */
  admitted: number;
  /** Pending peers created, and those forgotten without a valid certificate in time. */
  pending: number;
  pendingExpired: number;
  /** Initiations from unknown keys dropped: too many pending, or the source over its rate. */
  pendingFull: number;
  pendingRateLimited: number;
  /** Certificates refused, by reason (cert.ts's codes, and key-mismatch). */
  refused: Record<string, number>;
  /** Certified peers ended: revoked, expired, idle. */
  revoked: number;
  expired: number;
  forgotten: number;
  /** Revocation lists adopted (newer than ours) and messages passing one on. */
  crlAdopted: number;
  crlSent: number;
  /** Certificates sent (ours, and introductions by a lighthouse). */
  certsSent: number;
}

export function newMembershipCounters(): MembershipCounters {
  return { admitted: 0, pending: 0, pendingExpired: 0, pendingFull: 0, pendingRateLimited: 0, refused: {}, revoked: 0, expired: 0, forgotten: 0, crlAdopted: 0, crlSent: 0, certsSent: 0 };
}

/** The engine's membership state (null on an engine without a CA). */
export class Membership {
  readonly counters = newMembershipCounters();
  readonly pendingBudget = new TokenBuckets(PENDING_RATE, PENDING_BURST);
  pendingCount = 0;
  /** Certificates lighthouses introduced (keyId → certificate), oldest first. */
  readonly introduced = new Map<string, MeshCert>();

  constructor(
    public authority: MeshAuthority,
    readonly idleForget: number,
  ) {}

  refuse(reason: string): void {
    this.counters.refused[reason] = (this.counters.refused[reason] ?? 0) + 1;
  }
}

const unixSeconds = (engine: Engine, now: number) => Math.floor((now + engine.wallClockOffset) / 1000);

function sameKey(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Does this peer speak the extension channel (so it can be sent certificates and lists)? */
function meshCapable(peer: Peer): boolean {
  return peer.membership !== 'static' || peer.lighthouse || peer.endpoint.speaksKeymesh;
}

// ───────────────────────────── admission ─────────────────────────────

/**
 * Handshake (responder): an initiation names a static key we have no peer for. With a CA, a
 * candidate peer to finish the handshake with (it joins the engine only if the initiation
 * authenticates: admitUnknown); null when there is no CA or admission is closed to it now.
 */
export function candidateFor(engine: Engine, remoteStatic: Uint8Array, path: Path, now: number): Peer | null {
  const m = engine.membership;
  if (!m || !engine.local) return null;
  const id = keyId(remoteStatic);
  if (!m.introduced.has(id)) {
    if (m.pendingCount >= MAX_PENDING) {
      m.counters.pendingFull++;
      return null;
    }
    if (!m.pendingBudget.take(path.hostId, 1, now)) {
      m.counters.pendingRateLimited++;
      return null;
    }
  }
  return new Peer(remoteStatic.slice(), id, engine.local, engine.crypto, undefined, engine.mtu);
}

/**
 * The initiation from `peer` (made by candidateFor) authenticated: it joins — certified at once
 * if a lighthouse introduced it, else pending. False: its introduced certificate no longer checks
 * out (revoked or expired since), and it is refused.
 */
export function admitUnknown(engine: Engine, peer: Peer, now: number): boolean {
  const m = engine.membership!;
  const cert = m.introduced.get(peer.keyId);
  m.introduced.delete(peer.keyId);
  engine.peers.set(peer.keyId, peer);
  engine.allDirty = true;
  peer.membership = 'pending';
  peer.pendingUntil = now + PENDING_TIMEOUT;
  m.pendingCount++;
  if (!cert) {
    m.counters.pending++;
    return true;
  }
  if (!certify(engine, peer, cert.bytes, now)) return false;
  engine.sink.event({ type: 'peer-admitted', peer });
  claimWaiting(engine, peer);
  return true;
}

/**
 * Check `bytes` as `peer`'s certificate and make it a certified peer with exactly the
 * certificate's addresses and subnets as allowed IPs. On refusal a pending or certified peer is
 * forgotten (a static one keeps its configuration). Returns whether it was accepted.
 */
function certify(engine: Engine, peer: Peer, bytes: Uint8Array, now: number): boolean {
  const m = engine.membership!;
  const c = m.authority.check(bytes, unixSeconds(engine, now));
  const reason = typeof c === 'string' ? c : !sameKey(c.publicKey, peer.publicKey) ? 'key-mismatch' : null;
  if (reason !== null || typeof c === 'string') {
    m.refuse(reason ?? 'malformed');
    if (peer.membership !== 'static') forget(engine, peer);
    return false;
  }
  const was = peer.membership;
  peer.cert = c;
  touch(engine, peer);
  // names.ts: the certificate's name is the one it goes by
  if (peer.name && peer.name !== c.name && engine.peersByName.get(peer.name) === peer) engine.peersByName.delete(peer.name);
  engine.peersByName.set(c.name, peer);
  if (was === 'static') {
    // a configured lighthouse may leave its AllowedIPs to its certificate
    if (peer.lighthouse && engine.allowedIpsOf(peer).length === 0) allowCert(engine, peer, c);
    return true;
  }
  if (was === 'pending') m.pendingCount--;
  peer.membership = 'certified';
  peer.activityMark = peer.rxBytes + peer.txBytes;
  peer.activeAt = now;
  engine.routes.removeValue(peer);
  allowCert(engine, peer, c);
  if (was === 'pending') m.counters.admitted++;
  return true;
}

function allowCert(engine: Engine, peer: Peer, c: MeshCert): void {
  for (const a of c.addresses) engine.routes.insert(a.addr, a.addr.length === 4 ? 32 : 128, peer);
  for (const s of c.subnets) engine.routes.insert(s.addr, s.bits, peer);
}

/** A certificate a lighthouse introduced for `key`, checked: the certified peer (created if needed), or null. */
export function introducedPeer(engine: Engine, key: Uint8Array, now: number): Peer | null {
  const m = engine.membership;
  if (!m) return null;
  const id = keyId(key);
  const existing = engine.peers.get(id);
  if (existing) return existing;
  const cert = m.introduced.get(id);
  if (!cert || !engine.local) return null;
  m.introduced.delete(id);
  const peer = new Peer(key.slice(), id, engine.local, engine.crypto, undefined, engine.mtu);
  peer.membership = 'pending'; // for certify(): a peer not configured by hand
  peer.pendingUntil = now + PENDING_TIMEOUT;
  m.pendingCount++;
  engine.peers.set(id, peer);
  engine.allDirty = true;
  if (!certify(engine, peer, cert.bytes, now)) return null;
  engine.sink.event({ type: 'peer-admitted', peer });
  return peer;
}

/** Forget a peer admitted by certificate (or pending): sessions, routes, everything. */
export function forget(engine: Engine, peer: Peer): void {
  if (peer.membership === 'static') return;
  if (peer.membership === 'pending' && engine.membership) engine.membership.pendingCount--;
  peer.membership = 'static'; // so a second forget() does nothing
  engine.removePeer(peer.publicKey);
}

// ───────────────────────────── certificates on the extension channel ─────────────────────────────

/** Send a certificate or list in EXT_CERT pieces on the peer's active path. */
function sendBlob(engine: Engine, peer: Peer, purpose: number, bytes: Uint8Array, now: number): boolean {
  const path = peer.endpoint.path;
  if (!path) return false;
  for (let o = 0; o < bytes.length || (o === 0 && bytes.length === 0); o += CERT_CHUNK) {
    const data = bytes.subarray(o, Math.min(bytes.length, o + CERT_CHUNK));
    if (!sendExtension(engine, peer, path, { type: EXT_CERT, purpose, total: bytes.length, offset: o, data }, now)) return false;
    if (bytes.length === 0) break;
  }
  return true;
}

/** Our certificate, then our revocation list, to a peer we hold a session with. */
export function sendOurCert(engine: Engine, peer: Peer, now: number): void {
  const m = engine.membership;
  if (!m || peer.membership === 'pending' || !meshCapable(peer)) return;
  if (sendBlob(engine, peer, CERT_OWN, m.authority.own.bytes, now)) m.counters.certsSent++;
  const crl = m.authority.crl();
  if (crl && sendBlob(engine, peer, CERT_CRL, crl, now)) m.counters.crlSent++;
}

/** Lighthouse: pass `about`'s certificate to `to` (before telling it where `about` is). */
export function introduce(engine: Engine, to: Peer, about: Peer, now: number): void {
  const m = engine.membership;
  if (!m || !about.cert || to.membership === 'pending' || !meshCapable(to)) return;
  if (sendBlob(engine, to, CERT_INTRODUCED, about.cert.bytes, now)) m.counters.certsSent++;
}

/** A session with `peer` is complete: the initiator's certificate goes first (handshake.ts calls this before staged data). */
export function onSessionComplete(engine: Engine, peer: Peer, now: number): void {
  if (!engine.membership || peer.membership === 'pending') return;
  sendOurCert(engine, peer, now);
}

/**
 * A transport packet from a pending peer that is not EXT_CERT: dropped; if it carries data the
 * peer believes it is admitted (its certificate was lost), so ask for it.
 */
export function fromPending(engine: Engine, peer: Peer, now: number): void {
  if (now - peer.certRequestedAt < CERT_REQUEST_INTERVAL) return;
  peer.certRequestedAt = now;
  sendBlob(engine, peer, CERT_REQUEST, new Uint8Array(0), now);
}

/** EXT_CERT from `peer`: reassemble, then act on the whole certificate or list. */
export function onCertPiece(engine: Engine, peer: Peer, purpose: number, total: number, offset: number, data: Uint8Array, now: number): void {
  const m = engine.membership;
  if (!m) return;
  if (purpose === CERT_REQUEST) {
    sendOurCert(engine, peer, now);
    return;
  }
  let b = peer.blobIn;
  if (offset === 0) b = peer.blobIn = { purpose, total, buf: new Uint8Array(total), got: 0 };
  if (!b || b.purpose !== purpose || b.total !== total || b.got !== offset) {
    peer.blobIn = null; // out of order: this blob is lost (it is sent again with the next session)
    return;
  }
  b.buf.set(data, offset);
  b.got += data.length;
  if (b.got < total) return;
  peer.blobIn = null;
  const bytes = b.buf;
  if (purpose === CERT_OWN) {
    const was = peer.membership;
    if (!certify(engine, peer, bytes, now)) return;
    if (was === 'pending') {
      sendOurCert(engine, peer, now); // our answer, and proof to it that it is in
      engine.sink.event({ type: 'peer-admitted', peer });
      maybeHello(engine, peer, now); // its HELLO came while it was pending, and was dropped
      claimWaiting(engine, peer);
      if (peer.staged.length > 0) flushStaged(engine, peer, now);
      // a lighthouse: members that asked for it (by key or address) are told now
      introduceWaiting(engine, peer, now);
      introduceWaitingAddr(engine, peer, now);
    }
  } else if (purpose === CERT_CRL) {
    onCrl(engine, bytes, now);
  } else if (purpose === CERT_INTRODUCED) {
    if (!peer.lighthouse) {
      m.refuse('not-a-lighthouse');
      return;
    }
    const c = m.authority.check(bytes, unixSeconds(engine, now));
    if (typeof c === 'string') {
      m.refuse(c);
      return;
    }
    const id = keyId(c.publicKey);
    if (engine.local && sameKey(c.publicKey, engine.local.publicKey)) return;
    m.introduced.delete(id);
    m.introduced.set(id, c);
    if (m.introduced.size > MAX_INTRODUCED) m.introduced.delete(m.introduced.keys().next().value!);
    // a certified peer we already have: a renewed certificate takes its place now
    const existing = engine.peers.get(id);
    if (existing && existing.membership === 'certified' && existing.cert?.fingerprint !== c.fingerprint) certify(engine, existing, bytes, now);
  }
}

// ───────────────────────────── revocation ─────────────────────────────

/** A revocation list from a peer or the configuration: adopt it if newer, pass it on, end what it revokes. */
export function onCrl(engine: Engine, bytes: Uint8Array, now: number): 'newer' | 'old' | string {
  const m = engine.membership;
  if (!m) return 'no-ca';
  const r = m.authority.offerCrl(bytes);
  if (r !== 'newer') {
    if (r !== 'old') m.refuse(r);
    return r;
  }
  m.counters.crlAdopted++;
  endRevoked(engine);
  const crl = m.authority.crl();
  if (crl) {
    for (const p of [...engine.peers.values()]) {
      if (p.membership !== 'pending' && p.keypairs.current && meshCapable(p) && sendBlob(engine, p, CERT_CRL, crl, now)) m.counters.crlSent++;
    }
  }
  return r;
}

/** Sessions with peers whose certificate is revoked end now; certified ones are forgotten. */
export function endRevoked(engine: Engine): void {
  const m = engine.membership;
  if (!m) return;
  for (const [id, c] of m.introduced) if (m.authority.isRevoked(c.fingerprint)) m.introduced.delete(id);
  for (const p of [...engine.peers.values()]) {
    if (!p.cert || !m.authority.isRevoked(p.cert.fingerprint)) continue;
    m.counters.revoked++;
    if (p.membership === 'static') {
      // configured by hand: kept, but its certificate no longer names it
      p.cert = null;
      continue;
    }
    engine.sink.event({ type: 'peer-removed', peer: p, reason: 'revoked' });
    forget(engine, p);
  }
}

// ───────────────────────────── timers ─────────────────────────────

/** When membership has work for this peer: a pending timeout, the idle check, its certificate's expiry. */
export function membershipDeadline(engine: Engine, p: Peer): number {
  if (p.membership === 'pending') return p.pendingUntil;
  if (p.membership !== 'certified' || !engine.membership) return Infinity;
  const expiry = p.cert ? p.cert.notAfter * 1000 - engine.wallClockOffset : Infinity;
  return Math.min(p.activeAt + engine.membership.idleForget, expiry);
}

/** The deadline passed: forget the peer if it is still pending, expired or idle. Returns whether it was removed. */
export function fireMembership(engine: Engine, p: Peer, now: number): boolean {
  const m = engine.membership!;
  if (p.membership === 'pending') {
    if (now < p.pendingUntil) return false;
    m.counters.pendingExpired++;
    forget(engine, p);
    return true;
  }
  if (p.cert && now + engine.wallClockOffset >= p.cert.notAfter * 1000) {
    m.counters.expired++;
    engine.sink.event({ type: 'peer-removed', peer: p, reason: 'certificate expired' });
    forget(engine, p);
    return true;
  }
  const mark = p.rxBytes + p.txBytes;
  if (mark !== p.activityMark) {
    p.activityMark = mark;
    p.activeAt = now;
    return false;
  }
  if (now - p.activeAt < m.idleForget) return false;
  m.counters.forgotten++;
  engine.sink.event({ type: 'peer-removed', peer: p, reason: 'idle' });
  forget(engine, p);
  return true;
}

/** A new authority (reload: renewed certificate, CA, list): re-check every certified peer under it. */
export function reauthorize(engine: Engine, authority: MeshAuthority, now: number): void {
  const m = engine.membership;
  if (!m) return;
  const renewed = m.authority.own.fingerprint !== authority.own.fingerprint;
  m.authority = authority;
  for (const p of [...engine.peers.values()]) {
    if (p.membership === 'certified' && p.cert && !certify(engine, p, p.cert.bytes, now)) {
      engine.sink.event({ type: 'peer-removed', peer: p, reason: 'no longer valid under the new configuration' });
    }
  }
  endRevoked(engine);
  if (renewed) for (const p of engine.peers.values()) if (p.keypairs.current) sendOurCert(engine, p, now);
}

/** Used by the relay and the drops: is this peer admitted to carry traffic? */
export function admitted(p: Peer): boolean {
  return p.membership !== 'pending';
}
