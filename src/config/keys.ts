/**
 * Key text formats: base64 of 32 bytes (44 characters, as `wg genkey`/`wg pubkey` print and
 * wg-quick configs hold) and lowercase hex (the UAPI's format).
 */

const B64 = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

export function encodeKey(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('base64');
}

/** Strict: exactly 44 characters of base64 encoding 32 bytes; null otherwise. */
export function decodeKey(text: string): Uint8Array | null {
  if (text.length !== 44 || !B64.test(text)) return null;
  return new Uint8Array(Buffer.from(text, 'base64'));
}

export function keyToHex(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('hex');
}

export function hexToKey(hex: string): Uint8Array | null {
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) return null;
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

export function isZeroKey(k: Uint8Array): boolean {
  return k.every((b) => b === 0);
}
