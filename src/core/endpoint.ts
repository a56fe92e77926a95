/**
 * Where a peer's packets go. A `Path` is an opaque handle owned by the runtime (today: a UDP
 * address and port; later a local interface + remote address pair or a relay); the core only
 * compares paths by `id` and feeds `cookieBytes` into cookie MACs.
 *
 * WireGuard semantics (whitepaper §2.1 "Built-in Roaming"): a peer's endpoint is set from the
 * configuration and thereafter moves only to the source of a packet that *authenticated* —
 * never on the strength of an unauthenticated source address. This module is the only place
 * that decides a peer's endpoint, so the mobility work can grow it into a cache of several
 * validated paths without touching the handshake or data code.
 */

export interface Path {
  /** Identity of the path: equal ids mean the same path (e.g. "192.0.2.1:51820", "[2001:db8::1]:51820"). */
  readonly id: string;
  /** Identity of the remote host alone, without port — the key for per-source rate limiting. */
  readonly hostId: string;
  /** Bytes naming the remote source for the cookie MAC (whitepaper §5.4.7: IP address ‖ port). */
  readonly cookieBytes: Uint8Array;
}

export type EndpointChange = { from: Path | null; to: Path };

export class PeerEndpoint {
  private current: Path | null = null;
  /** Engine time of the last authenticated packet from `current`. */
  lastReceived = -Infinity;

  constructor(initial: Path | null = null) {
    this.current = initial;
  }

  /** The path to send on, or null when the peer has never been heard from and has no configured endpoint. */
  get path(): Path | null {
    return this.current;
  }

  /** Set by configuration (`Endpoint =` or UAPI `endpoint=`): takes effect at once. */
  configure(path: Path): EndpointChange | null {
    const from = this.current;
    this.current = path;
    return from?.id === path.id ? null : { from, to: path };
  }

  /**
   * Should be called after a packet from `path` authenticated (a handshake message that decrypted,
   * or a transport packet that passed AEAD). Returns the change when the endpoint moved.
   */
  authenticatedFrom(path: Path, now: number): EndpointChange | null {
    this.lastReceived = now;
    const from = this.current;
    if (from !== null && (from === path || from.id === path.id)) return null;
    this.current = path;
    return { from, to: path };
  }

  clear(): void {
    this.current = null;
  }
}
