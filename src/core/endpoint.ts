/**
 * Where a peer's packets go: the per-peer endpoint cache. All roaming logic lives here.
 *
 * A `Path` is an opaque handle owned by the runtime (today: a remote UDP address and port); the
 * core compares paths by `id` and feeds `cookieBytes` into cookie MACs.
 *
 * Two regimes:
 *
 *  - A stock WireGuard peer (or one not yet known to speak keymesh) gets WireGuard's semantics
 *    (whitepaper §2.1): the endpoint moves to the source of any packet that *authenticated*.
 *
 *  - A keymesh peer (it answered our HELLO on the extension channel) moves only on proof of
 *    return routability. An authenticated packet from an unknown address makes that address a
 *    candidate; the engine sends a PATH_CHALLENGE there and the active path changes only when the
 *    matching PATH_RESPONSE arrives *on that path* (RFC 9000 §8.2 in spirit). Until then traffic
 *    keeps flowing on the old path and is duplicated to the candidate (make-before-break), but
 *    never more than AMPLIFICATION_FACTOR × the bytes received from it (RFC 9000 §8.1), so a
 *    spoofed source cannot turn us into an amplifier or steal the session.
 *
 * Multihoming: a keymesh peer announces every address it can be reached at (ADDRESSES); each
 * becomes a candidate, is validated, and is then kept warm as a spare by a probe every
 * SPARE_PROBE_INTERVAL. While we send data, the active path must show signs of life: when nothing
 * authenticated has come back on it for LIVENESS (≥ 3 RTTs), it is probed, and if the probe goes
 * unanswered for PROBE_TIMEOUT (≥ 2 RTTs) traffic fails over to the best spare.
 *
 *      new ──challenge──▶ validating ──response on that path──▶ validated ──(peer now sends from it)──▶ active
 *                              │ no response after MAX_CHALLENGES
 *                              ▼
 *                            failed ──(authenticated packet from it again, later)──▶ validating
 *
 * Recovery (the cache's liveness does not depend on lucky timing): when the active path stops
 * answering and no validated spare can take over, or when our own addresses change, the cache
 * starts recovery rounds (RECOVERY_MIN doubling to RECOVERY_MAX apart): every candidate it knows —
 * including the peer's announced addresses reached from each of our current local ends — is
 * challenged again, and our addresses are announced on every path, until one validates and
 * takes over. A challenge from a path we never challenged makes it a candidate too, so two nodes
 * whose only working direction is one another's probes still find each other.
 *
 * Relay paths (lighthouse.ts): a path whose `via` is set carries the peer's datagrams through a
 * lighthouse. It is validated like any path, but a direct path always wins over it: a validated
 * direct path replaces an active relay at once; a relay replaces a direct path only when that one
 * is dead (or never worked); authenticated packets arriving over a relay never pull traffic off a
 * working direct path (no flapping back); and relay spares are kept warm only while no direct
 * path carries the traffic (so a lighthouse carries nothing for a pair that punched through).
 */

import type { Plpmtud } from './plpmtud.js';

export interface Path {
  /** Identity of the path: equal ids mean the same path (e.g. "192.0.2.1:51820", "[2001:db8::1]:51820"). */
  readonly id: string;
  /** Identity of the remote host alone, without port — the key for per-source rate limiting. */
  readonly hostId: string;
  /** Bytes naming the remote source for the cookie MAC (whitepaper §5.4.7: IP address ‖ port). */
  readonly cookieBytes: Uint8Array;
  /** Set on relay paths only: the key id of the lighthouse that carries them. */
  readonly via?: string;
}

export function isRelay(p: Path): boolean {
  return p.via !== undefined;
}

export type PathStateName = 'new' | 'validating' | 'validated' | 'failed';

/** RFC 9000 §8.1: at most this many bytes sent to an unvalidated address per byte received from it. */
export const AMPLIFICATION_FACTOR = 3;
/** First challenge retransmission timeout before any RTT sample. */
export const INITIAL_CHALLENGE_TIMEOUT = 250;
export const MAX_CHALLENGES = 4;
/** Candidate paths remembered per peer (oldest unused ones are forgotten first). */
export const MAX_PATHS = 16;
/** Bytes an announced (not yet heard from) address may be sent: a few challenges, no more. */
export const ANNOUNCED_ALLOWANCE = MAX_CHALLENGES * 48;
/** Spares are probed this often to stay warm (and to notice when they break). */
export const SPARE_PROBE_INTERVAL = 1000;
/** A spare that misses this many probes in a row is marked failed. */
export const SPARE_MAX_MISSES = 3;
/** A path that once worked and then failed is re-probed this often, so it can come back as a spare. */
export const FAILED_PROBE_INTERVAL = 5000;
/** Silence on the active path (while we send) before probing it: max(3 × srtt, this). */
export const LIVENESS_MIN = 150;
/** An unanswered probe after max(2 × srtt, this) means the path is dead. */
export const PROBE_TIMEOUT_MIN = 100;
/** "We are sending": data went out within this window. */
export const SENDING_WINDOW = 1000;
/** Hysteresis: a spare replaces a working active path only if its RTT is below this fraction… */
export const RTT_SWITCH_FRACTION = 0.75;
/** …and at least this many ms lower (small absolute differences are noise on fast links). */
export const RTT_SWITCH_MARGIN = 2;
/** A path we switched away from is not chosen again for this long, unless the active path dies. */
export const HOLD_DOWN = 10_000;
/**
 * Recovery: while the active path is dead and nothing validated replaces it, every known
 * candidate is challenged again and our addresses re-announced on every path, first after
 * RECOVERY_MIN, doubling up to RECOVERY_MAX between rounds…
 */
export const RECOVERY_MIN = 100;
export const RECOVERY_MAX = 3200;
/** …for as long as we send data to the peer, and this long after the last reason to look (90 s, as REKEY_ATTEMPT_TIME). */
export const RECOVERY_GIVE_UP = 90_000;
/** After a punched IPv4 candidate failed, nothing goes to it for this long (punch.ts). */
export const PUNCH_QUIET = 35_000;
/** Bytes a candidate may be sent in one recovery round, whatever it sent us: a challenge and an ADDRESSES. */
export const RECOVERY_ALLOWANCE = 384;
/** ADDRESSES carries no acknowledgement: each announcement is repeated after these delays (ms), in case it was lost. */
export const ANNOUNCE_REPEATS = [1000, 3000] as const;

/** A path whose searched size is this much below the best of its kind's carries "clearly less" (pmtu.ts). */
export const MTU_SWITCH_MARGIN = 64;

/** What a path is known to carry (its completed path MTU search, in datagram bytes), or null. */
export function knownSize(e: PathEntry): number | null {
  return e.mtu !== null && e.mtu.state === 'complete' ? e.mtu.current : null;
}

/**
 * The path choice's cost of a path: its RTT — or, for a path known to carry clearly less than the
 * best known path of its kind (direct or relay), its RTT made worse by exactly the switching
 * hysteresis (÷ RTT_SWITCH_FRACTION + RTT_SWITCH_MARGIN). So at equal RTTs a path that carries
 * only 1280 bytes loses to one that carries 1500 — and wins only with a clearly lower RTT — and a
 * pair of such paths never flaps: each direction of a switch needs a clear difference.
 */
export function pathCost(e: PathEntry, bestDirect: number, bestRelay: number): number {
  const s = knownSize(e);
  const top = isRelay(e.path) ? bestRelay : bestDirect;
  return s !== null && s < top - MTU_SWITCH_MARGIN ? e.srtt! / RTT_SWITCH_FRACTION + RTT_SWITCH_MARGIN : e.srtt!;
}

/**
 * The path choice, as a pure function (tested against a brute-force reference): among validated
 * paths answering their probes, the lowest cost (pathCost: the RTT, worse for a path known to
 * carry clearly less). When the active path is dead any such path will do; while it works, a
 * spare must beat it clearly (RTT_SWITCH_FRACTION and RTT_SWITCH_MARGIN) and must not be in its
 * hold-down.
 */
export function choosePath(entries: readonly PathEntry[], active: PathEntry | null, activeDead: boolean, now: number): PathEntry | null {
  let bestDirect = 0;
  let bestRelay = 0;
  for (const e of entries) {
    const s = knownSize(e);
    if (s === null) continue;
    if (isRelay(e.path)) bestRelay = Math.max(bestRelay, s);
    else bestDirect = Math.max(bestDirect, s);
  }
  let best: PathEntry | null = null;
  let bestCost = Infinity;
  for (const e of entries) {
    if (e === active || e.state !== 'validated' || e.probeMisses > 0 || e.srtt === null) continue;
    if (!activeDead && now - e.abandonedAt < HOLD_DOWN) continue;
    const c = pathCost(e, bestDirect, bestRelay);
    if (best && isRelay(e.path) !== isRelay(best.path)) {
      if (isRelay(best.path)) {
        best = e; // direct before relay, whatever the RTTs
        bestCost = c;
      }
      continue;
    }
    if (!best || c < bestCost || (c === bestCost && e.lastReceive > best.lastReceive)) {
      best = e;
      bestCost = c;
    }
  }
  if (!best || activeDead || !active) return best;
  if (isRelay(active.path) !== isRelay(best.path)) return isRelay(active.path) ? best : null;
  if (active.srtt === null) return null;
  const activeCost = pathCost(active, bestDirect, bestRelay);
  return bestCost < activeCost * RTT_SWITCH_FRACTION && bestCost <= activeCost - RTT_SWITCH_MARGIN ? best : null;
}

export class PathEntry {
  state: PathStateName = 'new';
  /** Smoothed round-trip time in ms (from challenge/response), null before a sample. */
  srtt: number | null = null;
  lastReceive = -Infinity;
  /** Last authenticated packet that was not a path probe: where the peer actually sends from. */
  lastTraffic = -Infinity;
  lastSend = -Infinity;
  bytesReceived = 0;
  /** Bytes sent while unvalidated: bounded by AMPLIFICATION_FACTOR × bytesReceived. */
  bytesSentUnvalidated = 0;
  /**
   * Outstanding challenges on this path, oldest first (at most MAX_CHALLENGES): an answer to any
   * of them validates it, so a path whose round trip exceeds the retry timer still validates in
   * about one round trip; the RTT sample is taken from the challenge answered.
   */
  challengesOut: Array<{ token: Uint8Array; sentAt: number }> = [];
  challenges = 0;
  /** When the next challenge retransmission is due (Infinity when none). */
  retryAt = Infinity;
  /** Liveness probe of a validated path: outstanding token, when it went out, misses in a row. */
  probeToken: Uint8Array | null = null;
  probeSentAt = -Infinity;
  probeMisses = 0;
  nextProbeAt = -Infinity;
  /** The peer told us about this address (ADDRESSES), rather than us hearing from it. */
  announced = false;
  /** When we last switched away from this path (for the hold-down). */
  abandonedAt = -Infinity;
  /** A lighthouse gave us this address as a candidate (hole punching). */
  punched = false;
  /** When NAT openers last went to it (punch.ts), -Infinity: never. */
  openedAt = -Infinity;
  /** After a failed punch nothing goes to it before this (punch.ts: PUNCH_QUIET). */
  quietUntil = -Infinity;
  /** Our low-TTL openers reached the candidate's own address (its "port unreachable" came back): its NAT is our NAT's neighbour (punch.ts). */
  openerArrived = false;
  /** What this path carries (pmtu.ts, plpmtud.ts); null until first needed. */
  mtu: Plpmtud | null = null;
  /** Where `mtu` comes from: our probes (keymesh peers), the kernel's route (stock peers), or the configuration alone. */
  mtuSource: 'probe' | 'kernel' | 'config' = 'config';

  constructor(readonly path: Path) {}

  get validated(): boolean {
    return this.state === 'validated';
  }
}

export type EndpointChange = { from: Path | null; to: Path; reason: string };

export interface AuthResult {
  change: EndpointChange | null;
  /** The engine should send a PATH_CHALLENGE on this entry's path (call challengeSent after). */
  challenge: PathEntry | null;
}

const NONE: AuthResult = { change: null, challenge: null };

export class PeerEndpoint {
  private readonly entries = new Map<string, PathEntry>();
  private activeEntry: PathEntry | null = null;
  /** The engine time of the call in progress (for hold-down bookkeeping inside activate). */
  private clock = -Infinity;
  /** Set when the peer answered our HELLO: roaming then needs proof (path validation). */
  speaksKeymesh = false;
  /** Engine time we last sent a data packet to this peer. */
  lastDataSent = -Infinity;
  /** A stock peer's session stays on path `stickTo` until then, whatever arrives elsewhere (stock-paths.ts). */
  stickUntil = -Infinity;
  stickTo: string | null = null;

  /** The path to send on, or null when the peer has never been heard from and has no configured endpoint. */
  get path(): Path | null {
    return this.activeEntry?.path ?? null;
  }

  get active(): PathEntry | null {
    return this.activeEntry;
  }

  /** Engine time of the last authenticated packet on the active path. */
  get lastReceived(): number {
    return this.activeEntry?.lastReceive ?? -Infinity;
  }

  list(): PathEntry[] {
    return [...this.entries.values()];
  }

  /** The entries without copying them into an array (for deadline computations, which run often). */
  values(): IterableIterator<PathEntry> {
    return this.entries.values();
  }

  /** How many paths are known (without building the list: the data path asks per batch). */
  get size(): number {
    return this.entries.size;
  }

  private entry(path: Path): PathEntry {
    let e = this.entries.get(path.id);
    if (!e) {
      if (this.entries.size >= MAX_PATHS) this.evict();
      e = new PathEntry(path);
      this.entries.set(path.id, e);
    }
    return e;
  }

  private evict(): void {
    let victim: PathEntry | null = null;
    for (const e of this.entries.values()) {
      if (e === this.activeEntry) continue;
      if (!victim || e.lastReceive < victim.lastReceive) victim = e;
    }
    if (victim) this.entries.delete(victim.path.id);
  }

  private activate(e: PathEntry, reason: string): EndpointChange | null {
    const from = this.activeEntry;
    if (from === e) return null;
    if (from) from.abandonedAt = this.clock;
    this.activeEntry = e;
    e.state = 'validated';
    e.retryAt = Infinity;
    e.probeMisses = 0;
    this.nextLivenessAt = Infinity;
    return { from: from?.path ?? null, to: e.path, reason };
  }

  /** Set by configuration (`Endpoint =` or UAPI `endpoint=`): takes effect at once. */
  configure(path: Path): EndpointChange | null {
    return this.activate(this.entry(path), 'configured');
  }

  /**
   * Should be called after a packet of `bytes` bytes from `path` authenticated (a handshake
   * message, or a transport packet that passed AEAD and the replay check). `newest` is false for a
   * transport packet numbered below one already received (overtaken in the network): it shows
   * the path works, but says nothing about where the peer is now, so it never moves the session.
   */
  authenticatedFrom(path: Path, now: number, bytes: number, newest = true): AuthResult {
    this.clock = now;
    const e = this.entry(path);
    e.lastReceive = now;
    if (newest) e.lastTraffic = now;
    e.bytesReceived += bytes;
    if (e === this.activeEntry) {
      this.alive();
      return NONE;
    }
    if (this.activeEntry === null) return { change: this.activate(e, 'first contact'), challenge: null };
    // Packets over a relay never pull traffic off a direct path that works (no flapping back).
    if (isRelay(e.path) && !isRelay(this.activeEntry.path) && !this.activeDead()) return NONE;
    if (!this.speaksKeymesh) {
      // just moved on purpose (a path probe answered there: stock-paths.ts): late packets on the
      // path we left do not pull the session back; the peer follows our next packets here
      if (now < this.stickUntil && this.activeEntry.path.id === this.stickTo) return NONE;
      return { change: this.activate(e, 'roamed (WireGuard semantics)'), challenge: null };
    }
    if (e.state === 'validated') return newest ? { change: this.activate(e, 'peer moved to a validated path'), challenge: null } : NONE;
    if (e.state === 'validating') return NONE;
    // new or failed: it must prove it can receive
    return { change: null, challenge: e };
  }

  /**
   * A path challenge or response authenticated on `path`: it shows the path works but says nothing
   * about where the peer wants traffic, so it never moves the active path by itself.
   */
  heard(path: Path, now: number, bytes: number): PathEntry | null {
    const e = this.entry(path);
    e.lastReceive = now;
    e.bytesReceived += bytes;
    if (e === this.activeEntry) {
      this.alive();
      return null;
    }
    // The peer reaches us from a path we never validated (it probes us from an address we have
    // not heard of, or whose announcement was lost): make it a candidate. Without this, two nodes
    // whose only traffic is probes on paths the other does not know would never find each other.
    if (!this.speaksKeymesh || isRelay(e.path)) return null;
    // (A path that once validated and then failed is re-probed on its own schedule instead.)
    if (e.probeToken || e.srtt !== null) return null;
    if (e.state === 'validating' && e.challenges === 0) return e; // held for the peer's PUNCH_OPEN (punch.ts): it has opened
    if (e.state === 'new' || (e.state === 'failed' && now - e.lastSend >= SPARE_PROBE_INTERVAL)) return e;
    return null;
  }

  /** The engine sent a challenge with `token` on e's path. */
  challengeSent(e: PathEntry, token: Uint8Array, now: number): void {
    e.state = 'validating';
    e.challengesOut.push({ token, sentAt: now });
    if (e.challengesOut.length > MAX_CHALLENGES) e.challengesOut.shift();
    e.challenges++;
    e.lastSend = now;
    const rto = e.srtt !== null ? Math.max(2 * e.srtt, 50) : INITIAL_CHALLENGE_TIMEOUT * 2 ** (e.challenges - 1);
    e.retryAt = now + rto;
  }

  /**
   * A PATH_RESPONSE with `token` arrived on `path`. Returns the change when the path is validated
   * and the peer now sends from it (its latest authenticated packets came from there).
   */
  responseReceived(path: Path, token: Uint8Array, now: number): EndpointChange | null {
    this.clock = now;
    const e = this.entries.get(path.id);
    if (e && e.probeToken && sameBytes(e.probeToken, token)) {
      // a liveness probe came back: the path works; refresh its RTT
      const sample = now - e.probeSentAt;
      e.srtt = e.srtt === null ? sample : (7 * e.srtt + sample) / 8;
      e.probeToken = null;
      e.probeMisses = 0;
      if (e.state === 'failed') e.state = 'validated';
      const active = this.activeEntry;
      // the active path missed its last probe and nothing came back on it since (or it was never
      // heard from at all): any working path beats it
      const activeSilent =
        active !== null && active !== e && (active.lastReceive === -Infinity || (active.probeMisses > 0 && active.lastReceive <= active.probeSentAt));
      const better = choosePath(this.list(), active, activeSilent, now);
      if (better && activeSilent) return this.activate(better, 'active path went silent: failover to a path that answered');
      if (!better) return null;
      const larger = knownSize(better) !== null && knownSize(active!) !== null && knownSize(better)! > knownSize(active!)!;
      return this.activate(
        better,
        larger && better.srtt! >= active!.srtt! * RTT_SWITCH_FRACTION
          ? `carries more (path MTU ${better.mtu!.pmtu} vs ${active!.mtu!.pmtu}) at a similar RTT`
          : `lower RTT (${better.srtt!.toFixed(1)} ms vs ${active!.srtt!.toFixed(1)} ms)`,
      );
    }
    const answered = e && e.state === 'validating' ? e.challengesOut.find((c) => sameBytes(c.token, token)) : undefined;
    if (!e || !answered) return null;
    const sample = now - answered.sentAt;
    e.srtt = e.srtt === null ? sample : (7 * e.srtt + sample) / 8;
    e.state = 'validated';
    e.challengesOut = [];
    e.retryAt = Infinity;
    e.challenges = 0;
    e.probeMisses = 0; // it answered: whatever probes it missed before, it works now
    const active = this.activeEntry;
    if (!active) return this.activate(e, 'path validated');
    // A direct path beats a relay; a relay is taken only when the direct path does not work.
    if (isRelay(active.path) !== isRelay(e.path)) {
      if (isRelay(active.path)) return this.activate(e, 'direct path validated: leaving the relay');
      return this.activeDead() ? this.activate(e, `direct path not answering: relay via ${e.path.id}`) : null;
    }
    // Switch only if the peer's own traffic now comes from there (it moved); an announced spare
    // that merely answered stays a spare — unless the active path is dead, when any path that
    // answers is better than none.
    if (e.lastTraffic >= active.lastTraffic) return this.activate(e, 'path validated');
    if (this.activeDead() && e.srtt !== null) return this.activate(e, 'active path not answering: a validated candidate takes over');
    return null;
  }

  /** Candidates due for a challenge retransmission now; those out of tries are marked failed. */
  dueChallenges(now: number): PathEntry[] {
    const due: PathEntry[] = [];
    for (const e of this.entries.values()) {
      if (e.state !== 'validating' || e.retryAt > now) continue;
      if (e.challenges >= MAX_CHALLENGES) {
        failChallenges(e);
        // a punch that opened and probed and got nothing: let the NATs forget it first (punch.ts)
        if (e.openedAt > -Infinity) e.quietUntil = now + PUNCH_QUIET;
      } else due.push(e);
    }
    return due;
  }

  /**
   * The peer announced these paths (ADDRESSES): each unknown or failed one becomes a candidate
   * to challenge. Returns the entries the engine should challenge now.
   */
  announced(paths: Path[]): PathEntry[] {
    if (!this.speaksKeymesh) return [];
    const out: PathEntry[] = [];
    for (const p of paths) {
      const e = this.entry(p);
      if (!e.announced) {
        e.announced = true;
        e.bytesReceived += Math.ceil(ANNOUNCED_ALLOWANCE / AMPLIFICATION_FACTOR); // budget: a few challenges, no more
      }
      if (e === this.activeEntry || e.state === 'validated' || e.state === 'validating') continue;
      out.push(e);
    }
    return out;
  }

  /**
   * A lighthouse gave these paths as candidates for the peer (hole punching): each one not
   * already working becomes a candidate with a fresh allowance of a few challenges. Unlike
   * announced(), this does not wait for HELLO: a peer found through a lighthouse speaks keymesh.
   */
  candidates(paths: Path[], now: number): PathEntry[] {
    const out: PathEntry[] = [];
    for (const p of paths) {
      const e = this.entry(p);
      if (e === this.activeEntry || e.state === 'validated' || e.state === 'validating') continue;
      if (now < e.quietUntil) continue; // a failed punch's quiet (punch.ts)
      e.announced = true;
      e.punched = true;
      e.bytesReceived += Math.ceil(ANNOUNCED_ALLOWANCE / AMPLIFICATION_FACTOR);
      e.state = 'new';
      out.push(e);
    }
    return out;
  }

  /** A relay path to the peer (through a lighthouse we have a session with); returns its entry. */
  addRelay(path: Path): PathEntry {
    return this.entry(path);
  }

  /** Entries never challenged yet (candidates that arrived before there was a session to challenge them with). */
  unchallenged(): PathEntry[] {
    const out: PathEntry[] = [];
    for (const e of this.entries.values()) if (e.state === 'new' && e !== this.activeEntry && (e.punched || isRelay(e.path))) out.push(e);
    return out;
  }

  /** The active path is missing, failing its probes, or never heard from. */
  activeDead(): boolean {
    const a = this.activeEntry;
    return !a || a.state === 'failed' || a.probeMisses > 0 || a.lastReceive === -Infinity;
  }

  /** Relay spares are kept warm only while no direct path carries the traffic. */
  private keepWarm(e: PathEntry): boolean {
    if (!isRelay(e.path)) return true;
    const a = this.activeEntry;
    // …and while the direct path is failing, so one is ready to take over
    return !a || isRelay(a.path) || this.activeDead();
  }

  private probeTimeout(e: PathEntry): number {
    return Math.max(2 * (e.srtt ?? 0), PROBE_TIMEOUT_MIN);
  }

  private liveness(e: PathEntry): number {
    return Math.max(3 * (e.srtt ?? 0), LIVENESS_MIN);
  }

  /** Should be called when data is sent to the peer: arms the active path's liveness check. */
  dataSent(now: number): void {
    this.lastDataSent = now;
    const a = this.activeEntry;
    if (!this.speaksKeymesh || !a || a.probeToken || this.nextLivenessAt !== Infinity) return;
    // Silence on the active path since its last sign of life, while we keep sending, is suspicious.
    this.nextLivenessAt = Math.max(a.lastReceive, now - this.liveness(a)) + this.liveness(a);
  }

  /**
   * Liveness work due at `now`: which validated paths to probe (the engine sends a challenge and
   * calls probeSent), and a failover when the active path went silent and did not answer.
   */
  dueProbes(now: number): { probe: PathEntry[]; change: EndpointChange | null; lost: Path | null } {
    this.clock = now;
    const probe: PathEntry[] = [];
    let change: EndpointChange | null = null;
    let lost: Path | null = null;
    if (!this.speaksKeymesh) return { probe, change, lost };
    const active = this.activeEntry;
    for (const e of [...this.entries.values()]) {
      if (e.probeToken && now - e.probeSentAt >= this.probeTimeout(e)) {
        e.probeToken = null;
        if (e.lastReceive > e.probeSentAt) {
          // the probe or its answer was lost, but authenticated packets kept arriving on this
          // path after it went out: the path works, and a lost probe is not a miss
          e.probeMisses = 0;
          continue;
        }
        e.probeMisses++;
        if (e === active) {
          const spare = choosePath(this.list(), e, true, now);
          if (spare) {
            e.state = 'failed';
            this.nextLivenessAt = Infinity;
            change = this.activate(spare, 'active path went silent: failover to a validated spare');
          } else if (now - this.lastDataSent < SENDING_WINDOW * 10) {
            if (e.probeMisses === 1) {
              lost = e.path; // first miss with no spare: worth reporting once
              this.startRecovery(now, false);
            }
            // paths that worked before but missed a probe lately (perhaps only from loss) are
            // re-probed now, at this backoff's pace, rather than at their next regular interval
            for (const f of this.entries.values()) {
              if (f !== e && f.srtt !== null && !f.probeToken && (f.state === 'failed' || f.probeMisses > 0)) f.nextProbeAt = now;
            }
            // no spare: keep probing (backing off to once a second) so recovery is quick
            this.nextLivenessAt = now + Math.min(PROBE_TIMEOUT_MIN * 2 ** e.probeMisses, SENDING_WINDOW);
          }
        } else if (e.probeMisses >= SPARE_MAX_MISSES) {
          failChallenges(e);
        }
      }
    }
    const a = this.activeEntry;
    if (a && now >= this.nextLivenessAt) {
      this.nextLivenessAt = Infinity;
      if (!a.probeToken && now - a.lastReceive >= this.liveness(a)) probe.push(a);
    }
    // Spares are probed every SPARE_PROBE_INTERVAL to stay warm; while there is one, so is the
    // active path, so their RTTs can be compared.
    let spares = false;
    for (const e of this.entries.values()) {
      if (e === this.activeEntry || !this.keepWarm(e)) continue;
      if (e.state === 'failed' && e.srtt !== null && !e.probeToken && now >= e.nextProbeAt) {
        // it answered once: try it now and then (an answer makes it a validated spare again)
        probe.push(e);
        continue;
      }
      if (e.state !== 'validated') continue;
      spares = true;
      if (!e.probeToken && now >= e.nextProbeAt) probe.push(e);
    }
    const act = this.activeEntry;
    if (spares && act && !act.probeToken && now >= act.nextProbeAt && !probe.includes(act)) probe.push(act);
    return { probe, change, lost };
  }

  /** Active-path liveness check deadline (Infinity when not armed). */
  private nextLivenessAt = Infinity;

  /** Should be called after an authenticated packet arrived on the active path. */
  private alive(): void {
    this.nextLivenessAt = Infinity;
  }

  /** A challenge could not be sent (no session, or over the amplification budget): give up on e for now. */
  challengeBlocked(e: PathEntry): void {
    failChallenges(e);
  }

  /** A challenge was held back (punch.ts): e waits, counting as being validated, and is looked at again at `at`. */
  challengeHeld(e: PathEntry, at: number): void {
    e.state = 'validating';
    e.retryAt = at;
  }

  /** A held challenge was never let go (the peer did not open in time): e fails, with no quiet (nothing full-size went out). */
  punchGaveUp(e: PathEntry): void {
    failChallenges(e);
  }

  /** A probe could not be sent: try again at the next interval. */
  probeSkipped(e: PathEntry, now: number): void {
    e.nextProbeAt = now + SPARE_PROBE_INTERVAL;
  }

  /** The engine sent a liveness probe with `token` on e's path. */
  probeSent(e: PathEntry, token: Uint8Array, now: number): void {
    e.probeToken = token;
    e.probeSentAt = now;
    e.nextProbeAt = now + (e.state === 'failed' ? FAILED_PROBE_INTERVAL : SPARE_PROBE_INTERVAL);
    e.lastSend = now;
  }

  // ───────────────────────────── recovery and announcements ─────────────────────────────

  /** When the next recovery round is due (Infinity: not recovering), the gap after it, and until when it may go on. */
  private recoverAt = Infinity;
  private recoverInterval = RECOVERY_MIN;
  private recoverUntil = -Infinity;

  /** When the next recovery round is due (Infinity: none). */
  get nextRecovery(): number {
    return this.recoverAt;
  }

  /** Is the cache in recovery (rounds scheduled)? */
  get recovering(): boolean {
    return this.recoverAt !== Infinity;
  }

  /**
   * Start recovery rounds: the first now if `immediate` (our addresses changed: our old paths may
   * all be gone), else after RECOVERY_MIN. A cache already recovering restarts from the shortest
   * interval only when immediate.
   */
  startRecovery(now: number, immediate: boolean): void {
    if (!this.speaksKeymesh) return;
    this.recoverUntil = now + RECOVERY_GIVE_UP;
    if (this.recovering && !immediate) return;
    this.recoverInterval = RECOVERY_MIN;
    this.recoverAt = immediate ? now : now + RECOVERY_MIN;
  }

  /**
   * A recovery round due at `now`: the candidates to challenge again (each given a fresh
   * RECOVERY_ALLOWANCE) and whether to probe the active path; null when no round is due. Rounds
   * stop once the active path works (a packet or a probe answer came back on it, or a validated
   * path took over), or RECOVERY_GIVE_UP after the last data sent or the last change.
   */
  dueRecovery(now: number): { challenge: PathEntry[]; probe: PathEntry[] } | null {
    if (now < this.recoverAt) return null;
    const until = Math.max(this.recoverUntil, this.lastDataSent + RECOVERY_GIVE_UP);
    if (!this.speaksKeymesh || !this.activeDead() || now >= until) {
      this.recoverAt = Infinity;
      return null;
    }
    this.recoverAt = now + this.recoverInterval;
    this.recoverInterval = Math.min(this.recoverInterval * 2, RECOVERY_MAX);
    const challenge: PathEntry[] = [];
    const probe: PathEntry[] = [];
    for (const e of this.entries.values()) {
      if (e.state === 'validated') {
        if (!e.probeToken) probe.push(e);
        continue;
      }
      if (e.state === 'validating') continue; // its own retransmissions are running
      e.bytesReceived += Math.ceil(RECOVERY_ALLOWANCE / AMPLIFICATION_FACTOR);
      challenge.push(e);
    }
    return { challenge, probe };
  }

  /**
   * Make sure these paths are known (the peer's addresses from each of our current local ends, so
   * a round tries a local end that appeared since the peer announced them).
   */
  ensure(paths: Path[]): void {
    for (const p of paths) {
      if (this.entries.has(p.id)) continue;
      const e = this.entry(p);
      e.announced = true;
    }
  }

  /** When our addresses are next re-announced to the peer, and how many repeats are left. */
  private announceAt = Infinity;
  private announceRepeat: number = ANNOUNCE_REPEATS.length;

  /** Our addresses were just announced to the peer: repeat it later, in case it was lost. */
  announcedOurs(now: number): void {
    this.announceRepeat = 0;
    this.announceAt = now + ANNOUNCE_REPEATS[0];
  }

  /** Is a repeat of our announcement due? (Each true answer consumes one.) */
  dueAnnounce(now: number): boolean {
    if (now < this.announceAt) return false;
    this.announceRepeat++;
    this.announceAt = this.announceRepeat < ANNOUNCE_REPEATS.length ? now + ANNOUNCE_REPEATS[this.announceRepeat] - ANNOUNCE_REPEATS[this.announceRepeat - 1] : Infinity;
    return true;
  }

  nextDeadline(): number {
    let t = Math.min(this.nextLivenessAt, this.recoverAt, this.announceAt);
    for (const e of this.entries.values()) {
      if (e.retryAt < t) t = e.retryAt;
      if (e.probeToken) t = Math.min(t, e.probeSentAt + this.probeTimeout(e));
      else if (this.speaksKeymesh && e !== this.activeEntry && this.keepWarm(e) && (e.state === 'validated' || (e.state === 'failed' && e.srtt !== null))) {
        t = Math.min(t, e.nextProbeAt);
      }
    }
    return t;
  }

  /**
   * Paths that should get a copy of data sent on the active path (make-before-break): those being
   * validated, while their anti-amplification budget allows `bytes` more.
   */
  duplicateTargets(bytes: number): PathEntry[] | null {
    let out: PathEntry[] | null = null;
    for (const e of this.entries.values()) {
      if (e.state !== 'validating' || e === this.activeEntry) continue;
      // only where the peer's own traffic came from (it is moving there); merely announced addresses get challenges only
      if (e.lastTraffic === -Infinity || !this.mayAmplify(e, bytes)) continue;
      (out ??= []).push(e);
    }
    return out;
  }

  /** May `bytes` more go to e's path? Always for validated paths; within the budget otherwise. */
  mayAmplify(e: PathEntry, bytes: number): boolean {
    // a relay path ends at a lighthouse we hold an authenticated session with: no amplification there
    if (e.state === 'validated' || isRelay(e.path)) return true;
    return e.bytesSentUnvalidated + bytes <= AMPLIFICATION_FACTOR * e.bytesReceived;
  }

  /** Account bytes sent on e's path. */
  sent(e: PathEntry, bytes: number, now: number): void {
    e.lastSend = now;
    if (e.state !== 'validated') e.bytesSentUnvalidated += bytes;
  }

  /** Forget paths that can no longer work (e.g. their local address is gone); never the active one. */
  forget(pred: (p: Path) => boolean): void {
    for (const [id, e] of this.entries) if (e !== this.activeEntry && pred(e.path)) this.entries.delete(id);
  }

  /**
   * Why traffic goes over a relay (for `keymesh show`), or null when it does not: which direct
   * candidates exist and how their validation went.
   */
  whyRelayed(): string | null {
    const a = this.activeEntry;
    if (!a || !isRelay(a.path)) return null;
    let tried = 0;
    let probing = 0;
    let validated = 0;
    let neighbours = false;
    for (const e of this.entries.values()) {
      if (isRelay(e.path)) continue;
      tried++;
      if (e.openerArrived && e.state === 'failed') neighbours = true;
      if (e.state === 'validating' || e.state === 'new') probing++;
      else if (e.state === 'validated' && e.probeMisses === 0) validated++; // (one missing its probes counts as failed)
    }
    if (tried === 0) return 'no direct candidates (no address of the peer we could use)';
    if (validated > 0) return 'a direct path answered: leaving the relay';
    if (probing > 0) return `punching: ${probing} of ${tried} direct candidates still being probed`;
    if (neighbours) return `punching failed: our NAT and the peer's are neighbours on one network (our low-TTL openers reached its NAT), so neither can open first; a port forward on either router (UPnP, NAT-PMP or PCP: PortMapping) lets a direct path through`;
    return `punching failed: none of ${tried} direct candidates answered (a symmetric NAT, or a NAT that gave our probes another port)`;
  }

  entryFor(path: Path): PathEntry | undefined {
    return this.entries.get(path.id);
  }

  clear(): void {
    this.entries.clear();
    this.activeEntry = null;
    this.recoverAt = this.announceAt = Infinity;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

/** e stops being a candidate for now: failed, with no challenge outstanding or due. */
function failChallenges(e: PathEntry): void {
  e.state = 'failed';
  e.challengesOut = [];
  e.retryAt = Infinity;
  e.challenges = 0;
}
