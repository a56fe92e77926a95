/**
 * The engine's deadline index: when tick() next has work to do — the per-peer timers of the
 * whitepaper §6 (timers.ts), the endpoint cache's deadlines (endpoint.ts) and the retry of a
 * direct path while traffic goes through a relay — as a min-heap of (peer, deadline) entries
 * refreshed only for the peers touched since the last call; and its checked twin, a full scan of
 * every peer, compared with the index on every call when the engine is built with `checkDeadlines`.
 *
 * May touch: the engine's deadlineHeap, dirtyPeers and allDirty, and each peer's indexedDeadline;
 * it reads the peers and their deadlines and changes nothing else.
 */
import { pmtuDeadline } from './pmtu.js';
import { stockDeadline } from './stock-paths.js';
import { membershipDeadline } from './membership.js';
import type { Engine } from './engine.js';
import { onRelay } from './lighthouse-lookup.js';
import { RELAY_RETRY_DIRECT } from './lighthouse.js';
import type { Peer } from './peer.js';

/**
 * The earliest deadline of any peer. With thousands of peers a scan of all of them per batch
 * would dominate the data path (≈0.5 ms at 10,000 peers), so the engine keeps an index: a
 * min-heap of (peer, deadline) entries, refreshed only for the peers touched since the last
 * call (every packet, handshake, probe or relay for a peer touches it), with stale entries
 * dropped lazily when they reach the top. Configuration calls and rare events (handshake
 * messages, control messages) mark everything for a rebuild. `checkDeadlines` verifies the
 * index against the full scan on every call (tests run with it).
 */
export function earliestDeadline(engine: Engine): number {
  const t = indexedNextDeadline(engine);
  if (engine.checkDeadlines) {
    let full = Infinity;
    for (const p of engine.peers.values()) full = Math.min(full, peerDeadline(engine, p));
    if (full !== t) throw new Error(`deadline index out of step: index says ${t}, a full scan ${full}`);
  }
  return t;
}

function peerDeadline(engine: Engine, p: Peer): number {
  let n = Math.min(p.timers.next(), p.endpoint.nextDeadline(), pmtuDeadline(engine, p), stockDeadline(p), membershipDeadline(engine, p));
  if (onRelay(p)) n = Math.min(n, p.lastLookup + RELAY_RETRY_DIRECT);
  return n;
}

function indexedNextDeadline(engine: Engine): number {
  const heap = engine.deadlineHeap;
  if (engine.allDirty || heap.length > 4 * engine.peers.size + 64) {
    heap.length = 0;
    for (const p of engine.peers.values()) {
      p.indexedDeadline = peerDeadline(engine, p);
      if (p.indexedDeadline !== Infinity) heap.push({ peer: p, at: p.indexedDeadline });
    }
    heap.sort((x, y) => x.at - y.at); // a sorted array is a valid min-heap
    engine.allDirty = false;
    engine.deadlineRebuilds++;
    engine.dirtyPeers.clear();
  } else if (engine.dirtyPeers.size > 0) {
    for (const p of engine.dirtyPeers) {
      if (engine.peers.get(p.keyId) !== p) continue; // removed
      const d = peerDeadline(engine, p);
      if (d === p.indexedDeadline) continue;
      p.indexedDeadline = d;
      if (d !== Infinity) heapPush(heap, { peer: p, at: d });
    }
    engine.dirtyPeers.clear();
  }
  while (heap.length > 0) {
    const top = heap[0];
    if (top.at === top.peer.indexedDeadline && engine.peers.get(top.peer.keyId) === top.peer) return top.at;
    heapPop(heap); // stale: the peer's deadline moved, or it was removed
  }
  return Infinity;
}

/** The peers with a deadline at or before `now`, taken off the index (tick re-indexes them). */
export function duePeers(engine: Engine, now: number): Set<Peer> {
  indexedNextDeadline(engine); // bring the index up to date
  const heap = engine.deadlineHeap;
  const due = new Set<Peer>();
  while (heap.length > 0 && heap[0].at <= now) {
    const top = heap[0];
    heapPop(heap);
    if (top.at !== top.peer.indexedDeadline || engine.peers.get(top.peer.keyId) !== top.peer) continue; // stale
    top.peer.indexedDeadline = Infinity; // no entry left for it: touch() re-indexes it
    due.add(top.peer);
  }
  if (engine.checkDeadlines) {
    for (const p of engine.peers.values()) {
      if (peerDeadline(engine, p) <= now && !due.has(p)) throw new Error('deadline index out of step: a due peer is missing');
    }
  }
  return due;
}

/** Something about this peer changed: its deadline is recomputed at the next nextDeadline(). */
export function touch(engine: Engine, peer: Peer): void {
  engine.dirtyPeers.add(peer);
}

/** Binary min-heap on `at` (the engine's deadline index). */
function heapPush(h: Array<{ peer: Peer; at: number }>, e: { peer: Peer; at: number }): void {
  let i = h.push(e) - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (h[parent].at <= e.at) break;
    h[i] = h[parent];
    i = parent;
  }
  h[i] = e;
}

function heapPop(h: Array<{ peer: Peer; at: number }>): void {
  const last = h.pop()!;
  if (h.length === 0) return;
  let i = 0;
  for (;;) {
    const l = 2 * i + 1;
    if (l >= h.length) break;
    const c = l + 1 < h.length && h[l + 1].at < h[l].at ? l + 1 : l;
    if (h[c].at >= last.at) break;
    h[i] = h[c];
    i = c;
  }
  h[i] = last;
}

