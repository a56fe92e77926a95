/**
 * The mesh CA as the engine sees it (membership.ts's MeshAuthority), made from the decoded CA
 * certificate, our node certificate and the revocation list in force (cert.ts, crl.ts). Sans-I/O:
 * the runtime reads the files and hands the bytes here.
 */
import { decodeCert, nobleEd25519Verify, verifyNodeCert, type CaCert, type Ed25519Verify, type NodeCert } from './cert.js';
import { decodeCrl, verifyCrl, type Crl } from './crl.js';
import type { MeshAuthority, MeshCert } from './membership.js';

export class CertAuthority implements MeshAuthority {
  private list: Crl | null;

  constructor(
    readonly ca: CaCert,
    readonly own: NodeCert,
    crl: Crl | null = null,
    /** The signature check (the runtime passes OpenSSL's: ~5× noble's speed). */
    private readonly verify: Ed25519Verify = nobleEd25519Verify,
  ) {
    this.list = crl;
  }

  get networks() {
    return this.ca.networks;
  }

  get domain(): string {
    return this.ca.domain;
  }

  /** The revocation list in force (null: none yet). */
  get revocations(): Crl | null {
    return this.list;
  }

  check(bytes: Uint8Array, unixSec: number): MeshCert | string {
    const d = decodeCert(bytes);
    if (!d.ok) return d.reason;
    if (d.cert.kind !== 'node') return 'wrong-kind';
    return verifyNodeCert(d.cert, this.ca, unixSec, this.list ?? undefined, this.verify) ?? d.cert;
  }

  crl(): Uint8Array | null {
    return this.list?.bytes ?? null;
  }

  offerCrl(bytes: Uint8Array): 'newer' | 'old' | string {
    const d = decodeCrl(bytes);
    if (!d.ok) return d.reason;
    const reason = verifyCrl(d.crl, this.ca, undefined, this.verify);
    if (reason) return reason;
    if (this.list && d.crl.serial <= this.list.serial) return 'old';
    this.list = d.crl;
    return 'newer';
  }

  crlSerial(): string | null {
    return this.list ? String(this.list.serial) : null;
  }

  /** The same CA and signature check with another certificate or list (a reload). */
  with(own: NodeCert, crl: Crl | null): CertAuthority {
    return new CertAuthority(this.ca, own, crl, this.verify);
  }

  isRevoked(fingerprint: string): boolean {
    return this.list?.revokedSet.has(fingerprint) ?? false;
  }
}
