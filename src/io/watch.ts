/**
 * The host's own addresses, as they change: the netlink watcher (`ip monitor`), and the reading
 * of the host's interfaces into local ends that is handed to local-ends.ts (which decides what a
 * change means for every peer).
 *
 * May touch: the `ip monitor` child process and its debounce timer (both its own), the host's
 * interface list and /sys/class/net (read only), the local ends and the engine (through
 * LocalEnds.apply), the log, and the runtime's flush-and-re-arm.
 */
import { networkInterfaces } from 'node:os';
import { readFileSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import type { Engine } from '../core/engine.js';
import { usableRemote, type LocalEnd, type LocalEnds } from './local-ends.js';
import { addressTo16 } from './udp-path.js';
import type { Log } from './log.js';

/** A burst of netlink events is answered this long after its last event (ms)… */
const CHANGE_SETTLE = 20;
/** …and never later than this after its first. */
const CHANGE_MAX_DELAY = 100;

/** What the watcher uses of the runtime. */
export interface WatchHost {
  readonly engine: Engine;
  readonly localEnds: LocalEnds;
  readonly name: string;
  readonly listenPort: number;
  readonly stopped: boolean;
  readonly log: Log;
  now(): number;
  /** Send what the engine queued and re-arm the timer. */
  flushAndArm(): void;
  /** The host's addresses or routes changed (after the engine was told): e.g. ask the gateway again. */
  localChanged(): void;
}

export class LocalChangeWatcher {
  private watcher: ChildProcess | null = null;
  private changeTimer: NodeJS.Timeout | null = null;
  private changeFirstAt = 0;

  constructor(private readonly rt: WatchHost) {}

  /**
   * Every address this host can be reached at, for keymesh peers (multihoming): all interfaces'
   * IPv4 and global IPv6 addresses except loopback, link-local, our own tunnel and other tunnels.
   * What a change means for the peers is decided in local-ends.ts.
   */
  announceLocalAddresses(quiet = true): void {
    const rt = this.rt;
    const ends: LocalEnd[] = [];
    for (const [ifname, addrs] of Object.entries(networkInterfaces())) {
      if (ifname === rt.name || isTunnelDevice(ifname)) continue;
      // no sysfs: 0, routing chooses the interface
      const ifindex = Number(readSys(`/sys/class/net/${ifname}/ifindex`)?.trim()) || 0;
      for (const a of addrs ?? []) {
        if (a.internal) continue;
        const bytes = addressTo16(a.address);
        if (!bytes || !usableRemote(bytes)) continue;
        ends.push({ addr: bytes, ifindex, family: a.family === 'IPv4' || (a.family as unknown) === 4 ? 4 : 6 });
      }
    }
    rt.localEnds.apply(rt.engine, ends, rt.listenPort, rt.now(), quiet);
  }

  /**
   * Notice the host's address, link and route changes (netlink, through `ip monitor`) and tell
   * every peer at once, so a host that moves is found again within a round trip rather than at
   * the next keepalive.
   */
  start(): void {
    const rt = this.rt;
    let child: ChildProcess;
    try {
      child = spawn('ip', ['-o', 'monitor', 'address', 'link', 'route'], { stdio: ['ignore', 'pipe', 'ignore'] });
    } catch {
      rt.log(`${rt.name}: cannot watch address changes (ip monitor unavailable)`, { level: 'warn', event: 'watch-failed' });
      return;
    }
    child.on('error', () => rt.log(`${rt.name}: cannot watch address changes (ip monitor unavailable)`, { level: 'warn', event: 'watch-failed' }));
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      // Ignore our own interface's events (its routes change when allowed IPs do).
      const relevant = chunk.split('\n').some((l) => l.trim() !== '' && !l.includes(` ${rt.name} `) && !l.includes(`dev ${rt.name}`));
      if (!relevant) return;
      // Coalesce a burst (an address change is several netlink messages, a move often two
      // commands) into one reaction, CHANGE_SETTLE after the last event (CHANGE_MAX_DELAY after
      // the first at most). Whatever the burst, the reaction reads the interfaces as they are
      // then, so the last event of a change is always followed by a reaction to the final set.
      const now = Date.now();
      if (this.changeTimer) clearTimeout(this.changeTimer);
      else this.changeFirstAt = now;
      const delay = Math.max(0, Math.min(CHANGE_SETTLE, this.changeFirstAt + CHANGE_MAX_DELAY - now));
      this.changeTimer = setTimeout(() => {
        this.changeTimer = null;
        if (rt.stopped) return;
        rt.log(`${rt.name}: local addresses or routes changed; telling peers`, { event: 'local-change' });
        this.announceLocalAddresses(false);
        rt.flushAndArm();
        rt.localChanged();
      }, delay);
    });
    child.unref();
    (child.stdout as unknown as { unref?: () => void })?.unref?.();
    this.watcher = child;
  }

  /** Stop watching (shutdown); a reaction still pending is dropped. */
  stop(): void {
    this.watcher?.kill();
    this.watcher = null;
    if (this.changeTimer) clearTimeout(this.changeTimer);
    this.changeTimer = null;
  }
}

/**
 * Is this interface another overlay tunnel — a TUN/TAP device (another keymesh, wireguard-go,
 * OpenVPN…) or a kernel WireGuard interface? Its addresses are not announced: a path through
 * another tunnel nests one encryption in another, and its smaller MTU does not carry keymesh's
 * full-size datagrams, so failing over onto it would break large packets.
 */
export function isTunnelDevice(ifname: string, read: (path: string) => string | null = readSys): boolean {
  if (read(`/sys/class/net/${ifname}/tun_flags`) !== null) return true;
  return /^DEVTYPE=wireguard$/m.test(read(`/sys/class/net/${ifname}/uevent`) ?? '');
}

function readSys(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}
