/**
 * What happens when a peer's deadline passes (whitepaper §6; the expiry handlers of the kernel's
 * timers.c): the timers of timers.ts (retransmit an initiation or give up, keepalives, a new
 * handshake, zeroing the keys) and the endpoint cache's (challenges, probes, failover, recovery
 * rounds, repeated ADDRESSES), a lookup while traffic goes through a relay, path MTU probes
 * (pmtu.ts), and the path checks for stock WireGuard peers (stock-paths.ts).
 *
 * May touch: a due peer's timers (it clears those it fires), and through the handlers it calls
 * what they touch (send.ts, handshake.ts, paths.ts, lighthouse-lookup.ts); the rate limiter's
 * old entries.
 */
import { fireMembership, membershipDeadline } from './membership.js';
import { KEEPALIVE_TIMEOUT, MAX_TIMER_HANDSHAKES, REJECT_AFTER_TIME } from './constants.js';
import { duePeers, touch } from './deadline-index.js';
import type { Engine } from './engine.js';
import { dropSessions, resendInitiation, sendInitiation } from './handshake.js';
import { lookup, onRelay } from './lighthouse-lookup.js';
import { RELAY_RETRY_DIRECT } from './lighthouse.js';
import { recover, sendAddresses, sendChallenge, sendProbe } from './paths.js';
import { firePmtu, pmtuDeadline } from './pmtu.js';
import { fireStock, stockDeadline } from './stock-paths.js';
import type { Peer } from './peer.js';
import { sendKeepalive } from './send.js';
import { TIMER_NAMES, type TimerName } from './timers.js';

/** Engine.tick: fire every timer whose deadline is ≤ now. Returns what fired, for tests and logs. */
export function fireTimers(engine: Engine, now: number): Array<{ peer: Peer; timer: TimerName }> {
  const fired: Array<{ peer: Peer; timer: TimerName }> = [];
  for (const peer of duePeers(engine, now)) {
    touch(engine, peer);
    if (membershipDeadline(engine, peer) <= now && fireMembership(engine, peer, now)) continue; // forgotten (membership.ts)
    if (peer.endpoint.nextDeadline() <= now) {
      for (const e of peer.endpoint.dueChallenges(now)) sendChallenge(engine, peer, e, now);
      const { probe, change, lost } = peer.endpoint.dueProbes(now);
      if (change) engine.emitEndpointChange(peer, change);
      if (lost) engine.sink.event({ type: 'path-lost', peer, path: lost });
      for (const e of probe) sendProbe(engine, peer, e, now);
      // lost the direct path (or fell back to a relay): ask the lighthouses where the peer is now
      if (lost || (change && change.to.via !== undefined)) lookup(engine, peer, now);
      if (now >= peer.endpoint.nextRecovery) recover(engine, peer, now);
      if (peer.endpoint.dueAnnounce(now)) sendAddresses(engine, peer, now, true);
    }
    if (onRelay(peer) && now >= peer.lastLookup + RELAY_RETRY_DIRECT) lookup(engine, peer, now, true);
    if (pmtuDeadline(engine, peer) <= now) firePmtu(engine, peer, now);
    if (stockDeadline(peer) <= now) fireStock(engine, peer, now);
    if (peer.timers.next() > now) continue;
    for (const name of TIMER_NAMES) {
      if (peer.timers[name] > now) continue;
      peer.timers[name] = Infinity;
      fired.push({ peer, timer: name });
      expire(engine, peer, name, now);
    }
  }
  engine.ratelimiter.collect(now);
  return fired;
}

function expire(engine: Engine, peer: Peer, name: TimerName, now: number): void {
  const t = peer.timers;
  switch (name) {
    case 'retransmitHandshake':
      if (t.handshakeAttempts >= MAX_TIMER_HANDSHAKES) {
        // Give up (REKEY_ATTEMPT_TIME has passed): drop queued packets; keys go after 3×REJECT_AFTER_TIME.
        peer.staged = [];
        if (t.zeroKeyMaterial === Infinity) t.zeroKeyMaterial = now + 3 * REJECT_AFTER_TIME;
        engine.sink.event({ type: 'handshake-failed', peer });
      } else {
        t.handshakeAttempts++;
        sendInitiation(engine, peer, true, now);
      }
      break;
    case 'resendInitiation':
      resendInitiation(engine, peer, now);
      break;
    case 'sendKeepalive':
      sendKeepalive(engine, peer, now);
      if (t.needAnotherKeepalive) {
        t.needAnotherKeepalive = false;
        t.sendKeepalive = now + KEEPALIVE_TIMEOUT;
      }
      break;
    case 'newHandshake':
      // We sent data and heard nothing back for KEEPALIVE_TIMEOUT + REKEY_TIMEOUT.
      sendInitiation(engine, peer, false, now);
      break;
    case 'zeroKeyMaterial':
      dropSessions(engine, peer);
      engine.sink.event({ type: 'keys-zeroed', peer });
      break;
    case 'persistentKeepalive':
      if (t.persistentKeepaliveInterval > 0) sendKeepalive(engine, peer, now);
      break;
  }
}
