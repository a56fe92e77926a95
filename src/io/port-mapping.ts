/**
 * Port mapping as the runtime uses it (`PortMapping = on`, the default): find the default
 * gateway, ask it to map our listen port (portmap/client.ts: PCP, else NAT-PMP), and announce the
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
import { PortMapper, type PortMapping } from './portmap/client.js';
import { addressTo16 } from './udp-path.js';
import type { LocalEnds } from './local-ends.js';

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
  private gateway: string | null = null;
  private current: PortMapping | null = null;
  private starting: Promise<void> | null = null;

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
      await this.stopMapper();
      return;
    }
    if (this.mapper && this.gateway === gw.address) {
      this.mapper.refresh(); // same router, perhaps a new local address: map again now
      return;
    }
    await this.stopMapper();
    this.gateway = gw.address;
    this.mapper = new PortMapper({
      gateway: gw.address,
      internalPort: this.rt.listenPort,
      onMapped: (m) => this.mapped(m),
      onLost: (reason) => this.lost(reason),
      log: (line) => this.rt.log(`${this.rt.name}: port mapping: ${line}`),
    });
    this.mapper.start();
  }

  private mapped(m: PortMapping): void {
    const prev = this.current;
    this.current = m;
    if (prev && prev.externalAddress === m.externalAddress && prev.externalPort === m.externalPort) return; // a renewal
    const addr = addressTo16(m.externalAddress);
    if (!addr) return;
    this.rt.log(`${this.rt.name}: port mapping: ${m.protocol} on ${m.gateway}: ${m.externalAddress}:${m.externalPort} → port ${m.internalPort}, ${m.lifetime} s`);
    this.rt.localEnds.setMapped([{ addr, port: m.externalPort }]);
    this.rt.announce();
  }

  private lost(reason: string): void {
    if (!this.current) return;
    this.current = null;
    this.rt.log(`${this.rt.name}: port mapping lost (${reason})`);
    this.rt.localEnds.setMapped([]);
    if (!this.rt.stopped) this.rt.announce();
  }

  private async stopMapper(): Promise<void> {
    const m = this.mapper;
    this.mapper = null;
    this.gateway = null;
    if (this.current) {
      this.current = null;
      this.rt.localEnds.setMapped([]);
    }
    if (m) await m.stop().catch(() => undefined);
  }

  /** `down`: delete the mapping on the router. */
  async stop(): Promise<void> {
    await this.starting?.catch(() => undefined);
    await this.stopMapper();
  }
}
