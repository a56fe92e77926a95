/**
 * Hooking the mesh's resolver into the host's (`MeshDNS =` in [Interface]):
 *
 *   auto    systemd-resolved running: split DNS for the interface — `resolvectl dns IFACE ADDR`
 *           and `resolvectl domain IFACE ~DOMAIN` — so only the mesh's names come to us; resolved
 *           forgets the link's settings when the interface goes, so a crash leaves nothing.
 *           Otherwise the host's DNS is left alone and the log says once how to use the resolver.
 *   direct  keymesh is the host's resolver: /etc/resolv.conf is backed up and replaced by
 *           `nameserver OVERLAY_ADDR` + `search DOMAIN`; names outside the domain go to the
 *           nameservers the file named before. Restored on down, and by the next `up` after a
 *           crash (crash-recovery.ts keeps where the backup is).
 *   off     nothing.
 *
 * The file is written in place (truncate and write, same inode), never renamed over: inside
 * `ip netns exec NS`, /etc/resolv.conf is a bind mount of /etc/netns/NS/resolv.conf, and a rename
 * onto a mount point fails (EBUSY) — or, done on the source, would leave the mount on the old file.
 * A file that is not ours any more at restore time (someone rewrote it while we ran) is left alone.
 *
 * May touch: the resolv.conf file, its backup in the state directory, and resolvectl.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { isIP } from 'node:net';
import { CONTROL_DIR } from './control.js';

export type MeshDnsMode = 'auto' | 'direct' | 'off';

export interface HostDnsPaths {
  /** The host's resolver configuration (default /etc/resolv.conf). */
  resolvConf: string;
  /** Where the backup goes (default the control socket's directory, /var/run/keymesh). */
  stateDir: string;
}

export const DEFAULT_PATHS: HostDnsPaths = { resolvConf: '/etc/resolv.conf', stateDir: CONTROL_DIR };

/** What a crash would leave: the file we wrote and where its previous contents are. */
export interface ResolvConfRecord {
  file: string;
  backup: string;
}

/** The first line of every resolv.conf we write: how a restore knows the file is still ours. */
export function marker(iface: string): string {
  return `# keymesh ${iface}: the mesh's resolver (MeshDNS = direct); the previous file comes back on down`;
}

/** The nameservers a resolv.conf names (in order), leaving out `except`. */
export function nameserversOf(text: string, except: string[] = []): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (!m) continue;
    const a = m[1].replace(/%.*$/, ''); // a scoped link-local address: the scope is not ours to keep
    if (isIP(a) && !except.includes(a) && !out.includes(a)) out.push(a);
  }
  return out;
}

/**
 * MeshDNS = direct, up: back up the file and write ours. Returns the nameservers to forward to
 * (the file's previous ones) and the record for crash recovery, which the caller must persist
 * BEFORE this writes (`beforeWrite`), so a crash between the two still restores.
 */
export async function directUp(
  iface: string,
  o: { servers: string[]; domain: string; search: string[]; paths?: HostDnsPaths; beforeWrite?: (r: ResolvConfRecord) => Promise<void> },
): Promise<{ upstreams: string[]; record: ResolvConfRecord }> {
  const paths = o.paths ?? DEFAULT_PATHS;
  const file = paths.resolvConf;
  const backup = path.join(paths.stateDir, `${iface}.resolv.conf`);
  let previous = await readFile(file, 'utf8').catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? '' : Promise.reject(e)));
  if (previous.startsWith(marker(iface))) {
    // ours from an earlier run that did not restore it (its record lost): the backup is the truth
    const saved = await readFile(backup, 'utf8').catch(() => null);
    if (saved === null) throw new Error(`${file} was written by keymesh and there is no backup of what was there before (${backup}); fix ${file} by hand`);
    previous = saved;
  } else {
    await mkdir(paths.stateDir, { recursive: true, mode: 0o755 });
    await writeFile(backup, previous, { mode: 0o644 });
  }
  const record = { file, backup };
  await o.beforeWrite?.(record);
  const search = [o.domain, ...o.search.filter((s) => s !== o.domain)];
  const text = `${marker(iface)}\n${o.servers.map((s) => `nameserver ${s}\n`).join('')}search ${search.join(' ')}\n`;
  await writeInPlace(file, text);
  return { upstreams: nameserversOf(previous, o.servers), record };
}

/**
 * Put the previous file back (down, or the next `up` after a crash): only if the file is still
 * the one we wrote. Returns what was done, for the log. The backup is removed either way.
 */
export async function restoreResolvConf(iface: string, r: ResolvConfRecord): Promise<string> {
  const saved = await readFile(r.backup, 'utf8').catch(() => null);
  if (saved === null) return `no backup of ${r.file} (${r.backup}): left as it is`;
  const now = await readFile(r.file, 'utf8').catch(() => null);
  let done: string;
  if (now !== null && !now.startsWith(marker(iface))) done = `${r.file} was changed by someone else meanwhile: left as it is`;
  else {
    await writeInPlace(r.file, saved);
    done = `${r.file} restored`;
  }
  await unlink(r.backup).catch(() => undefined);
  return done;
}

/** Truncate and write: the same inode, so a bind mount over the path stays in place. */
async function writeInPlace(file: string, text: string): Promise<void> {
  await writeFile(file, text, { flag: 'w' });
}

// ───────────────────────────── systemd-resolved ─────────────────────────────

export type Run = (cmd: string, args: string[]) => Promise<void>;

const run: Run = (cmd, args) =>
  new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 5000 }, (err, _out, stderr) => (err ? reject(new Error(`${cmd} ${args.join(' ')}: ${String(stderr).trim() || err.message}`)) : resolve()));
  });

/** systemd-resolved is running and resolvectl is at hand. */
export function resolvedPresent(o: { pathEnv?: string; socket?: string } = {}): boolean {
  const socket = o.socket ?? '/run/systemd/resolve/io.systemd.Resolve';
  if (!existsSync(socket)) return false;
  return (o.pathEnv ?? process.env.PATH ?? '').split(':').some((d) => d && existsSync(path.join(d, 'resolvectl')));
}

/**
 * Split DNS for the interface: resolved sends names under DOMAIN, and the reverse names of the
 * mesh's networks (`reverse`), and only those, to `servers`.
 */
export async function resolvedUp(iface: string, servers: string[], domain: string, exec: Run = run, reverse: string[] = []): Promise<void> {
  await exec('resolvectl', ['dns', iface, ...servers]);
  await exec('resolvectl', ['domain', iface, `~${domain}`, ...reverse.map((z) => `~${z}`)]);
}

/** Undo resolvedUp (the interface's removal does as much; this is for a clean down). */
export async function resolvedDown(iface: string, exec: Run = run): Promise<void> {
  await exec('resolvectl', ['revert', iface]);
}
