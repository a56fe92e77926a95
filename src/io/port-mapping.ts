/**
 * Port mapping as the runtime uses it (`PortMapping = on`, the default): find the default
 * gateway, ask it to map our listen port (portmap/client.ts: PCP, else NAT-PMP; portmap/upnp.ts:
 * UPnP IGD when neither answers, see UPNP_HEAD_START_MS), and announce the
 * router's side of the mapping as one more address we can be reached at — to keymesh peers and
 * lighthouses alike (ADDRESSES), so a member behind a NAT that grants mappings is reachable
 * directly even from behind a NAT that punching cannot open. The mapping is renewed by the
 * client, withdrawn from the announcements when it is lost, asked for again when our addresses
 * change (the gateway may be another one now), and deleted on `down`.
 *
 * It may touch: the runtime's LocalEnds (setMapped) and announcement (watch.ts), its log; it never
 * delays bring-up (a silent or refusing router costs one log line, later).
 */
import { findDefaultGateway } from './portmap/gateway.js';
import { PortMapper, PORTMAP_RETRY_AFTER_MS, type PortMapping } from './portmap/client.js';
import { UpnpMapper } from './portmap/upnp.js';
import { addressTo16 } from './udp-path.js';
import type { LocalEnds } from './local-ends.js';

/**
 * UPnP IGD is asked when PCP and NAT-PMP have failed (refused, port unreachable, given up), or
 * when they have not answered within this much, whichever comes first: a router on the link
 * answers them in milliseconds, and one that drops them silently must not hold UPnP for the 4 s
 * of their bound. A PCP or NAT-PMP mapping, when there is one, is preferred: UPnP's is deleted.
 */
export const UPNP_HEAD_START_MS = 1000;

export interface PortMappingHost {
  readonly name: string;
  readonly listenPort: number;
  readonly localEnds: LocalEnds;
  readonly stopped: boolean;
  log(line: string): void;
  /** Re-announce our addresses (local ends and mappings) to every peer that speaks keymesh. */
  announce(): void;
}

export class PortMappings {
  private mapper: PortMapper | null = null;
  private upnp: UpnpMapper | null = null;
  private upnpTimer: NodeJS.Timeout | null = null;
  private gateway: string | null = null;
  private current: PortMapping | null = null;
  private starting: Promise<void> | null = null;
  /** Why each way has no mapping now: when both have failed, one log line says so. */
  private failures: { pcp: string | null; upnp: string | null } = { pcp: null, upnp: null };
  private lastSaid: string | null = null;

  constructor(private readonly rt: PortMappingHost) {}

  /** The mapping held now (for `keymesh show`), or null. */
  get mapping(): PortMapping | null {
    return this.current;
  }

  /** Start (or, after an address change, re-check): never throws, never blocks the caller. */
  start(): void {
    if (this.starting) return;
    this.starting = this.startNow()
      .catch((e) => this.rt.log(`${this.rt.name}: port mapping: ${(e as Error).message}`))
      .finally(() => (this.starting = null));
  }

  private async startNow(): Promise<void> {
    const gw = await findDefaultGateway(4);
    if (this.rt.stopped) return;
    if (!gw) {
      // no default gateway (a host on one link, a lab): nobody to ask, nothing to say
      await this.stopMappers();
      return;
    }
    if (this.mapper && this.gateway === gw.address) {
      // same router, perhaps a new local address: map again now
      this.mapper.refresh();
      this.upnp?.refresh();
      return;
    }
    await this.stopMappers();
    this.gateway = gw.address;
    this.failures = { pcp: null, upnp: null };
    this.lastSaid = null;
    this.mapper = new PortMapper({ ...this.mapperOptions(gw.address), onLost: (reason) => this.pcpLost(reason) });
    this.mapper.start();
    this.upnpTimer = setTimeout(() => this.startUpnp(), UPNP_HEAD_START_MS).unref();
  }

  private startUpnp(): void {
    if (this.upnpTimer) clearTimeout(this.upnpTimer);
    this.upnpTimer = null;
    if (this.upnp || this.rt.stopped || !this.gateway || (this.current && this.current.protocol !== 'upnp')) return;
    this.upnp = new UpnpMapper({ ...this.mapperOptions(this.gateway), onLost: (reason) => this.upnpLost(reason) });
    this.upnp.start();
  }

  /** What both clients are given; their losses are said here, in one line for the two (sayFailed). */
  private mapperOptions(gateway: string) {
    return { gateway, internalPort: this.rt.listenPort, quietLoss: true, onMapped: (m: PortMapping) => this.mapped(m), log: (line: string) => this.log(line) };
  }

  private mapped(m: PortMapping): void {
    if (m.protocol === 'upnp') {
      this.failures.upnp = null;
    } else {
      this.failures.pcp = null;
      const u = this.upnp;
      this.upnp = null;
      if (this.upnpTimer) clearTimeout(this.upnpTimer);
      this.upnpTimer = null;
      if (u) void u.stop(); // the router also speaks PCP or NAT-PMP: one mapping is enough
    }
    this.lastSaid = null;
    const prev = this.current;
    this.current = m;
    if (prev && prev.externalAddress === m.externalAddress && prev.externalPort === m.externalPort) return; // a renewal
    const addr = addressTo16(m.externalAddress);
    if (!addr) return;
    const howLong = m.lifetime > 0 ? `${m.lifetime} s` : 'permanent';
    this.log(`${m.protocol} on ${m.gateway}: ${m.externalAddress}:${m.externalPort} → port ${m.internalPort}, ${howLong}`);
    this.rt.localEnds.setMapped([{ addr, port: m.externalPort }]);
    this.rt.announce();
  }

  private pcpLost(reason: string): void {
    this.failures.pcp = reason;
    if (this.current && this.current.protocol !== 'upnp') this.withdraw(reason);
    this.startUpnp(); // perhaps the router speaks UPnP
    this.sayFailed();
  }

  private upnpLost(reason: string): void {
    this.failures.upnp = reason;
    if (this.current?.protocol === 'upnp') this.withdraw(reason);
    this.sayFailed();
  }

  /** Both ways failed: one line for the two (and not again while the reasons stay the same). */
  private sayFailed(): void {
    const { pcp, upnp } = this.failures;
    if (this.current || pcp === null || upnp === null) return;
    const line = `none: ${pcp}; UPnP: ${upnp}; trying again in ${Math.round(PORTMAP_RETRY_AFTER_MS / 60_000)} min`;
    if (line !== this.lastSaid) this.log(line);
    this.lastSaid = line;
  }

  private withdraw(reason: string): void {
    this.current = null;
    this.rt.log(`${this.rt.name}: port mapping lost (${reason})`);
    this.rt.localEnds.setMapped([]);
    if (!this.rt.stopped) this.rt.announce();
  }

  private log(line: string): void {
    this.rt.log(`${this.rt.name}: port mapping: ${line}`);
  }

  private async stopMappers(): Promise<void> {
    const mappers = [this.mapper, this.upnp];
    this.mapper = null;
    this.upnp = null;
    if (this.upnpTimer) clearTimeout(this.upnpTimer);
    this.upnpTimer = null;
    this.gateway = null;
    if (this.current) {
      this.current = null;
      this.rt.localEnds.setMapped([]);
    }
    await Promise.all(mappers.map((m) => m?.stop().catch(() => undefined)));
  }

  /** `down`: delete the mapping on the router. */
  async stop(): Promise<void> {
    await this.starting?.catch(() => undefined);
    await this.stopMappers();
  }
}
