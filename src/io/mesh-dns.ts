/**
 * The mesh's resolver on this node, put together: the zone (dns/zone.ts) and resolver
 * (dns/resolver.ts) over the engine, the sockets on the overlay addresses (dns-server.ts), the
 * lighthouses' name answers fed in from the engine's events, forwarding (dns/upstream.ts) and the
 * host's hookup (host-dns.ts) as `MeshDNS =` says.
 *
 * It starts after the interface has its addresses (nothing else can be bound) and stops first on
 * down, so the host's resolver configuration is back before the interface goes.
 *
 * A gateway (`Devices =`) forwards too, to the host's own nameservers: its devices know no other
 * resolver.
 *
 * wg-quick's `DNS =` keeps its meaning (netconf.ts: resolvconf) with MeshDNS = auto or off. With
 * MeshDNS = direct keymesh writes resolv.conf itself, so `DNS =` servers become the forwarders for
 * names outside the mesh (ahead of the file's previous ones) and its search domains follow the
 * mesh's domain; resolvconf is not called then.
 *
 * May touch: the resolver's sockets, the host's resolver configuration, the crash record's
 * resolvConf field, and the runtime's event listeners.
 */
import type { Engine, EngineEvent } from '../core/engine.js';
import type { WgQuickConfig } from '../config/wgquick.js';
import { Resolver, type ResolverCounters } from '../dns/resolver.js';
import { Upstream } from '../dns/upstream.js';
import { Zone } from '../dns/zone.js';
import { DnsServer, type DnsClient } from './dns-server.js';
import { readFile } from 'node:fs/promises';
import { DEFAULT_PATHS, directUp, nameserversOf, resolvedDown, resolvedPresent, resolvedUp, restoreResolvConf, type HostDnsPaths, type MeshDnsMode, type ResolvConfRecord } from './host-dns.js';

export interface MeshDnsHost {
  readonly engine: Engine;
  readonly name: string;
  readonly eventListeners: Set<(e: EngineEvent) => void>;
  log(line: string): void;
  now(): number;
  flushAndArm(): void;
  /** The crash record (crash-recovery.ts), to say where resolv.conf's backup is. */
  recordResolvConf(r: ResolvConfRecord | null): Promise<void>;
}

export interface MeshDnsStatus extends ResolverCounters {
  mode: MeshDnsMode;
  listening: string[];
  /** How the host uses it: 'resolved' (split DNS), 'direct' (resolv.conf), or 'none'. */
  host: 'resolved' | 'direct' | 'none';
  upstreams: string[];
}

export class MeshDns {
  private server: DnsServer | null = null;
  private listener: ((e: EngineEvent) => void) | null = null;
  private host: 'resolved' | 'direct' | 'none' = 'none';
  private resolvConf: ResolvConfRecord | null = null;
  private upstreams: string[] = [];
  mode: MeshDnsMode = 'auto';

  constructor(
    private readonly rt: MeshDnsHost,
    private readonly o: { port?: number; paths?: HostDnsPaths; resolvedSocket?: string } = {},
  ) {}

  /** MeshDNS = direct is in force: resolv.conf is ours, `DNS =` included (resolvconf must not be called). */
  get ownsHostDns(): boolean {
    return this.host === 'direct';
  }

  async start(cfg: WgQuickConfig): Promise<void> {
    this.mode = cfg.interface.meshDns ?? 'auto';
    const e = this.rt.engine;
    const named = cfg.peers.some((p) => p.name);
    if (this.mode === 'off') return;
    if (!e.meshAuthority && !named) {
      if (this.mode === 'direct') this.rt.log(`${this.rt.name}: DNS: MeshDNS = direct, but there are no names to serve (no mesh certificate, no Name =): host DNS left alone`);
      return;
    }
    const addresses = cfg.interface.addresses.map((a) => a.addr);
    if (addresses.length === 0) {
      this.rt.log(`${this.rt.name}: DNS: no overlay address to answer on (Address =)`);
      return;
    }
    const zone = new Zone(e);
    const direct = this.mode === 'direct';
    // A gateway's devices (phones) are given its resolver as their only one (`DNS =` in the config
    // `keymesh device add` prints): it forwards the rest to the host's nameservers for them.
    const gateway = !direct && cfg.interface.devices !== undefined;
    const resolver = new Resolver<DnsClient>(zone, {
      forwarding: direct || gateway,
      ask: (name, now) => {
        const asked = e.lookupName(name, now);
        this.rt.flushAndArm();
        return asked;
      },
    });
    const upstream = direct || gateway ? new Upstream([]) : null;
    this.server = await DnsServer.start({ addresses, port: this.o.port, resolver, upstream, now: () => this.rt.now(), log: (l) => this.rt.log(`${this.rt.name}: ${l}`) });
    this.listener = (ev) => {
      if (ev.type === 'name-answer') this.server?.onNameAnswer(ev.name, ev.found, ev.addresses);
    };
    this.rt.eventListeners.add(this.listener);
    const listening = this.server.listening;
    if (listening.length === 0) return;
    const domain = zone.domain;
    const name = this.rt.name;
    if (gateway) {
      const hostConf = await readFile((this.o.paths ?? DEFAULT_PATHS).resolvConf, 'utf8').catch(() => '');
      this.upstreams = nameserversOf(hostConf, listening);
      upstream!.servers.push(...this.upstreams);
      this.rt.log(`${name}: DNS: a gateway: names outside *.${domain} asked by its devices (or anyone on the mesh) are forwarded to ${this.upstreams.join(', ') || 'nobody (the host names no nameserver)'}`);
    }
    if (direct) {
      const { upstreams, record } = await directUp(name, {
        servers: listening,
        domain,
        search: cfg.interface.dnsSearch,
        paths: this.o.paths ?? DEFAULT_PATHS,
        beforeWrite: (r) => this.rt.recordResolvConf(r),
      });
      this.resolvConf = record;
      this.host = 'direct';
      // DNS = servers first: they are what the configuration asks for while the tunnel is up
      this.upstreams = [...cfg.interface.dns, ...upstreams.filter((u) => !cfg.interface.dns.includes(u))];
      upstream!.servers.push(...this.upstreams);
      this.rt.log(`${name}: DNS: this node is the host's resolver (${record.file}): *.${domain} answered here, the rest forwarded to ${this.upstreams.join(', ') || 'nobody (no nameserver was configured)'}`);
    } else if (resolvedPresent({ socket: this.o.resolvedSocket })) {
      try {
        await resolvedUp(name, listening, domain, undefined, zone.reverseZones());
        this.host = 'resolved';
        this.rt.log(`${name}: DNS: systemd-resolved sends *.${domain} to ${listening.join(', ')}`);
      } catch (err) {
        this.rt.log(`${name}: DNS: resolvectl failed (${(err as Error).message}); resolver on ${listening.join(', ')} only`);
      }
    } else {
      this.rt.log(
        `${name}: DNS: names *.${domain} are answered on ${listening.join(', ')} port 53; the host's DNS is left alone ` +
          `(no systemd-resolved). Use them with MeshDNS = direct, or: dig @${listening[0]} NAME.${domain}`,
      );
    }
  }

  async stop(): Promise<void> {
    if (this.listener) this.rt.eventListeners.delete(this.listener);
    this.listener = null;
    if (this.host === 'direct' && this.resolvConf) {
      const r = this.resolvConf;
      this.rt.log(`${this.rt.name}: DNS: ${await restoreResolvConf(this.rt.name, r).catch((e) => `${r.file} not restored: ${(e as Error).message}`)}`);
      await this.rt.recordResolvConf(null);
    } else if (this.host === 'resolved') await resolvedDown(this.rt.name).catch(() => undefined);
    this.host = 'none';
    this.resolvConf = null;
    await this.server?.stop();
    this.server = null;
  }

  /** For `keymesh show` (null: no resolver runs). */
  status(): MeshDnsStatus | null {
    if (!this.server) return null;
    return { mode: this.mode, listening: this.server.listening, host: this.host, upstreams: this.upstreams, ...this.server.resolver.counters };
  }
}
