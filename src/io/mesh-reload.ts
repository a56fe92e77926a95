/**
 * `keymesh reload NAME` and SIGHUP, for mesh membership: the certificate, CA and revocation list
 * are taken again from a freshly loaded configuration, without dropping sessions. A renewed
 * certificate goes to every peer at once; a newer revocation list is adopted, passed on to every
 * keymesh peer (membership.ts) and ends the sessions of the members it revokes. The rest of a
 * reload (peers, keys, ports, …) is config-reload.ts's, which calls this once the engine has the
 * file's PrivateKey.
 *
 * May touch: the engine's mesh authority.
 */
import type { Engine } from '../core/engine.js';
import { CertAuthority } from '../core/mesh-authority.js';
import type { WgQuickConfig } from '../config/wgquick.js';
import { createNodeEd25519Verify } from './ed25519-verify.js';

function sameBytes(a: Uint8Array | null, b: Uint8Array): boolean {
  return a !== null && a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Apply the mesh part of `fresh`; returns what was done, throws (changing nothing) when it cannot. */
export function reloadMesh(engine: Engine, fresh: WgQuickConfig, now: number): string {
  const m = fresh.interface.mesh;
  const old = engine.meshAuthority as CertAuthority | null;
  if (!sameBytes(engine.privateKey, fresh.interface.privateKey)) throw new Error('PrivateKey changed: restart the node (keymesh down, then up) to use the new key');
  if (!m) {
    if (old) throw new Error('the file no longer has Certificate and CA: restart the node to leave the mesh');
    return 'nothing to reload: the file has no Certificate and CA';
  }
  const sameCa = old !== null && old.ca.fingerprint === m.ca.fingerprint;
  // keep the newest list we hold (gossip may have brought one newer than the file's) under the same CA
  const authority = sameCa ? old.with(m.cert, old.revocations) : new CertAuthority(m.ca, m.cert, null, createNodeEd25519Verify());
  const before = engine.listPeers().length;
  engine.setMeshAuthority(authority, now);
  const done: string[] = [];
  done.push(old?.own.fingerprint === m.cert.fingerprint ? `certificate "${m.cert.name}" unchanged` : `certificate "${m.cert.name}" (${m.cert.fingerprint.slice(0, 16)}…) in use`);
  if (!sameCa) done.push(`CA "${m.ca.name}" in use`);
  if (m.crl) {
    const r = engine.offerRevocations(m.crl.bytes, now);
    done.push(r === 'newer' ? `revocation list serial ${m.crl.serial} adopted and passed on` : r === 'old' ? `revocation list serial ${m.crl.serial} (not newer than the one held)` : `revocation list refused (${r})`);
  }
  const ended = before - engine.listPeers().length;
  if (ended > 0) done.push(`${ended} peer(s) no longer admitted`);
  return done.join('; ');
}
