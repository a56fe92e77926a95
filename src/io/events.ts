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

export function shortKey(k: Uint8Array): string {
  return `${encodeKey(k).slice(0, 8)}…`;
}

/** What the event log uses of the runtime. */
export interface EventHost {
  readonly name: string;
  readonly names: EndpointNames;
  /** Peers (by key) whose events are not logged: the warm-up's partner. */
  readonly quietPeers: Set<string>;
  log(line: string): void;
}

export function onEvent(rt: EventHost, e: EngineEvent): void {
  if (e.type === 'name-answer') return; // for the resolver (names.ts), not the log
  if (rt.quietPeers.has(e.peer.keyId)) return; // the warm-up's partner: nothing to tell the user
  const who = `peer ${shortKey(e.peer.publicKey)}`;
  switch (e.type) {
    case 'handshake-complete':
      rt.log(`${rt.name}: ${who} handshake complete (${e.initiator ? 'we initiated' : 'they initiated'})`);
      break;
    case 'endpoint-changed':
      rt.log(`${rt.name}: ${who} endpoint ${e.from ? e.from.id : '(none)'} → ${e.to.id} (${e.reason})`);
      break;
    case 'peer-speaks-keymesh':
      rt.log(`${rt.name}: ${who} speaks keymesh: roaming now needs path validation`);
      break;
    case 'handshake-failed':
      rt.log(`${rt.name}: ${who} no handshake response after 90 s; giving up until there is traffic`);
      break;
    case 'keys-zeroed':
      rt.log(`${rt.name}: ${who} session keys expired and wiped`);
      break;
    case 'handshake-initiated':
      // A handshake is being (re)tried: if the peer was configured by host name, its address
      // may have changed (dynamic DNS): look again.
      if (rt.names.has(e.peer)) void rt.names.reresolve(e.peer, 'handshake retry');
      break;
    case 'peer-found':
      rt.log(
        `${rt.name}: ${who} ${e.answer ? 'found' : 'is looking for us'} via lighthouse ${shortKey(e.lighthouse.publicKey)}: ` +
          `probing ${e.candidates.map((c) => c.id).join(', ') || '(no usable address)'}`,
      );
      break;
    case 'pmtu-changed':
      rt.log(
        `${rt.name}: ${who} tunnel MTU ${e.from} → ${e.to} on ${e.path.id}` +
          (e.pmtu !== null ? ` (path MTU ${e.pmtu}, ${e.source === 'probe' ? 'probed' : e.source === 'kernel' ? "the kernel's route" : 'configured'})` : ''),
      );
      break;
    case 'peer-admitted':
      rt.log(`${rt.name}: ${who} admitted by certificate as "${e.peer.cert?.name ?? '?'}"`);
      break;
    case 'peer-removed':
      rt.log(`${rt.name}: ${who}${e.peer.cert ? ` ("${e.peer.cert.name}")` : ''} forgotten: ${e.reason}`);
      break;
    case 'path-lost':
      rt.log(`${rt.name}: ${who} active path ${e.path.id} stopped answering and there is no spare; probing`);
      if (rt.names.has(e.peer)) void rt.names.reresolve(e.peer, 'path lost');
      break;
  }
}
