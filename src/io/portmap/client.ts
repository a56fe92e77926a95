/**
 * PortMapper: asks the home router for an inbound UDP port mapping, with PCP (RFC 6887) first
 * and NAT-PMP (RFC 6886) when the router speaks only that, keeps the mapping renewed, notices a
 * router restart, and deletes the mapping on stop().
 *
 * Use (the runtime, once per local UDP port it wants reachable):
 *
 *   const gw = await findDefaultGateway(4);                     // ./gateway.ts
 *   const pm = new PortMapper({
 *     gateway: gw.address, internalPort: 51820, localAddress: '192.168.1.20',  // optional
 *     onMapped: (m) => announce(`${m.externalAddress}:${m.externalPort}`),      // every success, renewals too
 *     onLost: (reason) => withdraw(),                            // no mapping now (a retry may follow)
 *     log: (line) => console.log(line),
 *   });
 *   pm.start();                  // returns at once; nothing here ever blocks or throws later
 *   pm.refresh();                // the local address changed: map again now
 *   await pm.stop();             // delete the mapping (lifetime 0), close the sockets
 *
 * `pm.mapping` is the current mapping or null; `pm.stats` counts datagrams, hostile ones included.
 * onMapped gets { protocol: 'pcp' | 'nat-pmp', externalAddress, externalPort, lifetime (s),
 * expiresAt (ms on the clock), … }; compare it with the last one to see whether anything moved.
 *
 *        start() ──▶ mapping ──success──▶ mapped ──½ lifetime──▶ renewing ──success──▶ mapped
 *                     │  ▲  PCP first;                              │ no answer: again at ½ of
 *                     │  │  UNSUPP_VERSION or a NAT-PMP                │ what is left, until expiry
 *                     │  │  answer: NAT-PMP                            ▼
 *       refused / no  │  └──── retry timer ◀──── failed ◀──── expired / refused (onLost)
 *       answer in     └──────────────────────────▶ (onLost, one log line)
 *       giveUpMs          mapped ──epoch went back / ANNOUNCE──▶ mapping (same port suggested)
 *
 * Retransmission: every request goes out at once, again after 250 ms, then at doubling intervals
 * (RFC 6886 §3.1), until the round's bound (giveUpMs, 4 s: five datagrams) — RFC 6886 §1.1 asks
 * that each attempt be sent as PCP first, so one schedule serves both. RFC 6887 §8.1.1 would start
 * PCP at 3 s and never stop; a router on the local link answers in milliseconds if at all, and a
 * silent one must not hold a node's start-up or fill its log, so we keep NAT-PMP's pace and
 * bound, then try again much later (retryAfterMs). Requests are serial (RFC 6886 §3.1).
 *
 * The socket and clock are seams (transport, clock, random): the unit tests drive this class
 * against an in-memory gateway and a virtual clock; the default is ./udp-transport.ts and the
 * process's timers (unref'd: mapping never keeps the process alive).
 */
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import {
  decodeNatPmpResponse,
  encodeNatPmpExternalAddressRequest,
  encodeNatPmpMapRequest,
  NATPMP_INITIAL_TIMEOUT_MS,
  NATPMP_RECOMMENDED_LIFETIME,
  NATPMP_VERSION,
  natPmpEpochPlausible,
  natPmpResultName,
  NatPmpResult,
  type EpochSample,
  type NatPmpResponse,
} from './natpmp.js';
import {
  decodePcpResponse,
  encodePcpMapRequest,
  PCP_NONCE_SIZE,
  PCP_PROTOCOL_UDP,
  pcpEpochValid,
  PcpOpcode,
  pcpRenewalDelayMs,
  pcpResultName,
  PcpResult,
  type PcpResponse,
} from './pcp.js';
import { OneTimer, processClock, type PortMapClock } from './clock.js';
import { openUdpTransport, type DatagramSource, type OpenPortMapTransport, type PortMapTransport } from './udp-transport.js';

export interface PortMapping {
  /** 'upnp': UPnP IGD, from ./upnp.ts. */
  protocol: 'pcp' | 'nat-pmp' | 'upnp';
  gateway: string;
  internalPort: number;
  externalAddress: string;
  externalPort: number;
  /** Seconds the gateway granted; 0: a permanent UPnP mapping (lease 0), renewed by no one but deleted on stop. */
  lifetime: number;
  /** When it runs out, on the mapper's clock (ms); Infinity for lifetime 0. */
  expiresAt: number;
}

export type { PortMapClock };

export interface PortMapperOptions {
  /** The default gateway: an IPv4 or IPv6 literal (IPv6 link-local with its zone, fe80::1%eth0). */
  gateway: string;
  /** The local UDP port to make reachable from outside. */
  internalPort: number;
  /** Our address toward the gateway (PCP's Client IP); default: the one the socket is given. */
  localAddress?: string;
  /** Lifetime to ask for, seconds (RFC 6886 §3.3 recommends 7200). */
  lifetime?: number;
  /** How long one round of requests may go unanswered before we give up (ms). */
  giveUpMs?: number;
  /** After giving up, or a refusal that says nothing of its own, try again this much later (ms; 0: never). */
  retryAfterMs?: number;
  /** A gateway announcing a restart is answered within a random delay up to this (ms), so its clients spread out. */
  announceJitterMs?: number;
  /** Losses go to onLost only, not to the log (the caller words one line for all protocols). */
  quietLoss?: boolean;
  onMapped?: (m: PortMapping) => void;
  onLost?: (reason: string) => void;
  log?: (line: string) => void;
  transport?: OpenPortMapTransport;
  clock?: PortMapClock;
  /** In [0, 1): renewal and announcement jitter. */
  random?: () => number;
  /** The PCP mapping nonce's source. */
  randomBytes?: (n: number) => Uint8Array;
}

export type PortMapperState = 'idle' | 'mapping' | 'mapped' | 'failed' | 'stopped';

/** Tuning, not spec: see the opening comment. */
export const PORTMAP_GIVE_UP_MS = 4000;
export const PORTMAP_RETRY_AFTER_MS = 30 * 60_000;
/** Short-lived NAT-PMP failures (Network Failure, Out of resources) are retried sooner. */
const NATPMP_TRANSIENT_RETRY_MS = 60_000;
/** PCP error lifetimes (RFC 6887 §7.4) bound the retry, kept within these. */
const PCP_RETRY_MIN_MS = 30_000;
const PCP_RETRY_MAX_MS = 60 * 60_000;
const MIN_RENEWAL_MS = 500;
/** stop(): the delete goes out once and again after 250 ms; we wait at most this for its answer. */
const DELETE_WAIT_MS = 750;


type Step = 'pcp' | 'nat-pmp-address' | 'nat-pmp-map';

interface Round {
  /** A renewal of a live mapping: no answer is not yet a loss. */
  renewing: boolean;
  deadline: number;
  step: Step;
  packet: Uint8Array;
  attempt: number;
  /** Learnt from the NAT-PMP external address answer, for the map step. */
  externalAddress: string | null;
}

export class PortMapper {
  readonly stats = { sent: 0, received: 0, malformed: 0, foreign: 0, unexpected: 0 };
  private readonly gateway: string;
  private readonly family: 4 | 6;
  private readonly internalPort: number;
  private readonly lifetime: number;
  private readonly giveUpMs: number;
  private readonly retryAfterMs: number;
  private readonly announceJitterMs: number;
  private readonly clock: PortMapClock;
  private readonly random: () => number;
  private readonly nonce: Uint8Array;
  private localAddress: string | null;
  private transport: PortMapTransport | null = null;
  private ready = false;
  private st: PortMapperState = 'idle';
  private current: PortMapping | null = null;
  /** The last external port and address we had: suggested again after a loss (RFC 6886 §3.3). */
  private last: { port: number; address: string } | null = null;
  private round: Round | null = null;
  private readonly timer: OneTimer;
  private epochs: { pcp: EpochSample | null; natPmp: EpochSample | null } = { pcp: null, natPmp: null };
  private lastLostReason: string | null = null;
  private renewalStalled = false;
  private saidNoPcp = false;
  private stopping: Promise<void> | null = null;
  private deleteAcked: (() => void) | null = null;

  constructor(private readonly opts: PortMapperOptions) {
    const where = 'PortMapper';
    const gw = opts.gateway.replace(/%.*$/, '');
    const fam = isIP(gw);
    if (!fam) throw new Error(`${where}: gateway "${opts.gateway}" is not an IPv4 or IPv6 address`);
    if (!Number.isInteger(opts.internalPort) || opts.internalPort < 1 || opts.internalPort > 65535)
      throw new Error(`${where}: internalPort ${opts.internalPort} is not a port number (1–65535)`);
    if (opts.lifetime !== undefined && (!Number.isInteger(opts.lifetime) || opts.lifetime < 1 || opts.lifetime > 0xffffffff))
      throw new Error(`${where}: lifetime ${opts.lifetime} is not a number of seconds (1–4294967295)`);
    if (opts.localAddress !== undefined && isIP(opts.localAddress.replace(/%.*$/, '')) !== fam)
      throw new Error(`${where}: localAddress "${opts.localAddress}" is not an IPv${fam} address like the gateway ${opts.gateway}`);
    this.gateway = opts.gateway;
    this.family = fam as 4 | 6;
    this.internalPort = opts.internalPort;
    this.lifetime = opts.lifetime ?? NATPMP_RECOMMENDED_LIFETIME;
    this.giveUpMs = opts.giveUpMs ?? PORTMAP_GIVE_UP_MS;
    this.retryAfterMs = opts.retryAfterMs ?? PORTMAP_RETRY_AFTER_MS;
    this.announceJitterMs = opts.announceJitterMs ?? 5000;
    this.clock = opts.clock ?? processClock;
    this.timer = new OneTimer(this.clock, () => this.st !== 'stopped');
    this.random = opts.random ?? Math.random;
    this.nonce = (opts.randomBytes ?? ((n) => new Uint8Array(randomBytes(n))))(PCP_NONCE_SIZE);
    this.localAddress = opts.localAddress ?? null;
  }

  get state(): PortMapperState {
    return this.st;
  }

  get mapping(): PortMapping | null {
    return this.current;
  }

  /** Open the socket and start mapping; returns at once. */
  start(): void {
    if (this.st !== 'idle') return;
    this.st = 'mapping';
    this.transport = (this.opts.transport ?? openUdpTransport)(this.gateway, {
      ready: (local) => {
        if (this.st === 'stopped') return;
        this.ready = true;
        this.localAddress ??= local;
        this.beginRound(false);
      },
      datagram: (bytes, from) => this.receive(bytes, from),
      unreachable: (detail) => this.unreachable(detail),
      log: (line) => this.log(line),
    });
  }

  /** Map again now (the local address or the network changed). */
  refresh(): void {
    if (this.st === 'stopped' || this.st === 'idle' || !this.ready) return;
    this.beginRound(this.current !== null);
  }

  /**
   * Delete the mapping (lifetime 0: RFC 6886 §3.4, RFC 6887 §15) — sent once, again after
   * 250 ms, and waited for at most 750 ms — then close the sockets. Resolves either way.
   */
  stop(): Promise<void> {
    if (this.stopping) return this.stopping;
    const deleteVia = this.current?.protocol ?? (this.round?.step === 'pcp' ? 'pcp' : this.round?.step === 'nat-pmp-map' ? 'nat-pmp' : null);
    const ext = this.current ?? (this.last ? { externalPort: this.last.port, externalAddress: this.last.address } : null);
    this.st = 'stopped';
    this.timer.cancel();
    this.round = null;
    this.current = null;
    const t = this.transport;
    if (!t || !this.ready || !deleteVia) {
      t?.close();
      this.stopping = Promise.resolve();
      return this.stopping;
    }
    const packet =
      deleteVia === 'pcp'
        ? this.pcpRequest(0, ext?.externalPort ?? 0, ext?.externalAddress ?? this.anyAddress())
        : encodeNatPmpMapRequest({ protocol: 'udp', internalPort: this.internalPort, suggestedExternalPort: 0, lifetime: 0 });
    this.stopping = new Promise<void>((resolve) => {
      t.keepAlive(true);
      const timers: unknown[] = [];
      const finish = () => {
        for (const h of timers) this.clock.clearTimeout(h);
        this.deleteAcked = null;
        t.keepAlive(false);
        t.close();
        resolve();
      };
      this.deleteAcked = finish;
      this.send(packet);
      timers.push(this.clock.setTimeout(() => this.send(packet), NATPMP_INITIAL_TIMEOUT_MS));
      timers.push(this.clock.setTimeout(finish, DELETE_WAIT_MS));
    });
    return this.stopping;
  }

  // ───────────────────────────── rounds ─────────────────────────────

  /** A round of requests: PCP first, NAT-PMP if the gateway says so; bounded by giveUpMs. */
  private beginRound(renewing: boolean): void {
    this.timer.cancel();
    this.st = renewing ? 'mapped' : 'mapping';
    // A renewal round ends with the mapping it renews, at the latest.
    let deadline = this.clock.now() + this.giveUpMs;
    if (renewing && this.current) deadline = Math.min(deadline, this.current.expiresAt);
    this.round = { renewing, deadline, step: 'pcp', packet: this.pcpRequest(this.lifetime), attempt: 0, externalAddress: null };
    this.transmit();
  }

  private pcpRequest(lifetime: number, port = this.last?.port ?? this.internalPort, address = this.last?.address ?? this.anyAddress()): Uint8Array {
    return encodePcpMapRequest({
      lifetime,
      clientAddress: this.localAddress ?? this.anyAddress(),
      nonce: this.nonce,
      protocol: PCP_PROTOCOL_UDP,
      internalPort: this.internalPort,
      externalPort: port,
      externalAddress: address,
    });
  }

  private anyAddress(): string {
    return this.family === 4 ? '0.0.0.0' : '::';
  }

  /** Move the round to its next step and send that step's first request now. */
  private step(step: Step): void {
    const r = this.round!;
    r.step = step;
    r.attempt = 0;
    r.packet =
      step === 'nat-pmp-address'
        ? encodeNatPmpExternalAddressRequest()
        : encodeNatPmpMapRequest({ protocol: 'udp', internalPort: this.internalPort, suggestedExternalPort: this.last?.port ?? this.internalPort, lifetime: this.lifetime });
    this.timer.cancel();
    this.transmit();
  }

  /** Send the round's request and arm the next retransmission: 250 ms, doubling, within the deadline. */
  private transmit(): void {
    const r = this.round!;
    this.send(r.packet);
    const now = this.clock.now();
    const wait = Math.min(r.deadline - now, NATPMP_INITIAL_TIMEOUT_MS * 2 ** r.attempt);
    this.timer.arm(() => {
      if (this.round !== r) return;
      if (this.clock.now() >= r.deadline) return this.silent(r);
      r.attempt++;
      this.transmit();
    }, Math.max(0, wait));
  }

  private send(packet: Uint8Array): void {
    this.stats.sent++;
    try {
      this.transport?.send(packet);
    } catch (e) {
      this.log(`portmap: sending to ${this.gateway} failed: ${(e as Error).message}`);
    }
  }

  // ───────────────────────────── answers ─────────────────────────────

  private receive(bytes: Uint8Array, from: DatagramSource): void {
    if (this.st === 'stopped' && !this.deleteAcked) return;
    this.stats.received++;
    // RFC 6886 §3.2, §3.2.1 and RFC 6887 §8.3: only the gateway we asked is listened to.
    if (!sameAddress(from.address, this.gateway)) {
      this.stats.foreign++;
      return;
    }
    if (bytes.length > 0 && bytes[0] === NATPMP_VERSION) {
      const m = decodeNatPmpResponse(bytes);
      if (!m) this.stats.malformed++;
      else this.onNatPmp(m, from.via);
    } else {
      const m = decodePcpResponse(bytes);
      if (!m) this.stats.malformed++;
      else this.onPcp(m);
    }
  }

  private onPcp(m: PcpResponse): void {
    const epochOk = this.checkEpoch('pcp', m.epoch);
    const r = this.round;
    if (m.opcode === PcpOpcode.MAP && (!m.map || sameNonce(m.map.nonce, this.nonce))) {
      if (this.deleteAcked) return this.deleteAcked();
      if (r?.step === 'pcp' && (!m.map || (m.map.internalPort === this.internalPort && m.map.protocol === PCP_PROTOCOL_UDP))) {
        if (m.resultCode === PcpResult.SUCCESS) {
          if (!epochOk) this.log(`portmap: ${this.gateway} restarted (its PCP epoch went back); the mapping is made again`);
          return this.mapped('pcp', m.map!.externalAddress, m.map!.externalPort, m.lifetime);
        }
        if (m.resultCode === PcpResult.UNSUPP_VERSION) return this.fallBack(`it answered UNSUPP_VERSION, speaking version ${m.version}`);
        const retry = clamp(Math.max(m.lifetime, 1) * 1000, PCP_RETRY_MIN_MS, PCP_RETRY_MAX_MS);
        return this.refused(`${pcpResultName(m.resultCode)} (PCP)`, retry);
      }
    } else if (m.opcode !== PcpOpcode.ANNOUNCE) {
      this.stats.unexpected++;
    }
    if (!epochOk) this.lostState('its PCP epoch went back');
  }

  private onNatPmp(m: NatPmpResponse, via: DatagramSource['via']): void {
    const epochOk = this.checkEpoch('natPmp', m.epoch);
    const r = this.round;
    if (via === 'request') {
      if (this.deleteAcked) {
        if (m.kind === 'map' && m.internalPort === this.internalPort) return this.deleteAcked();
        return;
      }
      // RFC 6886 §1.1: a PCP request answered in NAT-PMP (Unsupported Version) means: ask again in NAT-PMP.
      if (r?.step === 'pcp') return this.fallBack(`it answered in NAT-PMP (${natPmpResultName(m.resultCode)})`);
      if (r?.step === 'nat-pmp-address' && (m.kind === 'external-address' || m.kind === 'error')) {
        if (m.resultCode !== NatPmpResult.SUCCESS || m.kind === 'error') return this.refusedNatPmp(m.resultCode);
        r.externalAddress = m.externalAddress;
        return this.step('nat-pmp-map');
      }
      if (r?.step === 'nat-pmp-map' && (m.kind === 'error' || (m.kind === 'map' && m.protocol === 'udp' && m.internalPort === this.internalPort))) {
        if (m.resultCode !== NatPmpResult.SUCCESS || m.kind === 'error') return this.refusedNatPmp(m.resultCode);
        if (!epochOk) this.log(`portmap: ${this.gateway} restarted (its NAT-PMP epoch went back); the mapping is made again`);
        return this.mapped('nat-pmp', r.externalAddress!, m.externalPort, m.lifetime);
      }
      this.stats.unexpected++;
    } else if (m.kind === 'external-address' && epochOk && this.current?.protocol === 'nat-pmp' && m.externalAddress && m.externalAddress !== this.current.externalAddress) {
      // RFC 6886 §3.2.1: the gateway announces a new external address.
      return this.lostState(`its external address is now ${m.externalAddress}`);
    }
    if (!epochOk) this.lostState('its NAT-PMP epoch went back');
  }

  /**
   * Every packet from the gateway carries its epoch; remember it and say whether it is plausible
   * against the last one (RFC 6887 §8.5, RFC 6886 §3.6). The first one always is.
   */
  private checkEpoch(which: 'pcp' | 'natPmp', epoch: number): boolean {
    const now = this.clock.now();
    const prev = this.epochs[which];
    this.epochs[which] = { epoch, atMs: now };
    if (!prev) return true;
    return which === 'pcp' ? pcpEpochValid(prev, epoch, now) : natPmpEpochPlausible(prev, epoch, now);
  }

  private fallBack(why: string): void {
    if (this.family === 6) return this.refused(`no PCP: ${why}, and NAT-PMP is IPv4 only`, this.retryAfterMs);
    this.step('nat-pmp-address');
    if (!this.saidNoPcp) this.log(`portmap: ${this.gateway} does not speak PCP (${why}); asking in NAT-PMP`);
    this.saidNoPcp = true;
  }

  // ───────────────────────────── outcomes ─────────────────────────────

  private mapped(protocol: PortMapping['protocol'], externalAddress: string, externalPort: number, lifetime: number): void {
    if (lifetime === 0 || externalPort === 0) return this.refused(`a mapping with lifetime ${lifetime} and port ${externalPort} (${protocol})`, this.retryAfterMs);
    const now = this.clock.now();
    const before = this.current;
    const m: PortMapping = { protocol, gateway: this.gateway, internalPort: this.internalPort, externalAddress, externalPort, lifetime, expiresAt: now + lifetime * 1000 };
    this.current = m;
    this.last = { port: externalPort, address: externalAddress };
    this.round = null;
    this.st = 'mapped';
    this.lastLostReason = null;
    this.renewalStalled = false;
    if (!before || before.externalAddress !== externalAddress || before.externalPort !== externalPort || before.protocol !== protocol) {
      this.log(`portmap: udp ${this.internalPort} mapped to ${externalAddress}:${externalPort} for ${lifetime} s by ${this.gateway} (${protocol === 'pcp' ? 'PCP' : 'NAT-PMP'})`);
    }
    // RFC 6887 §11.2.1: renew between 1/2 and 5/8 of the lifetime; RFC 6886 §3.3: halfway.
    const renewIn = protocol === 'pcp' ? pcpRenewalDelayMs(lifetime, this.random()) : lifetime * 500;
    this.timer.arm(() => this.beginRound(true), Math.max(MIN_RENEWAL_MS, renewIn));
    this.opts.onMapped?.(m);
  }

  /** The round went unanswered until its deadline. */
  private silent(r: Round): void {
    const what = r.step === 'pcp' ? 'no PCP or NAT-PMP answer' : 'no NAT-PMP answer';
    const now = this.clock.now();
    const m = this.current;
    if (r.renewing && m) {
      if (m.expiresAt <= now) return this.lose(`the mapping expired: ${what} from ${this.gateway} to renewals`, this.retryAfterMs);
      // Keep the mapping while it lasts; try again at half of what is left (as DHCP does).
      this.round = null;
      if (!this.renewalStalled) this.log(`portmap: ${what} from ${this.gateway} to a renewal; the mapping holds until it expires in ${formatMs(m.expiresAt - now)}`);
      this.renewalStalled = true;
      const left = m.expiresAt - now;
      if (left / 2 >= 1000) this.timer.arm(() => this.beginRound(true), left / 2);
      else this.timer.arm(() => this.lose(`the mapping expired: ${what} from ${this.gateway} to renewals`, this.retryAfterMs), left);
      return;
    }
    this.lose(`${what} from ${this.gateway}:5351 within ${formatMs(this.giveUpMs)}`, this.retryAfterMs);
  }

  private refused(what: string, retryMs: number): void {
    this.lose(`${this.gateway} refused the mapping: ${what}`, retryMs);
  }

  private refusedNatPmp(code: number): void {
    const transient = code === NatPmpResult.NETWORK_FAILURE || code === NatPmpResult.OUT_OF_RESOURCES;
    this.refused(`${natPmpResultName(code)} (NAT-PMP)`, transient ? NATPMP_TRANSIENT_RETRY_MS : this.retryAfterMs);
  }

  private unreachable(detail: string): void {
    if (this.st === 'stopped' || this.st === 'failed') return;
    if (this.current && this.current.expiresAt > this.clock.now() && this.round?.renewing) return; // wait out the renewal round
    this.lose(detail, this.retryAfterMs);
  }

  /** No mapping now: tell once in the log (the same reason again stays quiet), and try again later. */
  private lose(reason: string, retryMs: number): void {
    this.timer.cancel();
    this.round = null;
    this.current = null;
    this.st = 'failed';
    const retry = retryMs > 0 ? `trying again in ${formatMs(retryMs)}` : 'not trying again';
    if (!this.opts.quietLoss && reason !== this.lastLostReason) this.log(`portmap: ${reason}; ${retry}`);
    this.lastLostReason = reason;
    if (retryMs > 0) this.timer.arm(() => this.beginRound(false), retryMs);
    this.opts.onLost?.(reason);
  }

  /** The gateway lost its mappings (it restarted) or changed address: map again, suggesting the old port. */
  private lostState(why: string): void {
    if (this.st !== 'mapped' || (this.round && !this.round.renewing)) return;
    this.log(`portmap: ${this.gateway} lost its mappings (${why}); mapping again`);
    const wait = this.random() * this.announceJitterMs;
    this.round = null;
    this.timer.arm(() => this.beginRound(false), wait);
  }

  private log(line: string): void {
    this.opts.log?.(line);
  }
}

function sameAddress(a: string, b: string): boolean {
  const strip = (x: string) => x.replace(/%.*$/, '').replace(/^::ffff:(?=\d+\.)/i, '').toLowerCase();
  return strip(a) === strip(b);
}

function sameNonce(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, v));
}

function formatMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 120_000) return `${Math.round(ms / 100) / 10} s`;
  return `${Math.round(ms / 60_000)} min`;
}
