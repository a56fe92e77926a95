/**
 * A peer: its static key, handshake state, keypairs, timers, endpoint, cookie state, packets
 * waiting for a session, and its statistics. Behaviour lives in the engine; this is state.
 */
import type { MeshCert } from './membership.js';
import { CookieGenerator } from './cookie.js';
import type { Crypto } from './crypto.js';
import { PeerEndpoint, type Path } from './endpoint.js';
import { Keypairs } from './keypair.js';
import { Handshake, type LocalIdentity } from './noise.js';
import type { StockPaths } from './stock-paths.js';
import { PeerTimers } from './timers.js';

export interface PeerStats {
  rxBytes: number;
  txBytes: number;
  /** Engine time of the last completed handshake, or null. */
  lastHandshake: number | null;
  handshakesCompleted: number;
  handshakeAttempts: number;
}

export class Peer {
  readonly handshake: Handshake;
  readonly keypairs = new Keypairs();
  readonly timers = new PeerTimers();
  readonly endpoint: PeerEndpoint;
  readonly cookie: CookieGenerator;
  /** Copies of packets waiting for a session (bounded by MAX_STAGED_PACKETS). */
  staged: Uint8Array[] = [];
  /** Engine time we last sent an initiation (initiations are at most one per REKEY_TIMEOUT). */
  lastSentHandshake = -Infinity;
  /** The initiator's "last minute" rekey on receive has been sent for the current keypair. */
  sentLastMinuteHandshake = false;
  rxBytes = 0;
  txBytes = 0;
  lastHandshake: number | null = null;
  handshakesCompleted = 0;
  /** Configured `Lighthouse = true`: we register with it and ask it about other peers. */
  lighthouse = false;
  /** Addresses it announced (ADDRESSES), as sent: what a lighthouse passes on in CANDIDATES. */
  announcedAddresses: Array<{ addr: Uint8Array; port: number }> = [];
  /** The latest handshake initiation we sent (re-sent unchanged to candidates that arrive while it is in flight). */
  lastInitiation: Uint8Array | null = null;
  /** The one path it went to when it was a path probe (stock-paths.ts), else null. */
  initiationTo: Path | null = null;
  /** The initiation a cookie reply already made us send again at once (handshake.ts: retryWithCookie). */
  cookieRetried: Uint8Array | null = null;
  /** Engine time we last asked our lighthouses about this peer. */
  lastLookup = -Infinity;
  /** The engine's deadline index: this peer's next deadline as last computed (see Engine.nextDeadline). */
  indexedDeadline = Infinity;
  /** Key id of the lighthouse whose CANDIDATES about this peer arrived last, or null. */
  foundVia: string | null = null;
  /** Lighthouse side: datagrams and bytes relayed from this peer to others. */
  relayedPackets = 0;
  relayedBytes = 0;
  /** HELLOs sent on the extension channel without an answer yet. */
  hellosSent = 0;
  /** The extension version its HELLO gave (0: not known yet). */
  extVersion = 0;
  /** Punching (punch.ts): when its PUNCH_OPEN last arrived, and when we last sent ours. */
  peerOpenedAt = -Infinity;
  punchOpenSentAt = -Infinity;
  /** The largest inner packet its active path carries unfragmented (pmtu.ts); the interface MTU until known. */
  tunnelMtu: number;
  /** Round trip of our latest answered initiation (ms), null before one. */
  handshakeRtt: number | null = null;
  /** Multihoming against a stock WireGuard peer (stock-paths.ts); null until first needed. */
  stock: StockPaths | null = null;
  /**
   * How it came to be a peer (membership.ts): 'static' configured (a [Peer] or the UAPI),
   * 'pending' an unknown key that completed a handshake and has yet to show a certificate,
   * 'certified' admitted by its certificate.
   */
  membership: 'static' | 'pending' | 'certified' = 'static';
  /** The certificate it showed (checked), if any. */
  cert: MeshCert | null = null;
  /** membership.ts: when a pending peer is forgotten; the idle check's traffic mark and time. */
  pendingUntil = Infinity;
  activityMark = 0;
  activeAt = 0;
  certRequestedAt = -Infinity;
  /** `Name =` (names.ts); a certificate's name takes precedence. */
  name: string | null = null;
  /** Gateway: a stock WireGuard device of the devices file (device-guard.ts). */
  device = false;
  /** Lighthouse: a gateway's devices (name → addresses), as it told us (names.ts). */
  deviceNames: Map<string, Uint8Array[]> | null = null;
  /** How often the endpoint moved (every endpoint-changed event): `keymesh show` and the metrics. */
  pathChanges = 0;
  /** PINGs in flight (token key → sent at). */
  readonly pings = new Map<string, number>();
  /** An EXT_CERT blob being reassembled. */
  blobIn: { purpose: number; total: number; buf: Uint8Array; got: number } | null = null;

  constructor(
    readonly publicKey: Uint8Array,
    readonly keyId: string,
    local: LocalIdentity,
    c: Crypto,
    presharedKey?: Uint8Array,
    mtu = 1420,
  ) {
    this.tunnelMtu = mtu;
    this.handshake = new Handshake(local, publicKey, presharedKey);
    this.cookie = new CookieGenerator(c, publicKey);
    this.endpoint = new PeerEndpoint();
  }

  get persistentKeepalive(): number {
    return this.timers.persistentKeepaliveInterval / 1000;
  }
}
