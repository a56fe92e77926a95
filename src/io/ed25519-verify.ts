/**
 * Ed25519 signature checks through the OpenSSL that Node is linked with (node:crypto), for the
 * certificate core's Ed25519Verify seam: ~0.2 ms a check on a 2-vCPU VM against noble's ~1.1 ms,
 * which matters because certificates are verified on every handshake. Same answers as the
 * reference (test/unit/cert.test.ts compares them): RFC 8032 verification, non-canonical S refused.
 *
 * Key objects are kept per public key (a mesh has one CA key; a few more at most during a CA
 * change), so the DER wrapping is parsed once per key, not once per check.
 */
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import type { Ed25519Verify } from '../core/cert-wire.js';

/** SubjectPublicKeyInfo for id-Ed25519 (RFC 8410 §4), before the 32 key bytes. */
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const MAX_KEYS = 16;

export function createNodeEd25519Verify(): Ed25519Verify {
  const keys = new Map<string, KeyObject | null>();
  const keyOf = (publicKey: Uint8Array): KeyObject | null => {
    const id = Buffer.from(publicKey).toString('hex');
    let k = keys.get(id);
    if (k === undefined) {
      try {
        k = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' });
      } catch {
        k = null; // not a point on the curve: every signature under it is refused
      }
      if (keys.size >= MAX_KEYS) keys.delete(keys.keys().next().value!);
      keys.set(id, k);
    }
    return k;
  };
  return (signature, message, publicKey) => {
    if (signature.length !== 64 || publicKey.length !== 32) return false;
    const k = keyOf(publicKey);
    if (!k) return false;
    try {
      return verify(null, message, k, signature);
    } catch {
      return false;
    }
  };
}
