/**
 * What the node logs of the engine's events (the sink's `event`), and the two events that make it
 * look a peer's host name up again (reresolve.ts).
 *
 * May touch: the log, and the host names (to start a re-resolution). Nothing else: an event is
 * told, not acted on, here.
 */
import type { EngineEvent } from '../core/engine.js';
import { encodeKey } from '../config/keys.js';
import type { EndpointNames } from './reresolve.js';
import type { Log } from './log.js';

export function shortKey(k: Uint8Array): string {
  return `${encodeKey(k).slice(0, 8)}…`;
}

/** What the event log uses of the runtime. */
export interface EventHost {
  readonly name: string;
  readonly names: EndpointNames;
  /** Peers (by key) whose events are not logged: the warm-up's partner. */
  readonly quietPeers: Set<string>;
  readonly log: Log;
}

export function onEvent(rt: EventHost, e: EngineEvent): void {
  if (e.type === 'name-answer') return; // for the resolver (names.ts), not the log
  if (rt.quietPeers.has(e.peer.keyId)) return; // the warm-up's partner: nothing to tell the user
  const who = `peer ${shortKey(e.peer.publicKey)}`;
  // every event's fields name the peer as the sentence does (shortened), and its mesh name if any
  const peer = { peer: shortKey(e.peer.publicKey), ...((e.peer.cert?.name ?? e.peer.name) ? { name: e.peer.cert?.name ?? e.peer.name } : {}) };
  const log = (line: string, level: 'debug' | 'info' | 'warn', fields: Record<string, string | number | boolean | null> = {}) =>
    rt.log(line, { level, event: e.type, fields: { ...peer, ...fields } });
  switch (e.type) {
    case 'handshake-complete':
      log(`${rt.name}: ${who} handshake complete (${e.initiator ? 'we initiated' : 'they initiated'})`, 'info', { initiator: e.initiator });
      break;
    case 'endpoint-changed':
      log(`${rt.name}: ${who} endpoint ${e.from ? e.from.id : '(none)'} → ${e.to.id} (${e.reason})`, 'info', { from: e.from?.id ?? null, to: e.to.id, reason: e.reason });
      break;
    case 'peer-speaks-keymesh':
      log(`${rt.name}: ${who} speaks keymesh: roaming now needs path validation`, 'info');
      break;
    case 'handshake-failed':
      log(`${rt.name}: ${who} no handshake response after 90 s; giving up until there is traffic`, 'warn');
      break;
    case 'keys-zeroed':
      log(`${rt.name}: ${who} session keys expired and wiped`, 'debug');
      break;
    case 'handshake-initiated':
      // A handshake is being (re)tried: if the peer was configured by host name, its address
      // may have changed (dynamic DNS): look again.
      if (rt.names.has(e.peer)) void rt.names.reresolve(e.peer, 'handshake retry');
      break;
    case 'endpoint-missing':
      // Traffic waits for a peer whose Endpoint name has not resolved yet: look now (reresolve.ts
      // keeps these lookups one at a time and a second apart), rather than at the next backoff.
      if (rt.names.has(e.peer)) void rt.names.reresolve(e.peer, 'traffic waiting');
      break;
    case 'peer-found':
      log(
        `${rt.name}: ${who} ${e.answer ? 'found' : 'is looking for us'} via lighthouse ${shortKey(e.lighthouse.publicKey)}: ` +
          `probing ${e.candidates.map((c) => c.id).join(', ') || '(no usable address)'}`,
        'info',
        { lighthouse: shortKey(e.lighthouse.publicKey), candidates: e.candidates.map((c) => c.id).join(',') },
      );
      break;
    case 'pmtu-changed':
      log(
        `${rt.name}: ${who} tunnel MTU ${e.from} → ${e.to} on ${e.path.id}` +
          (e.pmtu !== null ? ` (path MTU ${e.pmtu}, ${e.source === 'probe' ? 'probed' : e.source === 'kernel' ? "the kernel's route" : 'configured'})` : ''),
        'info',
        { from: e.from, to: e.to, path: e.path.id, pmtu: e.pmtu, source: e.source },
      );
      break;
    case 'peer-admitted':
      log(`${rt.name}: ${who} admitted by certificate as "${e.peer.cert?.name ?? '?'}"`, 'info');
      break;
    case 'peer-removed':
      log(`${rt.name}: ${who}${e.peer.cert ? ` ("${e.peer.cert.name}")` : ''} forgotten: ${e.reason}`, 'info', { reason: e.reason });
      break;
    case 'path-lost':
      log(`${rt.name}: ${who} active path ${e.path.id} stopped answering and there is no spare; probing`, 'warn', { path: e.path.id });
      if (rt.names.has(e.peer)) void rt.names.reresolve(e.peer, 'path lost');
      break;
  }
}
