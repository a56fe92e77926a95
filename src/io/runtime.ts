/**
 * The runtime: owns the TUN device, the UDP socket and one timer, and drives the sans-I/O engine.
 *
 *   TUN fd ──readable──▶ Pump ──▶ engine.handleTunBatch ──▶ sink.send ──▶ udpSendBatch
 *   UDP fd ──readable──▶ Pump ──▶ engine.handleDatagramBatch ──▶ sink.writeTun ──▶ tunWriteBatch
 *   timer  ──deadline──▶ engine.tick(now)
 *
 * Here: the Runtime's construction (the engine, its sink, the crypto backends), bring-up and stop
 * as wg-quick does them (hooks, addresses, routes, DNS, the UAPI socket, SaveConfig), the fds
 * (opened and closed here, read and written by the pump), the one timer, and the node's attachment
 * to the start-up warm-up (warmup.ts). The rest of the runtime, each piece seeing the Runtime
 * through a small interface of its own (PumpHost, UapiHost, …) that says what it may use:
 *   pump.ts         the batch pump and its queues: the hot path
 *   uapi-bridge.ts  the UAPI's get and set on the engine
 *   reresolve.ts    endpoints given as host names, looked up again
 *   watch.ts        the netlink watcher, feeding local-ends.ts
 *   events.ts       the log of the engine's events
 *   status.ts       what `keymesh show` prints beyond the UAPI
 *   metrics.ts      the same status as Prometheus metrics (MetricsListen)
 *   log.ts          the log's formats (text, JSON) and levels
 *   netconf.ts      ip, DNS and hooks; save-config.ts: SaveConfig
 *   crash-recovery.ts  the claim on the interface name, and what a kill -9 would leave
 *   mesh-dns.ts     the mesh's resolver on the overlay addresses, and the host's hookup (host-dns.ts)
 *   devices.ts      a gateway's stock WireGuard devices (Devices = PATH)
 *
 * May touch: everything of the node. It is the only place that opens or closes an fd, polls one,
 * or arms the timer.
 */
import { CertAuthority } from '../core/mesh-authority.js';
import { reloadConfig } from './config-reload.js';
import { createNodeEd25519Verify } from './ed25519-verify.js';
import { performance } from 'node:perf_hooks';
import { DEFAULT_MTU } from '../core/constants.js';
import { Engine, keyId, type EngineEvent } from '../core/engine.js';
import { formatAddress } from '../core/ip.js';
import type { Peer } from '../core/peer.js';
import { parseIp, resolveEndpoint, type PeerConfig, type WgQuickConfig } from '../config/wgquick.js';
import { UapiServer } from '../uapi/server.js';
import * as native from './native.js';
import { createNodeTransportAead } from './node-aead.js';
import { createNativeCrypto, createNativeTransportAead } from './native-crypto.js';
import { nobleCrypto, type Crypto } from '../core/crypto.js';
import { createNobleTransportAead, type TransportAead } from '../core/transport-aead.js';
import { InterfaceConfigurator, removeDns, runHook, setDns, type RouteSpec } from './netconf.js';
import { addressTo16, PathTable, UdpPath } from './udp-path.js';
import { LocalEnds, udpOf } from './local-ends.js';
import { REGISTRATION_KEEPALIVE } from '../core/lighthouse.js';
import { randomPool } from './random-pool.js';
import { warmUp, type WarmupAttachment, type WarmupNode } from './warmup.js';
import { OFFLOAD, Pump } from './pump.js';
import { EndpointNames } from './reresolve.js';
import { LocalChangeWatcher } from './watch.js';
import { PortMappings } from './port-mapping.js';
import { onEvent, shortKey } from './events.js';
import type { Log } from './log.js';
import { MetricsServer } from './metrics.js';
import type { ShowStatus } from '../cli/show.js';
import { uapiApply, uapiSnapshot } from './uapi-bridge.js';
import { showStatus } from './status.js';
import { saveConfig } from './save-config.js';
import { NodeRecord } from './crash-recovery.js';
import { MeshDns } from './mesh-dns.js';
import { devicesPath, GatewayDevices } from './devices.js';

/** KEYMESH_WARMUP=0 skips the start-up warm-up of the data path (warmup.ts). */
const WARMUP = process.env.KEYMESH_WARMUP !== '0';

export interface RuntimeOptions {
  interfaceName: string;
  config: WgQuickConfig;
  log?: Log;
  uapiDir?: string;
  /** Called when the node cannot go on (its TUN device was deleted from under it). */
  onFatal?: (reason: string) => void;
  /**
   * keymesh-wg, driven by wg-quick as wireguard-go is: the device starts empty and wg-quick owns
   * the host side (MTU, addresses, link state, routes, DNS, hooks), so bring-up only creates the TUN
   * device and serves the UAPI. `config` then holds a throwaway private key for the start-up
   * warm-up alone: it is cleared before the UAPI opens, so `wg setconf` finds a device with no key.
   */
  wgQuickDriven?: boolean;
}

/** How long bring-up waits for the Endpoint names to resolve before it goes on without those that have not (ms). */
const START_RESOLVE_WAIT = 2000;

/** A promise, and its value once it has one (so a caller can tell, after a race, which ones answered). */
function settled<T>(p: Promise<T>): { promise: Promise<T>; value: T | null; done: boolean } {
  const s: { promise: Promise<T>; value: T | null; done: boolean } = { promise: p, value: null, done: false };
  p.then(
    (v) => {
      s.value = v;
      s.done = true;
    },
    () => (s.done = true),
  );
  return s;
}

/** KEYMESH_SPLIT_HANDSHAKES=0: one socket for everything (handshakes not kept apart by the kernel; for comparison). */
const SPLIT_HANDSHAKES = process.env.KEYMESH_SPLIT_HANDSHAKES !== '0';

function closeUdp(udp: native.UdpHandle): void {
  native.closeFd(udp.fd);
  if (udp.hsFd !== undefined && udp.hsFd >= 0) native.closeFd(udp.hsFd);
}

export class Runtime {
  readonly engine: Engine;
  readonly paths = new PathTable();
  /** The data path: holds the TUN and UDP handles while they are open, and the batch queues. */
  readonly pump: Pump;
  private tunPoll = -1;
  private udpPoll = -1;
  private hsPoll = -1;
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;
  private uapi: UapiServer | null = null;
  /** The Prometheus endpoint (MetricsListen), while it listens. */
  private metrics: MetricsServer | null = null;
  private readonly net: InterfaceConfigurator;
  readonly log: Log;
  readonly mtu: number;
  /** True from the start of stop() on (only stop() sets it). */
  stopped = false;
  fwmark = 0;
  startedAt = Date.now();
  private dnsApplied = false;
  /** The configuration the node runs: the file it came up with, then as each reload left it. */
  private config: WgQuickConfig;
  /** The reload under way (reloads run one after the other). */
  private reloading: Promise<unknown> = Promise.resolve();
  /** Our claim on the name, and what a crash would leave for the next `up` to undo (crash-recovery.ts). */
  private record: NodeRecord | null = null;
  /** Peers' endpoints configured by host name, and their re-resolution. */
  readonly names = new EndpointNames(this);
  /** Our local ends (address, interface) — one path per local end of the family, per announced address. */
  readonly localEnds = new LocalEnds(this.paths);
  /** The netlink watcher that tells the local ends (and so every peer) when the host's addresses change. */
  readonly watch = new LocalChangeWatcher(this);
  readonly portMappings = new PortMappings(this);
  /** The resolver of the mesh's names on our overlay addresses (mesh-dns.ts). */
  readonly dns: MeshDns = new MeshDns(this);
  /** A gateway's stock WireGuard devices (`Devices = PATH`; none without it). */
  readonly devices: GatewayDevices;
  /** Who else hears the engine's events (the resolver's name lookups, `keymesh ping`). */
  readonly eventListeners = new Set<(e: EngineEvent) => void>();
  /** Peers (by key) whose events are not logged: the warm-up's partner. */
  readonly quietPeers = new Set<string>();
  /** The addon's counters right after the warm-up (status.ts reports only what came since). */
  readonly nativeBase: { io: object | null; offload: object | null } = { io: null, offload: null };

  private constructor(private readonly opts: RuntimeOptions) {
    this.log = opts.log ?? ((l) => console.log(l));
    this.config = opts.config;
    this.mtu = opts.config.interface.mtu ?? DEFAULT_MTU;
    this.pump = new Pump(this, this.mtu, (e) => {
      onEvent(this, e);
      for (const l of this.eventListeners) l(e);
    });
    this.engine = new Engine(this.pump.sink, {
      privateKey: opts.config.interface.privateKey,
      random: randomPool(),
      mtu: this.mtu,
      ...cryptoBackends(process.env.KEYMESH_CRYPTO),
      makePaths: (addr, port) => this.localEnds.pathsTo(addr, port),
      isLighthouse: opts.config.interface.isLighthouse,
      // KEYMESH_PUNCH_OPENERS=0: punch without NAT openers (to measure what they are for)
      punchOpeners: process.env.KEYMESH_PUNCH_OPENERS !== '0',
      addressOf: (p) => (p instanceof UdpPath ? { addr: p.addr16, port: p.port } : null),
      // KEYMESH_PMTU=0: no path MTU probing between keymesh nodes (to measure what it is for)
      pmtuDiscovery: process.env.KEYMESH_PMTU !== '0',
      mssClamp: opts.config.interface.mssClamp ?? true,
      routeMtu: (p) => (p instanceof UdpPath ? native.routeMtu(p.addr16, p.local16, p.ifindex) || null : null),
      wallClockOffset: Date.now() - performance.now(),
      // mesh membership (membership.ts): peers admitted by certificates of this CA
      meshIdleForget: opts.config.interface.forgetAfter !== undefined ? opts.config.interface.forgetAfter * 1000 : undefined,
      devicesMayLeave: opts.config.interface.devicesMayLeave,
      mesh: opts.config.interface.mesh ? new CertAuthority(opts.config.interface.mesh.ca, opts.config.interface.mesh.cert, opts.config.interface.mesh.crl ?? null, ed25519Verify()) : undefined,
    });
    // driven by wg-quick: it adds the routes (and its fwmark rules for a default route), not us
    this.net = new InterfaceConfigurator(opts.interfaceName, opts.wgQuickDriven ? 'off' : (opts.config.interface.table ?? 'auto'));
    this.devices = new GatewayDevices(this, devicesPath(opts.config));
  }

  get name(): string {
    return this.opts.interfaceName;
  }

  get listenPort(): number {
    return this.pump.udp?.port ?? 0;
  }

  now(): number {
    return performance.now();
  }

  /**
   * Bring the interface up as wg-quick does; on any failure, undo what was done and rethrow.
   * First the name is claimed: a live node holding it makes this throw before anything is
   * touched (no hook runs, no DNS changes); what a dead one left is undone.
   */
  static async start(opts: RuntimeOptions): Promise<Runtime> {
    const rt = new Runtime(opts);
    rt.record = await NodeRecord.claim(opts.interfaceName, { log: rt.log, postDown: opts.config.interface.postDown, uapiDir: opts.uapiDir });
    try {
      await rt.bringUp();
    } catch (e) {
      await rt.stop().catch(() => undefined);
      throw e;
    }
    return rt;
  }

  // ───────────────────────────── the start-up warm-up ─────────────────────────────

  /**
   * Before the interface comes up: run this very Runtime (its functions, its engine, its sink and
   * queues — what V8's type feedback is about) through warmup.ts against a private partner, then
   * take the warm-up's peer, sockets and counters away again.
   */
  private warmUp(offload: native.TunOffload | null): void {
    const publicKey = this.engine.publicKey;
    if (!publicKey) return;
    const w = warmUp(
      { publicKey, attach: (tunFd, offload, udp, peers) => this.attachForWarmUp(tunFd, offload, udp, peers) },
      Runtime.warmupNode,
      offload,
      this.mtu,
    );
    if (w.error) this.log(`${this.name}: data path warm-up skipped: ${w.error}`, { level: 'warn', event: 'warmup' });
    else this.log(`${this.name}: data path warmed up (${w.packets} packets in ${w.ms.toFixed(0)} ms)`, { event: 'warmup', fields: { packets: w.packets, ms: Math.round(w.ms) } });
    // The addon's counters are per process: report only what real traffic adds to them.
    this.nativeBase.io = native.counters();
    this.nativeBase.offload = native.offloadCounters();
  }

  /**
   * A throwaway Runtime that can stand on the warm-up's wire (the warm-up's partner; tests use it
   * as the node too). Nothing is opened until the warm-up attaches it, and it logs nothing.
   */
  static warmupNode(config: WgQuickConfig): WarmupNode & { stats: () => ReturnType<Engine['stats']>; peers: () => number } {
    const rt = new Runtime({ interfaceName: 'warmup', config, log: () => undefined });
    return {
      publicKey: rt.engine.publicKey!,
      attach: (tunFd, offload, udp, peers) => rt.attachForWarmUp(tunFd, offload, udp, peers),
      stats: () => rt.engine.stats(rt.now()),
      peers: () => rt.engine.listPeers().length,
    };
  }

  /**
   * Stand on the warm-up's wire: one end of a packet socket pair for the TUN device, a UDP socket
   * on 127.0.0.1, the same batch functions a real device would get, and `peers` (literal
   * endpoints). No routes, addresses, UAPI or polls: the warm-up calls the readiness handlers.
   */
  private attachForWarmUp(tunFd: number, offload: native.TunOffload | null, udp: native.UdpHandle, peers: PeerConfig[]): WarmupAttachment {
    this.pump.useTun({ fd: tunFd, name: this.name, offload });
    this.pump.useUdp(udp);
    // V8 compiles a field that has kept its first value as a constant, and the first write to it
    // afterwards throws that code away. Bring-up writes these once, after the warm-up; write them
    // here first (and put the values back).
    // (The netlink watcher's child process, written at bring-up too, is a field of watch.ts's
    // LocalChangeWatcher, an object the data path never reads: its first write throws nothing away.)
    const keep = { tunPoll: this.tunPoll, udpPoll: this.udpPoll, uapi: this.uapi };
    this.tunPoll = this.udpPoll = -2;
    this.uapi = undefined as unknown as null;
    this.localEnds.reset();
    Object.assign(this, keep);
    const now = this.now();
    for (const p of peers) {
      this.quietPeers.add(keyId(p.publicKey));
      this.addConfiguredPeer(p, p.endpoint ? this.paths.fromLiteral(p.endpoint.host, p.endpoint.port) : null, now);
    }
    // Announce our address, as a real node does, so the partner runs the multipath code too.
    this.engine.setLocalAddresses([{ addr: addressTo16('127.0.0.1')!, port: udp.port }], now);
    return {
      tunReadable: () => this.pump.onTunReadable(),
      udpReadable: () => this.pump.onUdpReadable(),
      timer: () => this.onTimer(),
      detach: () => {
        if (this.timer) clearTimeout(this.timer);
        this.timer = null;
        this.timerAt = Infinity;
        for (const p of peers) this.engine.removePeer(p.publicKey);
        this.quietPeers.clear();
        this.engine.setLocalAddresses([], this.now());
        this.engine.resetCounters();
        this.pump.counters.udpSendShort = this.pump.counters.tunWriteShort = 0;
        this.pump.release();
      },
    };
  }

  // ───────────────────────────── bring-up and stop ─────────────────────────────

  /** A [Peer] section as the engine takes it, with its Endpoint already resolved to a path. */
  private addConfiguredPeer(p: PeerConfig, endpoint: UdpPath | null, now: number): Peer {
    return this.engine.upsertPeer(
      {
        publicKey: p.publicKey,
        presharedKey: p.presharedKey ?? null,
        endpoint,
        allowedIps: p.allowedIps.map((a) => ({ addr: a.addr, cidr: a.cidr })),
        lighthouse: p.lighthouse,
        name: p.name ?? null,
      },
      now,
    );
  }

  private async bringUp(): Promise<void> {
    const cfg = this.config;
    const name = this.opts.interfaceName;
    for (const h of cfg.interface.preUp) await runHook(h, name);
    const tun = this.pump.useTun(native.tunOpen(name, { offload: OFFLOAD }));
    const udp = this.pump.useUdp(native.udpOpen(cfg.interface.listenPort ?? 0, false, SPLIT_HANDSHAKES));
    this.fwmark = cfg.interface.fwmark ?? 0;
    if (this.fwmark) this.setSocketMarks(udp, this.fwmark);
    if (WARMUP) {
      // The device and socket exist (so their handles have the shapes the warm-up must see) but
      // nothing polls them yet and the interface is down: warm up, then take them back.
      this.warmUp(tun.offload);
      this.pump.useTun(tun);
      this.pump.useUdp(udp);
    }
    // Every Endpoint's name is looked up at once, and bring-up waits for the answers a little
    // while only: a name that has not answered by then (no network yet, a resolver that drops
    // queries) or that fails leaves its peer without an endpoint for now, and reresolve.ts keeps
    // trying. The node comes up either way.
    const lookups = cfg.peers.map((p) => (p.endpoint ? settled(resolveEndpoint(p.endpoint)) : null));
    let waited: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(lookups.map((l) => l?.promise.catch(() => undefined))),
      new Promise((r) => (waited = setTimeout(r, START_RESOLVE_WAIT))),
    ]);
    clearTimeout(waited);
    const now = this.now();
    cfg.peers.forEach((p, i) => {
      const l = lookups[i];
      const endpoint = l?.value ? this.paths.fromLiteral(l.value.address, l.value.port) : null;
      const peer = this.addConfiguredPeer(p, endpoint, now);
      if (l && !l.done) {
        // (a failed lookup is told by reresolve.ts; one still running would say nothing for as long as the resolver's timeout)
        this.log(`${name}: peer ${shortKey(p.publicKey)} endpoint host "${p.endpoint!.host}": no answer within ${START_RESOLVE_WAIT / 1000} s; up without it, the lookup goes on`, {
          level: 'warn',
          event: 'resolve-slow',
          fields: { peer: shortKey(p.publicKey), host: p.endpoint!.host },
        });
      }
      if (p.endpoint) this.names.remember(peer, p.endpoint, l?.value ? undefined : l!.promise);
    });
    if (this.opts.wgQuickDriven) this.engine.setPrivateKey(null); // the warm-up's key; `wg setconf` gives the real one
    else {
      await this.devices.start(); // the devices file's peers (devices.ts), before their routes
      // MTU, addresses, up and the routes: one `ip -batch` (netconf.ts)
      await this.syncRoutes(this.net.setupLines(this.mtu, cfg.interface.addresses.map((a) => ({ cidr: `${a.addr}/${a.cidr}` }))));
      await this.dns.start(cfg); // after the addresses: the resolver binds to them
      await this.applyDns();
    }
    this.tunPoll = native.pollStart(tun.fd, (err) => {
      if (err) {
        // The interface was deleted (e.g. `ip link del`): the fd is dead and the poll has stopped.
        this.tunPoll = -1;
        const why = `the TUN device ${name} was removed`;
        this.log(`${name}: ${why}`, { level: 'error', event: 'tun-removed' });
        this.opts.onFatal?.(why);
        return;
      }
      this.pump.onTunReadable();
    });
    this.udpPoll = native.pollStart(udp.fd, (err) => this.onUdpPoll(err));
    this.hsPoll = udp.hsFd! >= 0 ? native.pollStart(udp.hsFd!, (err) => this.onHandshakePoll(err)) : -1;
    this.uapi = await UapiServer.listen(name, { snapshot: () => uapiSnapshot(this), apply: (c) => uapiApply(this, c) }, this.opts.uapiDir);
    await this.startMetrics();
    // Persistent keepalives start at once (wireguard-go does the same when the device comes up).
    // Members register with their lighthouses at once and keep the session (and their NAT mapping) alive.
    for (const p of cfg.peers) {
      const keepalive = p.persistentKeepalive ?? (p.lighthouse ? REGISTRATION_KEEPALIVE : 0);
      if (keepalive) {
        const peer = this.engine.getPeer(p.publicKey);
        if (peer) this.engine.setPersistentKeepalive(peer, keepalive, this.now());
      }
    }
    this.watch.announceLocalAddresses();
    this.flushAndArm();
    this.watch.start();
    if (cfg.interface.portMapping) this.portMappings.start();
    for (const h of cfg.interface.postUp) await runHook(h, name);
    this.log(`${name}: up, listening on UDP port ${udp.port}, ${cfg.peers.length} peer(s), MTU ${this.mtu}`, {
      event: 'up',
      fields: { listenPort: udp.port, peers: cfg.peers.length, mtu: this.mtu },
    });
  }

  /** Tear everything down; safe to call more than once. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const cfg = this.config;
    const name = this.opts.interfaceName;
    for (const h of cfg.interface.preDown) await runHook(h, name).catch((e) => this.log(String(e.message ?? e), { level: 'warn', event: 'hook-failed' }));
    if (cfg.interface.saveConfig && this.pump.tun) await saveConfig(this, cfg).catch((e) => this.log(`${name}: SaveConfig failed: ${e.message}`, { level: 'error', event: 'save-config-failed' }));
    await this.dns.stop().catch((e) => this.log(`${name}: DNS: ${(e as Error).message}`, { level: 'warn', event: 'dns-failed' }));
    if (this.dnsApplied) await removeDns(name).catch(() => undefined);
    if (this.timer) clearTimeout(this.timer);
    this.watch.stop();
    await this.portMappings.stop();
    this.names.clear();
    if (this.tunPoll >= 0) native.pollStop(this.tunPoll);
    if (this.udpPoll >= 0) native.pollStop(this.udpPoll);
    if (this.hsPoll >= 0) native.pollStop(this.hsPoll);
    this.tunPoll = this.udpPoll = this.hsPoll = -1;
    await this.uapi?.close().catch(() => undefined);
    await this.metrics?.close().catch(() => undefined);
    this.metrics = null;
    await this.net.teardown();
    const { tun, udp } = this.pump;
    if (udp) closeUdp(udp);
    if (tun) native.closeFd(tun.fd); // closing a non-persistent TUN removes the interface
    this.pump.release();
    this.engine.removeAllPeers();
    await this.record?.update({ postDown: false });
    for (const h of cfg.interface.postDown) await runHook(h, name).catch((e) => this.log(String(e.message ?? e), { level: 'warn', event: 'hook-failed' }));
    await this.record?.release();
  }

  // ───────────────────────────── timer ─────────────────────────────

  /** After a change made outside the data path: send what the engine queued and re-arm the timer. */
  /** Our addresses or routes changed: a port mapping may need asking for again (another gateway). */
  localChanged(): void {
    if (this.stopped) return;
    if (this.config.interface.portMapping) this.portMappings.start();
    this.names.retryUnresolved();
  }

  /** A peer whose name had not resolved got its endpoint: pin its route, as bring-up does. */
  endpointsChanged(): void {
    if (this.stopped) return;
    this.syncRoutes().catch((e) => this.log(`${this.name}: routes not updated: ${(e as Error).message}`, { level: 'warn', event: 'routes-failed' }));
  }

  /** Announce our addresses (local ends and port mappings) again, now. */
  announce(): void {
    if (this.stopped) return;
    this.watch.announceLocalAddresses(true);
    this.flushAndArm();
  }

  flushAndArm(): void {
    this.pump.flush();
    this.armTimer();
  }

  /** Keep exactly one timer armed for the engine's next deadline. */
  armTimer(): void {
    if (this.stopped) return;
    const at = this.engine.nextDeadline();
    // A deadline that moved later (traffic pushes keepalive and liveness checks out) keeps the
    // armed timer: it fires early, ticks nothing, and re-arms. Re-arming on every packet would
    // cost a clearTimeout/setTimeout pair per batch, on the latency path.
    if (at === this.timerAt || (this.timer && at > this.timerAt)) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = at;
    if (at === Infinity) return;
    const delay = Math.max(0, Math.ceil(at - this.now()));
    this.timer = setTimeout(() => this.onTimer(), delay);
    this.timer.unref?.();
  }

  private onTimer(): void {
    this.timer = null;
    this.timerAt = Infinity;
    this.engine.tick(this.now());
    this.pump.flush();
    this.armTimer();
  }

  // ───────────────────────────── the UDP socket, routes and DNS ─────────────────────────────

  /** SO_MARK on the socket (and its handshake twin, though nothing is sent from that one). */
  private setSocketMarks(udp: native.UdpHandle, mark: number): void {
    native.udpSetMark(udp.fd, mark);
    if (udp.hsFd !== undefined && udp.hsFd >= 0) native.udpSetMark(udp.hsFd, mark);
  }

  /** The handshake socket is readable, or (SOERROR) holds ICMP reports (see Pump.onUdpErrors). */
  private onHandshakePoll(err?: string): void {
    if (err === 'SOERROR') this.pump.onUdpErrors();
    this.pump.onHandshakeReadable();
  }

  /** The UDP socket is readable, or (SOERROR) has ICMP reports queued on its error queue. */
  private onUdpPoll(err?: string): void {
    if (err === 'SOERROR') this.pump.onUdpErrors();
    this.pump.onUdpReadable();
  }

  /** Listen on another UDP port (for the UAPI's listen_port): the new socket first, so a failure changes nothing. */
  rebind(port: number): void {
    this.useUdpSocket(this.openUdp(port)); // throws EADDRINUSE with a clear message; nothing changed then
  }

  /** A UDP socket on `port` (0: any), marked with our fwmark, not yet polled or used. Throws when it cannot. */
  openUdp(port: number): native.UdpHandle {
    const next = native.udpOpen(port, false, SPLIT_HANDSHAKES);
    if (this.fwmark) this.setSocketMarks(next, this.fwmark);
    return next;
  }

  /** Close a socket from openUdp() that was not put in use. */
  discardUdp(udp: native.UdpHandle): void {
    closeUdp(udp);
  }

  /** Use `next` (from openUdp()) in place of the socket in use, which is closed. */
  useUdpSocket(next: native.UdpHandle): void {
    if (this.udpPoll >= 0) native.pollStop(this.udpPoll);
    if (this.hsPoll >= 0) native.pollStop(this.hsPoll);
    if (this.pump.udp) closeUdp(this.pump.udp);
    this.pump.useUdp(next);
    this.udpPoll = native.pollStart(next.fd, (err) => this.onUdpPoll(err));
    this.hsPoll = next.hsFd! >= 0 ? native.pollStart(next.hsFd!, (err) => this.onHandshakePoll(err)) : -1;
    this.log(`${this.name}: now listening on UDP port ${next.port}`, { event: 'listen-port', fields: { listenPort: next.port } });
  }

  /** An interface address (a reload's new Address). */
  addAddress(a: { addr: string; cidr: number; family: 4 | 6 }): Promise<void> {
    return this.net.addAddress(`${a.addr}/${a.cidr}`, a.family);
  }

  /** Take an interface address away (a reload's Address no longer in the file). */
  removeAddress(a: { addr: string; cidr: number; family: 4 | 6 }): Promise<void> {
    return this.net.removeAddress(`${a.addr}/${a.cidr}`, a.family);
  }

  /** DNS = … after a reload: given to resolvconf again, or taken back when the file has none. */
  async setDns(dns: string[], search: string[]): Promise<void> {
    if (dns.length === 0 && search.length === 0) {
      if (this.dnsApplied) await removeDns(this.name);
      this.dnsApplied = false;
      return;
    }
    await this.record?.update({ dns: true });
    await setDns(this.name, dns, search);
    this.dnsApplied = true;
  }

  /** PortMapping = on|off after a reload. */
  async setPortMapping(on: boolean): Promise<void> {
    if (on) this.portMappings.start();
    else await this.portMappings.stop();
  }

  /** Mark the UDP socket's packets (SO_MARK) with `mark`, if it is new and the socket is open. */
  setFwmark(mark: number): void {
    if (mark === this.fwmark || !this.pump.udp) return;
    this.setSocketMarks(this.pump.udp, mark);
    this.fwmark = mark;
  }

  /** Make the kernel's routes match the peers' allowed IPs (and pin their endpoints' routes), after `setup` (bring-up). */
  async syncRoutes(setup: string[] = []): Promise<void> {
    const routes: RouteSpec[] = [];
    for (const p of this.engine.listPeers()) {
      // peers admitted by certificate come and go: the mesh's networks cover them (below)
      if (p.membership !== 'static') continue;
      for (const a of this.engine.allowedIpsOf(p)) routes.push({ cidr: `${formatAddress(a.addr)}/${a.cidr}`, family: a.family });
    }
    // the mesh's networks go to the interface, unless an address's own prefix route already does
    const own = this.config.interface.addresses.map((a) => `${networkOf(a.addr, a.cidr)}/${a.cidr}`);
    for (const n of this.engine.meshAuthority?.networks ?? []) {
      const cidr = `${formatAddress(n.addr)}/${n.bits}`;
      if (!own.includes(cidr)) routes.push({ cidr, family: n.addr.length === 4 ? 4 : 6 });
    }
    await this.net.syncRoutes(routes, setup);
    const pinned = this.net.pinnedCount;
    for (const p of this.engine.listPeers()) {
      const ep = udpOf(p.endpoint.path);
      if (ep) await this.net.pinEndpoint(ep.address, ep.family);
    }
    // routes through the underlay outlive the process: a crash leaves them to the next `up`
    if (this.net.pinnedCount !== pinned) await this.record?.update({ pinned: this.net.pinnedRoutes() });
  }

  /** DNS = … as wg-quick applies it (netconf.ts); without resolvconf, say so and go on without. */
  private async applyDns(): Promise<void> {
    const i = this.config.interface;
    if (i.dns.length === 0 && i.dnsSearch.length === 0) return;
    if (this.dns.ownsHostDns) return; // MeshDNS = direct wrote resolv.conf itself, DNS = included (mesh-dns.ts)
    try {
      await this.record?.update({ dns: true }); // before: a crash during setDns may leave the record
      await setDns(this.name, i.dns, i.dnsSearch);
      this.dnsApplied = true;
    } catch (e) {
      this.log(`${this.name}: DNS not applied (${(e as Error).message}); install resolvconf or openresolv to use DNS =`, { level: 'warn', event: 'dns-failed' });
    }
  }

  /** mesh-dns.ts: where resolv.conf's backup is, for the next `up` after a crash (null: restored). */
  async recordResolvConf(r: { file: string; backup: string } | null): Promise<void> {
    await this.record?.update({ resolvConf: r });
  }

  /**
   * `keymesh reload` / SIGHUP: apply the re-read file's differences (config-reload.ts). Throws,
   * having changed nothing, when it cannot; one reload at a time (a second waits for the first).
   */
  reload(fresh: WgQuickConfig): Promise<{ done: string[]; restarted: boolean }> {
    const run = this.reloading.then(async () => {
      if (this.stopped) throw new Error('the node is stopping');
      const r = await reloadConfig(this, this.config, fresh);
      this.config = r.config;
      for (const line of r.done) this.log(`${this.name}: reload: ${line}`);
      return { done: r.done, restarted: r.restarted };
    });
    this.reloading = run.catch(() => undefined);
    return run;
  }

  /**
   * MetricsListen: serve the status as Prometheus metrics (metrics.ts). An address that cannot be
   * bound (in use, not ours) is an error in the log, not a reason to keep the tunnel down.
   */
  private async startMetrics(): Promise<void> {
    const m = this.opts.config.interface.metricsListen;
    if (!m) return;
    try {
      this.metrics = await MetricsServer.listen(m.host, m.port, () => this.status() as ShowStatus);
      this.log(`${this.name}: metrics at http://${this.metrics.address}/metrics`, { event: 'metrics-listening', fields: { address: this.metrics.address } });
    } catch (e) {
      this.log(`${this.name}: metrics not served: ${(e as Error).message}`, { level: 'error', event: 'metrics-failed' });
    }
  }

  /** Everything `keymesh show` prints, beyond what the UAPI carries (status.ts). */
  status(): object {
    return showStatus(this);
  }
}

/**
 * The crypto backends: native (OpenSSL through the addon: batched transport AEAD, X25519, BLAKE2s)
 * by default; KEYMESH_CRYPTO=node uses node:crypto for transport data, KEYMESH_CRYPTO=noble the
 * pure-TS reference for everything (slow; for comparisons and byte-identity tests).
 */
function cryptoBackends(choice: string | undefined): { aead: TransportAead; crypto?: Crypto } {
  if (choice === 'noble') return { aead: createNobleTransportAead(), crypto: nobleCrypto };
  if (choice === 'node') return { aead: createNodeTransportAead() };
  const aead = createNativeTransportAead();
  const crypto = createNativeCrypto();
  return { aead: aead ?? createNodeTransportAead(), ...(crypto ? { crypto } : {}) };
}

/** The network address of addr/cidr, as text (an interface address's prefix route). */
function networkOf(addr: string, cidr: number): string {
  const ip = parseIp(addr);
  if (!ip) return addr;
  const b = ip.bytes.slice();
  for (let bit = cidr; bit < b.length * 8; bit++) b[bit >> 3] &= ~(0x80 >> (bit & 7));
  return formatAddress(b);
}

/** OpenSSL's Ed25519 check for certificates (noble's if node:crypto lacks it). */
function ed25519Verify() {
  try {
    return createNodeEd25519Verify();
  } catch {
    return undefined;
  }
}
