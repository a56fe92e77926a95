/**
 * UpnpMapper: asks a UPnP Internet Gateway Device (WANIPConnection:1/:2, WANPPPConnection:1) to
 * map our UDP port, keeps the lease renewed, and deletes the mapping on stop() — the third way
 * after PCP and NAT-PMP (./client.ts); ../port-mapping.ts decides when it is tried.
 *
 * Own code, not a library: the registry's UPnP clients were weighed —
 * @achingbrain/nat-port-mapper (kept up, but pulls in xml2js, @libp2p/logger and an SSDP
 * package, owns its sockets, timers and refresh policy, with no seam for a fake transport or
 * clock), nat-upnp and nat-api (unmaintained, on the deprecated `request`). What we need is
 * small — one multicast search, one GET, three SOAP actions — and the router's answers are
 * hostile input, so a short client whose every read is bounded (./upnp-wire.ts, a careful
 * extractor of the few XML elements needed rather than an XML parser) fits keymesh better.
 *
 *   start() ─▶ discovering ─▶ describing ─▶ GetExternalIPAddress ─▶ AddPortMapping ─▶ mapped
 *               M-SEARCH (IGD:1,   GET LOCATION      (the address we      718: another port  │
 *               WANIPConnection:1)  (≤ 64 KiB, 2 s)  announce)            725: lease 0       │ ½ lease
 *               multicast + unicast                                        (permanent)        ▼
 *               to the gateway,                                                          renewing:
 *               answers ≤ 2 s                                                          AddPortMapping
 *        nothing / refused ─▶ failed (onLost, one log line) ─▶ again in 30 min          again, same port
 *        stop() ─▶ DeletePortMapping (bounded, 1 s), also for a lease-0 mapping
 *
 * Only the default gateway is listened to, and only URLs on its address are followed: an answer
 * from another host, or a LOCATION or control URL pointing elsewhere, is counted and dropped.
 * Every wait is bounded by the clock (the transport's own timeouts are a second fence), so a
 * device that accepts a connection and never answers costs at most the round's bound.
 *
 * The seams (transport, clock, random) let the unit tests drive this against an in-memory IGD on
 * a virtual clock; the default is ./upnp-transport.ts and the process's unref'd timers.
 */
import type { PortMapping } from './client.js';
import { OneTimer, processClock, type PortMapClock } from './clock.js';
import { upnpTransport, type HttpResult, type UpnpTransport } from './upnp-transport.js';
import {
  decodeSoapResponse,
  decodeSsdpAnswer,
  encodeMSearch,
  encodeSoapRequest,
  parseDeviceDescription,
  printable,
  SSDP_GROUP,
  SSDP_PORT,
  ST_IGD,
  ST_WAN_IP,
  UpnpError,
  upnpErrorName,
  usableExternalAddress,
  type SoapResult,
  type WanService,
} from './upnp-wire.js';

export interface UpnpMapperOptions {
  /** The default gateway (IPv4): the only device asked and listened to. */
  gateway: string;
  internalPort: number;
  /** Our address toward the gateway (NewInternalClient); default: what the route to it picks. */
  localAddress?: string;
  /** Lease to ask for, seconds (a router that only takes 0 gets 0). */
  lease?: number;
  /** How long SSDP answers are waited for (ms). */
  searchMs?: number;
  /** After a failure, try again this much later (ms; 0: never). */
  retryAfterMs?: number;
  /** Losses go to onLost only, not to the log (the caller words one line for all protocols). */
  quietLoss?: boolean;
  onMapped?: (m: PortMapping) => void;
  onLost?: (reason: string) => void;
  log?: (line: string) => void;
  transport?: UpnpTransport;
  clock?: PortMapClock;
  random?: () => number;
}

export type UpnpMapperState = 'idle' | 'mapping' | 'mapped' | 'failed' | 'stopped';

/** Tuning, not spec. */
export const UPNP_LEASE = 3600;
export const UPNP_SEARCH_MS = 2000;
const UPNP_RETRY_AFTER_MS = 30 * 60_000;
const SEARCH_REPEAT_MS = 500;
const HTTP_TIMEOUT_MS = 2000;
const DESCRIPTION_MAX_BYTES = 64 * 1024;
const SOAP_MAX_BYTES = 16 * 1024;
const MAX_LOCATIONS = 3;
const PORT_ATTEMPTS = 4;
/** A lease-0 mapping has no end; we check it is still there this often (a router restart loses it). */
const PERMANENT_RECHECK_MS = 30 * 60_000;
const DELETE_WAIT_MS = 1000;
const MIN_RENEWAL_MS = 1000;
const DESCRIPTION = 'keymesh';


/** Why a round ended without a mapping; `transport`: the device did not answer properly, so look for it again next time. */
class Fail {
  constructor(
    readonly reason: string,
    readonly transport = false,
  ) {}
}

/** The round was overtaken (stop, refresh): drop what it was doing. */
const STALE = Symbol('stale');

export class UpnpMapper {
  readonly stats = { searches: 0, answers: 0, foreign: 0, malformed: 0, requests: 0, conflicts: 0 };
  private readonly gateway: string;
  private readonly internalPort: number;
  private readonly lease: number;
  private readonly searchMs: number;
  private readonly retryAfterMs: number;
  private readonly io: UpnpTransport;
  private readonly clock: PortMapClock;
  private readonly random: () => number;
  private localAddress: string | null;
  private st: UpnpMapperState = 'idle';
  private gen = 0;
  private readonly timer: OneTimer;
  private services: WanService[] = [];
  private current: PortMapping | null = null;
  private mappedOn: WanService | null = null;
  private last: { port: number } | null = null;
  /** The router said OnlyPermanentLeasesSupported (725): ask with lease 0 from now on. */
  private permanent = false;
  private inflightAdd: { svc: WanService; port: number; ok: Promise<boolean> } | null = null;
  private lastLostReason: string | null = null;
  private renewalStalled = false;
  private stopping: Promise<void> | null = null;

  constructor(private readonly opts: UpnpMapperOptions) {
    const where = 'UpnpMapper';
    if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(opts.gateway)) throw new Error(`${where}: gateway "${opts.gateway}" is not an IPv4 address (UPnP IGD port mapping is IPv4)`);
    if (!Number.isInteger(opts.internalPort) || opts.internalPort < 1 || opts.internalPort > 65535)
      throw new Error(`${where}: internalPort ${opts.internalPort} is not a port number (1–65535)`);
    if (opts.lease !== undefined && (!Number.isInteger(opts.lease) || opts.lease < 0 || opts.lease > 604800))
      throw new Error(`${where}: lease ${opts.lease} is not a number of seconds (0–604800)`);
    this.gateway = opts.gateway;
    this.internalPort = opts.internalPort;
    this.lease = opts.lease ?? UPNP_LEASE;
    this.permanent = this.lease === 0;
    this.searchMs = opts.searchMs ?? UPNP_SEARCH_MS;
    this.retryAfterMs = opts.retryAfterMs ?? UPNP_RETRY_AFTER_MS;
    this.io = opts.transport ?? upnpTransport;
    this.clock = opts.clock ?? processClock;
    this.timer = new OneTimer(this.clock, () => this.st !== 'stopped');
    this.random = opts.random ?? Math.random;
    this.localAddress = opts.localAddress ?? null;
  }

  get state(): UpnpMapperState {
    return this.st;
  }

  get mapping(): PortMapping | null {
    return this.current;
  }

  /** Start looking for the gateway's IGD and mapping; returns at once, never throws later. */
  start(): void {
    if (this.st !== 'idle') return;
    void this.run(false);
  }

  /** Map again now (our address or the network changed). */
  refresh(): void {
    if (this.st === 'idle' || this.st === 'stopped') return;
    this.localAddress = this.opts.localAddress ?? null;
    void this.run(this.current !== null);
  }

  /** Delete the mapping (waiting, bounded, for an AddPortMapping still in flight first); resolves either way. */
  stop(): Promise<void> {
    if (this.stopping) return this.stopping;
    const held = this.current && this.mappedOn ? { svc: this.mappedOn, port: this.current.externalPort } : null;
    const inflight = this.inflightAdd;
    this.st = 'stopped';
    this.gen++;
    this.timer.cancel();
    this.current = null;
    this.stopping = (async () => {
      let target = held;
      if (inflight && (await this.bounded(inflight.ok, DELETE_WAIT_MS, false))) target = { svc: inflight.svc, port: inflight.port };
      if (!target) return;
      const req = encodeSoapRequest(target.svc.serviceType, 'DeletePortMapping', [
        ['NewRemoteHost', ''],
        ['NewExternalPort', target.port],
        ['NewProtocol', 'UDP'],
      ]);
      const res = await this.bounded(this.post(target.svc, req, true), DELETE_WAIT_MS, { error: `no answer within ${DELETE_WAIT_MS} ms` });
      const d = 'error' in res ? null : decodeSoapResponse(res.status, res.body, 'DeletePortMapping');
      if (!d || !d.ok) this.log(`upnp: deleting the mapping of port ${target.port} on ${this.gateway}: ${'error' in res ? res.error : d ? upnpErrorName(d.code, d.description) : 'a malformed answer'}`);
    })().catch(() => undefined);
    return this.stopping;
  }

  // ───────────────────────────── a round ─────────────────────────────

  /** Find the service (unless known), learn the external address, and add (or renew) the mapping. */
  private async run(renewing: boolean): Promise<void> {
    const gen = ++this.gen;
    this.timer.cancel();
    if (!renewing) this.st = 'mapping';
    const live = () => gen === this.gen;
    try {
      this.localAddress ??= await this.bounded(this.io.localAddress(this.gateway), 1000, null);
      if (!live()) return;
      if (!this.localAddress) throw new Fail(`no local address toward ${this.gateway}`);
      if (this.services.length === 0) this.services = await this.discover(live);
      if (!live()) return;
      let fail: Fail | null = null;
      for (const svc of [...this.services]) {
        try {
          return await this.mapOn(svc, live);
        } catch (e) {
          if (!(e instanceof Fail)) throw e;
          fail = e;
        }
      }
      throw fail ?? new Fail('no port mapping service');
    } catch (e) {
      if (e === STALE || !live()) return;
      const f = e instanceof Fail ? e : new Fail(`internal error: ${(e as Error).message}`);
      if (f.transport) this.services = [];
      this.roundFailed(f, renewing);
    }
  }

  /** SSDP search, then the first answering device's description with a port mapping service. */
  private discover(live: () => boolean): Promise<WanService[]> {
    const local = this.localAddress!;
    return new Promise<WanService[]>((resolve, reject) => {
      const locations: string[] = [];
      const seen = new Set<string>();
      const notes: string[] = [];
      const timers: unknown[] = [];
      let describing = false;
      let expired = false;
      let done = false;
      const finish = (found: WanService[] | Fail | typeof STALE) => {
        if (done) return;
        done = true;
        for (const t of timers) this.clock.clearTimeout(t);
        sock?.close();
        if (found instanceof Fail || found === STALE) reject(found);
        else resolve(found);
      };
      const nothing = () =>
        new Fail(
          notes.length
            ? notes.join('; ')
            : `no UPnP IGD answered an SSDP search from ${local} within ${this.searchMs / 1000} s`,
        );
      const next = async () => {
        if (describing || done) return;
        const loc = locations.shift();
        if (loc === undefined) {
          if (expired) finish(nothing());
          return;
        }
        describing = true;
        const found = await this.describe(loc, notes);
        describing = false;
        if (!live()) return finish(STALE);
        if (found.length) return finish(found);
        void next();
      };
      // declared before it is opened: finish() may run from within openSsdp (a socket error)
      let sock: ReturnType<UpnpTransport['openSsdp']> | undefined;
      sock = this.io.openSsdp(local, {
        datagram: (bytes, from) => {
          if (done) return;
          this.stats.answers++;
          if (from.address !== this.gateway) return void this.stats.foreign++;
          const a = decodeSsdpAnswer(bytes);
          if (!a) return void this.stats.malformed++;
          let u: URL;
          try {
            u = new URL(a.location);
          } catch {
            return void this.stats.malformed++;
          }
          if (u.protocol !== 'http:' || u.hostname !== this.gateway) {
            this.stats.foreign++;
            const note = `${this.gateway} gave a LOCATION elsewhere (${printable(a.location, 80)}), not followed`;
            if (notes.length < 3 && !notes.includes(note)) notes.push(note);
            return;
          }
          if (seen.size >= MAX_LOCATIONS || seen.has(u.href)) return;
          seen.add(u.href);
          locations.push(u.href);
          void next();
        },
        error: (detail) => {
          notes.push(detail);
          finish(new Fail(detail));
        },
      });
      const search = () => {
        for (const st of [ST_IGD, ST_WAN_IP]) {
          const m = encodeMSearch(st);
          // multicast as UDA says, and unicast to the gateway: the one we want, even where multicast is filtered
          sock?.send(m, SSDP_GROUP, SSDP_PORT);
          sock?.send(m, this.gateway, SSDP_PORT);
          this.stats.searches++;
        }
      };
      search();
      timers.push(this.clock.setTimeout(search, SEARCH_REPEAT_MS));
      timers.push(
        this.clock.setTimeout(() => {
          expired = true;
          if (!live()) finish(STALE);
          else if (!describing && locations.length === 0) finish(nothing());
        }, this.searchMs),
      );
    });
  }

  /** GET the device description: its port mapping services, or [] with a note why not. */
  private async describe(location: string, notes: string[]): Promise<WanService[]> {
    this.stats.requests++;
    const res = await this.bounded(this.io.http({ method: 'GET', url: location, headers: {}, timeoutMs: HTTP_TIMEOUT_MS, maxBytes: DESCRIPTION_MAX_BYTES }), HTTP_TIMEOUT_MS + 500, {
      error: `no answer within ${HTTP_TIMEOUT_MS} ms`,
    });
    if ('error' in res || res.status !== 200) {
      notes.push(`its description ${location}: ${'error' in res ? res.error : `HTTP ${res.status}`}`);
      return [];
    }
    const found = parseDeviceDescription(res.body, location);
    if (!found.length) notes.push(`its description ${location} lists no WANIPConnection or WANPPPConnection service`);
    return found;
  }

  /** GetExternalIPAddress, then AddPortMapping: our port first, another on a conflict, lease 0 if the router wants it. */
  private async mapOn(svc: WanService, live: () => boolean): Promise<void> {
    const ext = await this.soap(svc, 'GetExternalIPAddress', [], ['NewExternalIPAddress'], live);
    if (!ext.ok) throw new Fail(`GetExternalIPAddress: ${upnpErrorName(ext.code, ext.description)}`);
    const raw = ext.fields.get('NewExternalIPAddress');
    const address = usableExternalAddress(raw);
    if (!address) throw new Fail(`it has no usable external address ("${printable(raw ?? '', 40)}"): is its WAN connection up?`);
    let port = this.last?.port ?? this.internalPort;
    const tried: number[] = [];
    while (tried.length < PORT_ATTEMPTS) {
      const lease = this.permanent ? 0 : this.lease;
      const args: Array<[string, string | number]> = [
        ['NewRemoteHost', ''],
        ['NewExternalPort', port],
        ['NewProtocol', 'UDP'],
        ['NewInternalPort', this.internalPort],
        ['NewInternalClient', this.localAddress!],
        ['NewEnabled', 1],
        ['NewPortMappingDescription', DESCRIPTION],
        ['NewLeaseDuration', lease],
      ];
      // stop() while this is in flight waits for its answer (the raw one: this round is stale by then)
      let flight: UpnpMapper['inflightAdd'] = null;
      const onPost = (raw: Promise<HttpResult>) => {
        const ok = raw.then((res) => !('error' in res) && decodeSoapResponse(res.status, res.body, 'AddPortMapping')?.ok === true);
        this.inflightAdd = flight = { svc, port, ok };
      };
      let r: SoapResult;
      try {
        r = await this.soap(svc, 'AddPortMapping', args, [], live, onPost);
      } finally {
        if (this.inflightAdd === flight) this.inflightAdd = null;
      }
      if (r.ok) return this.mapped(svc, address, port, lease);
      if (r.code === UpnpError.ONLY_PERMANENT_LEASES_SUPPORTED && lease > 0) {
        // IGD:1 routers may take only lease 0 (WANIPConnection:1 §2.2.23); we delete it on stop
        this.permanent = true;
        this.log(`upnp: ${this.gateway} takes only permanent mappings (OnlyPermanentLeasesSupported, 725); asking with lease 0, deleted on stop`);
        continue;
      }
      if (r.code === UpnpError.CONFLICT_IN_MAPPING_ENTRY) {
        this.stats.conflicts++;
        tried.push(port);
        port = this.otherPort(tried);
        continue;
      }
      throw new Fail(`${this.gateway} refused the mapping: ${upnpErrorName(r.code, r.description)} (UPnP ${shortType(svc)})`);
    }
    throw new Fail(`${this.gateway} refused the mapping: every external port tried (${tried.join(', ')}) is taken, ConflictInMappingEntry (718)`);
  }

  /** A random port in 1024–65535 not tried yet (the next free one up from the draw). */
  private otherPort(tried: number[]): number {
    let p = 1024 + Math.floor(this.random() * (65536 - 1024));
    while (tried.includes(p)) p = p === 65535 ? 1024 : p + 1;
    return p;
  }

  private post(svc: WanService, req: { soapAction: string; body: string }, hold = false): Promise<HttpResult> {
    this.stats.requests++;
    return this.io.http({
      method: 'POST',
      url: svc.controlUrl,
      headers: { 'Content-Type': 'text/xml; charset="utf-8"', SOAPAction: req.soapAction },
      body: req.body,
      timeoutMs: HTTP_TIMEOUT_MS,
      maxBytes: SOAP_MAX_BYTES,
      hold,
    });
  }

  /** One SOAP action, bounded; the device not answering properly is a (transport) Fail. */
  private async soap(
    svc: WanService,
    action: string,
    args: Array<[string, string | number]>,
    outArgs: string[],
    live: () => boolean,
    onPost?: (raw: Promise<HttpResult>) => void,
  ): Promise<SoapResult> {
    const raw = this.post(svc, encodeSoapRequest(svc.serviceType, action, args));
    onPost?.(raw);
    const res = await this.bounded(raw, HTTP_TIMEOUT_MS + 500, {
      error: `no answer within ${HTTP_TIMEOUT_MS} ms`,
    });
    if (!live()) throw STALE;
    if ('error' in res) throw new Fail(`${action} at ${svc.controlUrl}: ${res.error}`, true);
    const d = decodeSoapResponse(res.status, res.body, action, outArgs);
    if (!d) {
      this.stats.malformed++;
      throw new Fail(`${action} at ${svc.controlUrl}: a malformed answer (HTTP ${res.status})`, true);
    }
    return d;
  }

  // ───────────────────────────── outcomes ─────────────────────────────

  private mapped(svc: WanService, externalAddress: string, externalPort: number, lease: number): void {
    const now = this.clock.now();
    const before = this.current;
    const m: PortMapping = {
      protocol: 'upnp',
      gateway: this.gateway,
      internalPort: this.internalPort,
      externalAddress,
      externalPort,
      lifetime: lease,
      expiresAt: lease > 0 ? now + lease * 1000 : Number.POSITIVE_INFINITY,
    };
    this.current = m;
    this.mappedOn = svc;
    this.services = [svc, ...this.services.filter((s) => s !== svc)];
    this.last = { port: externalPort };
    this.st = 'mapped';
    this.lastLostReason = null;
    this.renewalStalled = false;
    if (!before || before.externalAddress !== externalAddress || before.externalPort !== externalPort) {
      const howLong = lease > 0 ? `for ${lease} s` : 'permanently (lease 0)';
      this.log(`upnp: udp ${this.internalPort} mapped to ${externalAddress}:${externalPort} ${howLong} by ${this.gateway} (UPnP ${shortType(svc)})`);
    }
    this.timer.arm(() => void this.run(true), lease > 0 ? Math.max(MIN_RENEWAL_MS, lease * 500) : PERMANENT_RECHECK_MS);
    this.opts.onMapped?.(m);
  }

  private roundFailed(f: Fail, renewing: boolean): void {
    const m = this.current;
    const now = this.clock.now();
    if (renewing && m && m.expiresAt > now) {
      // Keep the mapping while it lasts; try again at half of what is left (as DHCP does).
      this.st = 'mapped';
      if (!this.renewalStalled) this.log(`upnp: renewing the mapping failed (${f.reason}); it holds until its lease ends`);
      this.renewalStalled = true;
      const left = m.expiresAt - now;
      if (!Number.isFinite(left)) this.timer.arm(() => void this.run(true), PERMANENT_RECHECK_MS);
      else if (left / 2 >= MIN_RENEWAL_MS) this.timer.arm(() => void this.run(true), left / 2);
      else this.timer.arm(() => this.lose(`the mapping expired: ${f.reason}`), left);
      return;
    }
    this.lose(renewing && m ? `the mapping expired: ${f.reason}` : f.reason);
  }

  private lose(reason: string): void {
    this.timer.cancel();
    this.current = null;
    this.st = 'failed';
    const retry = this.retryAfterMs > 0 ? `trying again in ${Math.round(this.retryAfterMs / 60_000)} min` : 'not trying again';
    if (!this.opts.quietLoss && reason !== this.lastLostReason) this.log(`upnp: ${reason}; ${retry}`);
    this.lastLostReason = reason;
    if (this.retryAfterMs > 0) this.timer.arm(() => void this.run(false), this.retryAfterMs);
    this.opts.onLost?.(reason);
  }

  // ───────────────────────────── helpers ─────────────────────────────

  /** `p`, or `fallback` if it has not settled within `ms` on our clock. */
  private bounded<T>(p: Promise<T>, ms: number, fallback: T): Promise<T> {
    return new Promise<T>((resolve) => {
      const t = this.clock.setTimeout(() => resolve(fallback), ms);
      p.then(
        (v) => {
          this.clock.clearTimeout(t);
          resolve(v);
        },
        () => {
          this.clock.clearTimeout(t);
          resolve(fallback);
        },
      );
    });
  }


  private log(line: string): void {
    this.opts.log?.(line);
  }
}

/** "WANIPConnection:2" */
function shortType(svc: WanService): string {
  return svc.serviceType.replace('urn:schemas-upnp-org:service:', '');
}
