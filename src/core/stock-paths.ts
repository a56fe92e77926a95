/**
 * Multihoming against a stock WireGuard peer: a silently dead path is left in under a second.
 *
 * A stock peer speaks no extension channel, so there is no PATH_CHALLENGE to probe a path with.
 * What every WireGuard responder does answer is a handshake initiation — to the address it came
 * from, moving its endpoint there (whitepaper §2.1, §6). So the handshake is the probe, and the
 * answer is the switch: for both sides at once, since our endpoint cache follows the response
 * (WireGuard semantics, endpoint.ts) as the peer follows the initiation.
 *
 *            data sent, nothing back for SILENCE            the active path answers
 *   idle ─────────────────────────────────────▶ checking ──────────────────────────▶ idle
 *    ▲      (an initiation on the active path)     │ no answer in PROBE_TIMEOUT
 *    │                                             ▼
 *    └──── a spare answered: it is the path now ◀─ trying (an initiation from each spare local
 *          (or none did: WireGuard's own timers       end, and to each other address of the
 *           go on)                                    peer, one at a time, PROBE_TIMEOUT each)
 *
 * A working path is never left on one lost packet: first the active path itself is asked (an
 * initiation on it), and only its silence makes the spares be tried. After a path answered a
 * check, no new check before KEEPALIVE_TIMEOUT (10 s: one-way traffic gets WireGuard's passive
 * keepalive that often). After a failover the path left ("home") is asked again every
 * RETURN_INTERVAL while traffic flows: when it answers, the peer and we are back on it, without a
 * gap, since the old path carries traffic until the answer moves it.
 *
 * WireGuard's rules are kept: initiations at least MIN_GAP apart (responders drop those less than
 * 20 ms after the last), each with a fresh TAI64N timestamp (a new initiation, never a resend),
 * a cookie reply answered as usual (handshake.ts). Nothing of this runs for keymesh peers (they
 * have path validation) or while nothing is sent.
 *
 * May touch: a peer's `stock` state, and through sendInitiation a handshake on a given path.
 */
import { KEEPALIVE_TIMEOUT, REKEY_TIMEOUT } from './constants.js';
import { touch } from './deadline-index.js';
import { isRelay, type Path } from './endpoint.js';
import type { Engine } from './engine.js';
import { sendInitiation } from './handshake.js';
import type { Peer } from './peer.js';

/** Silence on the active path while we send, before it is checked: max(3 × handshake RTT, this) ms. */
export const SILENCE_MIN = 300;
/** An initiation unanswered after max(3 × handshake RTT, this) ms: the path did not answer. */
export const PROBE_TIMEOUT_MIN = 250;
/** Initiations to a peer at least this far apart (WireGuard responders drop those within 20 ms of the last). */
export const MIN_GAP = 50;
/** After a failover, the path left is asked again this often while traffic flows… */
export const RETURN_INTERVAL = 3000;
/** …for this long. */
export const RETURN_FOR = 600_000;
/** "Sending": data went to the peer within this window. */
export const SENDING = 1000;
/** Below this (bytes/ms, ~8 kbit/s) coming back on the active path, traffic counts as one-way. */
export const ONE_WAY_RATE = 1;
/** Results kept per peer for `keymesh show`. */
export const MAX_RESULTS = 8;

export type StockPhase = 'idle' | 'checking' | 'trying';

export class StockPaths {
  phase: StockPhase = 'idle';
  /** When the next step is due (Infinity: none armed). */
  at = Infinity;
  /** The check or try in progress: the path asked and when. */
  asked: Path | null = null;
  askedAt = -Infinity;
  /** Spares left to try in this round. */
  queue: Path[] = [];
  /** No new check before this (the active path answered one lately). */
  quietUntil = -Infinity;
  /** The path a failover left, asked again now and then; until when. */
  home: Path | null = null;
  homeUntil = -Infinity;
  nextHomeAt = Infinity;
  /** Initiations sent for all this, and the latest results. */
  handshakes = 0;
  /** What the active path brought lately (bytes/ms, smoothed): tells one-way traffic from a path gone silent. */
  rxRate = 0;
  rxBytes = 0;
  rxAt = -Infinity;
  rxPath: Path | null = null;
  /** The first data sent after the last authenticated packet from the peer: how long we have waited for an answer. */
  waitingSince = -Infinity;
  /** Checks in a row that found the active path alive (their quiet doubles). */
  aliveChecks = 0;
  readonly results: Array<{ path: string; ok: boolean; at: number; why: string }> = [];
}

/** The peer is one this module looks after: not (yet) known to speak keymesh, not a relay. */
function applies(peer: Peer): boolean {
  return !peer.endpoint.speaksKeymesh && peer.endpoint.path !== null && !isRelay(peer.endpoint.path);
}

function silence(peer: Peer): number {
  return Math.max(3 * (peer.handshakeRtt ?? 0), SILENCE_MIN);
}

function probeTimeout(peer: Peer): number {
  return Math.max(3 * (peer.handshakeRtt ?? 0), PROBE_TIMEOUT_MIN);
}

/** Should be called when data is sent to the peer: arms the check of the active path. */
export function stockDataSent(engine: Engine, peer: Peer, now: number): void {
  if (!engine.stockFailover || !applies(peer)) return;
  const s = (peer.stock ??= new StockPaths());
  // the wait for an answer starts with the first packet sent after the last one received
  if (s.waitingSince <= peer.endpoint.lastReceived) s.waitingSince = now;
  if (s.phase !== 'idle' || s.at !== Infinity) return;
  s.at = Math.max(now, s.waitingSince + silence(peer), s.quietUntil);
  if (s.home && s.nextHomeAt < s.at) s.at = s.nextHomeAt;
  touch(engine, peer);
}

export function stockDeadline(peer: Peer): number {
  return peer.stock ? peer.stock.at : Infinity;
}

function record(s: StockPaths, path: Path, ok: boolean, why: string, now: number): void {
  s.results.unshift({ path: path.id, ok, at: now, why });
  if (s.results.length > MAX_RESULTS) s.results.pop();
}

/** Ask `path` with an initiation (a new one: fresh timestamp), if the gap allows; false if not sent. */
function ask(engine: Engine, peer: Peer, s: StockPaths, path: Path, now: number): boolean {
  if (now - peer.lastSentHandshake < MIN_GAP) return false;
  sendInitiation(engine, peer, false, now, false, path);
  if (peer.lastSentHandshake !== now) return false;
  s.asked = path;
  s.askedAt = now;
  s.handshakes++;
  engine.counters.stockPathHandshakes++;
  return true;
}

/** The other ways to the peer: its active address from each other local end, and its other addresses from every local end. */
function spares(engine: Engine, peer: Peer): Path[] {
  const active = peer.endpoint.path!;
  const out: Path[] = [];
  const seen = new Set<string>([active.id]);
  const add = (p: Path) => {
    if (!seen.has(p.id) && !isRelay(p)) {
      seen.add(p.id);
      out.push(p);
    }
  };
  if (engine.makePaths && engine.addressOf) {
    const a = engine.addressOf(active);
    if (a) for (const p of engine.makePaths(a.addr, a.port)) add(p);
    for (const e of peer.endpoint.list()) {
      const o = engine.addressOf(e.path);
      if (o) for (const p of engine.makePaths(o.addr, o.port)) add(p);
    }
  }
  for (const e of peer.endpoint.list()) add(e.path);
  return out;
}

/** Work due at `now` for the peer (the deadline index calls this when stockDeadline passed). */
export function fireStock(engine: Engine, peer: Peer, now: number): void {
  const s = peer.stock;
  if (!s || now < s.at) return;
  s.at = Infinity;
  if (!engine.stockFailover || !applies(peer)) {
    s.phase = 'idle';
    return;
  }
  const ep = peer.endpoint;
  const active = ep.path!;
  const sending = now - ep.lastDataSent < SENDING;
  if (s.phase !== 'idle') {
    // the answer to what we asked has come, if a handshake completed since
    const answered = peer.lastHandshake !== null && peer.lastHandshake >= s.askedAt;
    if (answered || ep.lastReceived > s.askedAt) {
      const moved = s.phase === 'trying';
      record(s, active, true, moved ? 'answered: traffic moved here' : 'the active path answered', now);
      // Checks that keep finding the path alive back off, doubling up to KEEPALIVE_TIMEOUT (one-way
      // traffic: the peer has little to send back, and WireGuard's passive keepalive comes every
      // 10 s); the backoff ends as soon as traffic comes back both ways again (below).
      if (!moved) {
        s.aliveChecks++;
        s.quietUntil = now + Math.min(KEEPALIVE_TIMEOUT, silence(peer) * 2 ** s.aliveChecks);
      }
      s.phase = 'idle';
      s.asked = null;
      s.queue = [];
    } else {
      if (s.asked) record(s, s.asked, false, s.phase === 'checking' ? 'the active path did not answer' : 'no answer', now);
      if (s.phase === 'checking') {
        s.phase = 'trying';
        s.queue = spares(engine, peer);
        s.home = active;
        s.homeUntil = now + RETURN_FOR;
      }
      const next = s.queue.shift();
      if (next) {
        if (ask(engine, peer, s, next, now)) s.at = now + probeTimeout(peer);
        else {
          s.queue.unshift(next);
          s.at = peer.lastSentHandshake + MIN_GAP;
        }
        touch(engine, peer);
        return;
      }
      // none answered: WireGuard's own timers go on; look again if traffic still waits
      s.phase = 'idle';
      s.asked = null;
      s.quietUntil = now + silence(peer);
    }
  }
  // idle: how much the active path has been bringing back lately
  const e = ep.active!;
  if (s.rxPath === active && s.rxAt < now) {
    const sample = (e.bytesReceived - s.rxBytes) / (now - s.rxAt);
    s.rxRate = 0.7 * s.rxRate + 0.3 * sample;
  } else s.rxRate = 0;
  s.rxPath = active;
  s.rxBytes = e.bytesReceived;
  s.rxAt = now;
  if (s.rxRate >= ONE_WAY_RATE && now - ep.lastReceived < silence(peer)) {
    // traffic comes back as it should: a silence from now on is news, checked at once
    s.aliveChecks = 0;
    s.quietUntil = -Infinity;
  }
  if (s.home && now >= s.nextHomeAt && sending && now < s.homeUntil && s.home.id !== active.id) {
    // try to go back to the path a failover left: an answer moves traffic there, no answer changes nothing
    if (ask(engine, peer, s, s.home, now)) record(s, s.home, false, 'asked again (the path we left)', now);
    s.nextHomeAt = now + RETURN_INTERVAL;
  } else if (s.home && s.home.id === active.id) {
    s.home = null; // back home
    s.nextHomeAt = Infinity;
  } else if (s.home && s.nextHomeAt === Infinity) s.nextHomeAt = now + RETURN_INTERVAL;
  // (not while there is no session yet, or WireGuard's own handshake is in flight: it has its retries)
  const handshaking = peer.handshake.state === 'initiation-created' && now - peer.lastSentHandshake < REKEY_TIMEOUT;
  // Unanswered for `silence` since the first packet after the last answer, and still sending (not
  // merely a conversation that ended with our packet, nor the first packet after an idle spell):
  const waited = s.waitingSince > ep.lastReceived ? now - s.waitingSince : 0;
  const stillSending = ep.lastDataSent - s.waitingSince >= silence(peer) / 2;
  if (sending && stillSending && peer.keypairs.current && !handshaking && now >= s.quietUntil && waited >= silence(peer) && now - s.askedAt >= probeTimeout(peer)) {
    if (ask(engine, peer, s, active, now)) {
      s.phase = 'checking';
      s.at = now + probeTimeout(peer);
    } else s.at = peer.lastSentHandshake + MIN_GAP;
    touch(engine, peer);
    return;
  }
  if (sending) {
    s.at = Math.max(now + 1, (s.waitingSince > ep.lastReceived ? s.waitingSince : now) + silence(peer), s.quietUntil);
    if (s.home && s.nextHomeAt < s.at) s.at = s.nextHomeAt;
  }
  touch(engine, peer);
}
