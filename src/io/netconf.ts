/**
 * Host network configuration for an interface, through iproute2 (`ip`), as wg-quick does it:
 * MTU, addresses, link up, and one route per allowed IP. Routes are tracked so they can be
 * synchronised when allowed IPs change at run time and removed on shutdown.
 *
 * Default routes (/0) get wg-quick's treatment in spirit: instead of replacing the host's
 * default route (which would swallow the tunnel's own UDP traffic), keymesh installs the two
 * half-routes 0.0.0.0/1 + 128.0.0.0/1 (::/1 + 8000::/1) plus a host route for each peer
 * endpoint through the pre-existing default gateway.
 *
 * Also the rest of what wg-quick does to the host: DNS = through resolvconf, and the hook commands.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export async function ip(args: string[]): Promise<string> {
  try {
    const { stdout } = await run('ip', args, { encoding: 'utf8' });
    return stdout;
  } catch (e) {
    const err = e as { stderr?: string; message: string; code?: string };
    if (err.code === 'ENOENT') throw new Error('the `ip` command (iproute2) is not installed');
    throw new Error(`ip ${args.join(' ')}: ${(err.stderr ?? err.message).trim()}`);
  }
}

/**
 * Run many `ip` commands in one process (`ip -batch -`, one command per line on stdin): a
 * configuration with thousands of allowed IPs would otherwise spawn thousands of processes.
 * Without `force`, ip stops at the first failing line; the error then says which line (1-based)
 * in `failedLine`.
 */
export function ipBatch(lines: string[], force = false): Promise<void> {
  if (lines.length === 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const child = execFile('ip', [...(force ? ['-force'] : []), '-batch', '-'], { encoding: 'utf8' }, (e, _out, stderr) => {
      if (!e) return resolve();
      if ((e as { code?: string }).code === 'ENOENT') return reject(new Error('the `ip` command (iproute2) is not installed'));
      const m = /Command failed -:(\d+)/.exec(stderr);
      const line = m ? Number(m[1]) : 0;
      const what = line > 0 ? `ip ${lines[line - 1]}` : 'ip -batch';
      const msg = stderr.split('\n').filter((l) => l && !l.startsWith('Command failed')).join('; ');
      reject(Object.assign(new Error(`${what}: ${msg || e.message}`), { failedLine: line }));
    });
    // if ip dies first (killed with our process group, say), writing to it fails with EPIPE: the
    // exit callback above reports that; the stream error must not be left unhandled
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(lines.join('\n') + '\n');
  });
}

export interface RouteSpec {
  /** "10.0.0.0/24" or "fd00::/64" */
  cidr: string;
  family: 4 | 6;
}

export class InterfaceConfigurator {
  private readonly installed = new Set<string>();
  private readonly endpointRoutes = new Map<string, string[]>(); // "addr" → args to delete

  constructor(
    readonly name: string,
    /** 'auto' (main table), 'off' (no routes), or a table number. */
    readonly table: string = 'auto',
  ) {}

  async setMtu(mtu: number): Promise<void> {
    await ip(['link', 'set', 'dev', this.name, 'mtu', String(mtu)]);
  }

  async addAddress(cidr: string, family: 4 | 6): Promise<void> {
    await ip([`-${family}`, 'address', 'add', cidr, 'dev', this.name]);
  }

  async up(): Promise<void> {
    await ip(['link', 'set', 'dev', this.name, 'up']);
  }

  /**
   * The `ip -batch` lines that set the MTU, add the addresses and bring the interface up, for
   * syncRoutes to run before the first routes in the same process (one `ip` instead of one per
   * step: each spawn costs 10–100 ms of start-up on a small, busy machine).
   */
  setupLines(mtu: number, addresses: Array<{ cidr: string }>): string[] {
    return [`link set dev ${this.name} mtu ${mtu}`, ...addresses.map((a) => `address add ${a.cidr} dev ${this.name}`), `link set dev ${this.name} up`];
  }

  private tableArgs(): string[] {
    return this.table === 'auto' ? [] : ['table', this.table];
  }

  /** Expand /0 into two half-routes so the default route stays for the tunnel's own traffic. */
  private expand(r: RouteSpec): RouteSpec[] {
    if (r.cidr === '0.0.0.0/0') return [{ cidr: '0.0.0.0/1', family: 4 }, { cidr: '128.0.0.0/1', family: 4 }];
    if (r.cidr === '::/0') return [{ cidr: '::/1', family: 6 }, { cidr: '8000::/1', family: 6 }];
    return [r];
  }

  /**
   * Make the kernel's routes through this interface exactly `routes` (adding and removing as
   * needed), after `setup` (setupLines: at bring-up) in the same `ip -batch`.
   */
  async syncRoutes(routes: RouteSpec[], setup: string[] = []): Promise<void> {
    if (this.table === 'off') return ipBatch(setup);
    const want = new Map<string, RouteSpec>();
    for (const r of routes) for (const e of this.expand(r)) want.set(e.cidr, e);
    const table = this.tableArgs().join(' ');
    const gone = [...this.installed].filter((key) => !want.has(key));
    // removals: whatever the kernel says (the route may already be gone with the interface)
    await ipBatch(gone.map((key) => `route del ${key} dev ${this.name} ${table}`.trim()), true).catch(() => undefined);
    for (const key of gone) this.installed.delete(key);
    const add = [...want.keys()].filter((key) => !this.installed.has(key));
    try {
      await ipBatch([...setup, ...add.map((key) => `route replace ${key} dev ${this.name} ${table}`.trim())]);
      for (const key of add) this.installed.add(key);
    } catch (e) {
      // ip stopped at the failing line: the ones before it are in
      const done = Math.max(0, ((e as { failedLine?: number }).failedLine ?? 1) - 1 - setup.length);
      for (const key of add.slice(0, done)) this.installed.add(key);
      throw e;
    }
  }

  /**
   * With a default route through the tunnel, pin the route to a peer's endpoint to the path it
   * had before (so encrypted packets do not loop into the tunnel). No-op without /0 routes.
   */
  async pinEndpoint(address: string, family: 4 | 6): Promise<void> {
    const half = family === 4 ? '0.0.0.0/1' : '::/1';
    if (!this.installed.has(half) || this.endpointRoutes.has(address)) return;
    const out = await ip([`-${family}`, '-o', 'route', 'show', 'default']).catch(() => '');
    const line = out.split('\n').find((l) => l.startsWith('default') && !l.includes(` dev ${this.name} `));
    if (!line) return;
    const via = / via (\S+)/.exec(line)?.[1];
    const dev = / dev (\S+)/.exec(line)?.[1];
    const host = family === 4 ? `${address}/32` : `${address}/128`;
    const args = [`-${family}`, 'route', 'replace', host, ...(via ? ['via', via] : []), ...(dev ? ['dev', dev] : [])];
    await ip(args).catch(() => undefined);
    this.endpointRoutes.set(address, [`-${family}`, 'route', 'del', host]);
  }

  /** How many endpoint routes are pinned now. */
  get pinnedCount(): number {
    return this.endpointRoutes.size;
  }

  /** The `ip` arguments that delete each pinned endpoint route (they outlive the interface). */
  pinnedRoutes(): string[][] {
    return [...this.endpointRoutes.values()];
  }

  /** Remove every route keymesh added. The interface's own removal takes its addresses along. */
  async teardown(): Promise<void> {
    await this.syncRoutes([]).catch(() => undefined);
    for (const args of this.endpointRoutes.values()) await ip(args).catch(() => undefined);
    this.endpointRoutes.clear();
  }
}

/** Run a wg-quick hook command (PreUp, PostUp, PreDown, PostDown) with %i replaced by the interface name. */
export async function runHook(command: string, iface: string): Promise<void> {
  const cmd = command.replaceAll('%i', iface);
  try {
    await run('bash', ['-c', cmd], { encoding: 'utf8' });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`hook failed: ${cmd}: ${(err.stderr ?? err.message).trim()}`);
  }
}

/** DNS = … as wg-quick applies it: through resolvconf, under the name tun.IFACE. */
export function setDns(iface: string, dns: string[], search: string[]): Promise<void> {
  const text = dns.map((d) => `nameserver ${d}\n`).join('') + (search.length ? `search ${search.join(' ')}\n` : '');
  return resolvconf(['-a', `tun.${iface}`, '-m', '0', '-x'], text);
}

/** Take back what setDns gave resolvconf. */
export function removeDns(iface: string): Promise<void> {
  return resolvconf(['-d', `tun.${iface}`, '-f']);
}

function resolvconf(args: string[], input?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = execFile('resolvconf', args, (err, _out, stderr) => {
      if (err) reject(new Error((err as NodeJS.ErrnoException).code === 'ENOENT' ? 'resolvconf is not installed' : stderr.trim() || err.message));
      else resolve();
    });
    child.stdin?.on('error', () => undefined); // EPIPE if resolvconf exits early: reported by its exit status
    if (input !== undefined) child.stdin?.end(input);
  });
}
