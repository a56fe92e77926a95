/**
 * Crash recovery: what a node leaves on the host that its process's death does not take away is
 * written down while it runs, so that the next `keymesh up` of the same name can undo it after a
 * `kill -9` (the OOM killer, a crash in the addon), and a name a live node holds is never taken.
 *
 * When a keymesh process dies, the kernel removes by itself: the TUN device (it is not persistent,
 * so it goes with its last fd; every fd is O_CLOEXEC, so no child holds one), and with it the
 * device's addresses and every route through it, in any table; the UDP socket; the `ip monitor`
 * child (SIGPIPE at the next netlink event, which the device's removal is).
 * What stays, and what claim() does about it:
 *   the UAPI and control socket files    removed if nothing answers on them (ECONNREFUSED)
 *   the resolvconf record tun.NAME        removed (`resolvconf -d`) if the dead node had added it
 *   /etc/resolv.conf (MeshDNS = direct)   the backup written back, if the file is still keymesh's
 *                                         (host-dns.ts); systemd-resolved's split DNS goes with the
 *                                         device by itself
 *   host routes pinning the peers'        deleted (they go through the underlay, not the device)
 *     endpoints (AllowedIPs = 0.0.0.0/0)
 *   what PostUp did (PostDown never ran)  the configuration's PostDown hooks are run
 *   a port mapping on the router          nothing: it expires with its lifetime
 *
 * The record is /var/run/keymesh/NAME.json, mode 0600, replaced atomically on every change; it
 * holds no key, only: the owner's pid and start time (so a reused pid is not taken for it), its
 * network namespace, whether DNS was applied, where resolv.conf's backup is, the delete commands of the pinned routes, and
 * whether PostDown is still owed. A clean stop removes it.
 *
 *   up ──claim()──▶ live owner? ──yes──▶ refuse (nothing touched: no hook, no DNS, no socket)
 *                      │ no
 *                      ▼
 *              dead owner's record? ──yes──▶ undo what it lists ──┐
 *                      │ no                                       │
 *                      ▼                                          ▼
 *              stale sockets removed, our record written ──▶ bring-up ──update()…──▶ stop ──release()
 *
 * May touch: the record, the two socket files, `ip` (routes, the interface's existence), resolvconf
 * and the configuration's PostDown hooks. It runs before bring-up starts and owns no fd after.
 */
import { lstat, mkdir, readFile, readlink, unlink } from 'node:fs/promises';
import path from 'node:path';
import { UAPI_DIR, socketAnswers } from '../uapi/server.js';
import { writeFileAtomic } from './atomic-write.js';
import { CONTROL_DIR, controlPath } from './control.js';
import { ip, removeDns, runHook } from './netconf.js';
import { restoreResolvConf, type ResolvConfRecord } from './host-dns.js';

/** How long a dead node's TUN device may take to disappear after its process is gone. */
const DEVICE_GONE_TIMEOUT_MS = 3000;
/** How long a recorded owner may take to finish exiting before it counts as live. */
const OWNER_EXIT_TIMEOUT_MS = 1000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What the record says; JSON, no keys. */
export interface NodeRecordData {
  version: 1;
  pid: number;
  /** /proc/PID/stat field 22 (clock ticks since boot): tells the owner from a later process with its pid. */
  startTime: string;
  /** readlink /proc/self/ns/net, e.g. "net:[4026531840]". */
  netns: string;
  /** resolvconf holds our record tun.NAME (or may: it is set before the call). */
  dns: boolean;
  /** MeshDNS = direct: the resolv.conf we wrote and its backup (set before the file is written). */
  resolvConf?: ResolvConfRecord | null;
  /** `ip` argument lists that delete the endpoint routes we pinned. */
  pinned: string[][];
  /** PostDown hooks have not run yet. */
  postDown: boolean;
}

export interface ClaimOptions {
  log: (line: string) => void;
  /** The configuration's PostDown hooks (run for a dead owner that did not run them). */
  postDown: string[];
  uapiDir?: string;
  controlDir?: string;
  /** Where the record lives (default: the control socket's directory). */
  stateDir?: string;
}

export function recordPath(name: string, dir = CONTROL_DIR): string {
  return path.join(dir, `${name}.json`);
}

/**
 * The start time of process `pid`, or null if it is not running: no such process, or a zombie (a
 * killed process stays one until its parent reaps it, but its fds, and so its device, are gone).
 */
async function startTimeOf(pid: number): Promise<string | null> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  if (!stat) return null;
  // "pid (comm) state ppid …": comm may hold spaces and parentheses, so count from the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (fields[0] === 'Z' || fields[0] === 'X') return null;
  return fields[19] ?? null; // field 22 overall; fields[0] is field 3
}

async function interfaceExists(name: string): Promise<boolean> {
  try {
    await ip(['-o', 'link', 'show', 'dev', name]);
    return true;
  } catch (e) {
    // no such device; or no `ip` at all, and then bring-up stops with that plainly
    if (/does not exist|not installed/.test((e as Error).message)) return false;
    throw e;
  }
}

async function readRecord(p: string): Promise<NodeRecordData | null> {
  const text = await readFile(p, 'utf8').catch(() => null);
  if (text === null) return null;
  try {
    const r = JSON.parse(text) as NodeRecordData;
    if (r.version !== 1 || !Number.isInteger(r.pid)) return null;
    return { ...r, pinned: Array.isArray(r.pinned) ? r.pinned.filter((a) => Array.isArray(a) && a.every((x) => typeof x === 'string')) : [] };
  } catch {
    return null; // unreadable: nothing in it can be trusted, and a live owner still answers on its sockets
  }
}

/** A node's claim on its interface name, held from before bring-up until the end of stop(). */
export class NodeRecord {
  private writing: Promise<void> = Promise.resolve();
  private released = false;

  private constructor(
    private readonly file: string,
    private readonly data: NodeRecordData,
    private readonly log: (line: string) => void,
  ) {}

  /**
   * Take the name for this process: refuse (throw, having changed nothing) if a live process
   * holds it; otherwise undo what a dead owner left, remove stale sockets, and write our record.
   */
  static async claim(name: string, o: ClaimOptions): Promise<NodeRecord> {
    const stateDir = o.stateDir ?? o.controlDir ?? CONTROL_DIR;
    const file = recordPath(name, stateDir);
    const sockets = [path.join(o.uapiDir ?? UAPI_DIR, `${name}.sock`), controlPath(name, o.controlDir)];
    const prev = await readRecord(file);
    const ownerAlive = async (): Promise<boolean> => prev !== null && prev.pid !== process.pid && (await startTimeOf(prev.pid)) === prev.startTime;
    // a process killed a moment ago is still exiting: give it that moment before calling it live
    const end = Date.now() + OWNER_EXIT_TIMEOUT_MS;
    while ((await ownerAlive()) && Date.now() < end) await sleep(50);
    if (prev && (await ownerAlive())) throw new Error(`interface ${name} belongs to a running keymesh node (pid ${prev.pid}); stop it first (keymesh down ${name})`);
    const stale: string[] = [];
    for (const p of sockets) {
      const st = await lstat(p).catch(() => null);
      if (!st?.isSocket()) continue; // absent; anything else there is the UAPI server's to refuse
      if (await socketAnswers(p)) throw new Error(`interface ${name} is served by another running process (${p} accepts connections)`);
      stale.push(p);
    }
    const netns = await readlink('/proc/self/ns/net').catch(() => '');
    if (await interfaceExists(name)) {
      // The dead owner's device goes when the kernel has closed its fd, which can trail the
      // process's exit by a moment; any other device of that name is not ours to remove.
      const ours = prev !== null && prev.netns === netns;
      const until = Date.now() + (ours ? DEVICE_GONE_TIMEOUT_MS : 0);
      while ((await interfaceExists(name)) && Date.now() < until) await sleep(50);
      if (await interfaceExists(name)) {
        throw new Error(`interface ${name} already exists and is in use (not a device a stopped keymesh node left: those go with their process)`);
      }
    }
    const undone: string[] = [];
    for (const p of stale) {
      await unlink(p).catch(() => undefined);
      undone.push(`stale socket ${p}`);
    }
    if (prev) undone.push(...(await undo(name, prev, netns, o)));
    if (prev || undone.length) {
      const who = prev ? `a node (pid ${prev.pid})` : 'a node';
      o.log(`${name}: cleaned up after ${who} that did not stop cleanly: ${undone.length ? undone.join('; ') : 'nothing was left'}`);
    }
    await mkdir(stateDir, { recursive: true, mode: 0o755 });
    const startTime = (await startTimeOf(process.pid)) ?? '';
    const rec = new NodeRecord(file, { version: 1, pid: process.pid, startTime, netns, dns: false, pinned: [], postDown: true }, o.log);
    await rec.save();
    return rec;
  }

  /** Record a change in what a crash would leave (written atomically before this resolves). */
  update(patch: Partial<Pick<NodeRecordData, 'dns' | 'pinned' | 'postDown' | 'resolvConf'>>): Promise<void> {
    Object.assign(this.data, patch);
    return this.save();
  }

  /** A clean stop: nothing is left to undo. (A record another process has written since is its own.) */
  async release(): Promise<void> {
    this.released = true;
    await this.writing;
    if ((await readRecord(this.file))?.pid === this.data.pid) await unlink(this.file).catch(() => undefined);
  }

  private save(): Promise<void> {
    // One write at a time, each of the whole record as it is when it starts.
    this.writing = this.writing
      .then(() => (this.released ? undefined : writeFileAtomic(this.file, JSON.stringify(this.data) + '\n', { mode: 0o600 })))
      // bring-up goes on without it: only the clean-up after a crash would be lost
      .catch((e) => this.log(`${path.basename(this.file, '.json')}: cannot write ${this.file}: ${(e as Error).message}`));
    return this.writing;
  }
}

/** Undo what a dead owner's record lists; returns what was done, for the log. Never throws. */
async function undo(name: string, prev: NodeRecordData, netns: string, o: ClaimOptions): Promise<string[]> {
  const done: string[] = [];
  if (prev.pinned.length && prev.netns !== netns) {
    done.push(`its ${prev.pinned.length} endpoint route(s) are in another network namespace (${prev.netns}), left alone`);
  } else {
    for (const args of prev.pinned) {
      if (await ip(args).then(() => true, () => false)) done.push(`route ${args.filter((a) => !a.startsWith('-') && a !== 'route' && a !== 'del').join(' ')}`);
    }
  }
  if (prev.dns) {
    await removeDns(name).then(
      () => done.push(`resolvconf record tun.${name}`),
      () => undefined, // no resolvconf: the dead node could not have applied DNS either
    );
  }
  const rc = prev.resolvConf;
  if (rc && typeof rc.file === 'string' && typeof rc.backup === 'string') {
    // inside `ip netns exec`, /etc/resolv.conf is that namespace's file: only the same namespace's is ours
    if (prev.netns !== netns) done.push(`its ${rc.file} is another network namespace's (${prev.netns}), left alone`);
    else done.push(await restoreResolvConf(name, rc).catch((e) => `${rc.file} not restored: ${(e as Error).message}`));
  }
  if (prev.postDown && o.postDown.length) {
    // The hooks' own text is not logged: a configuration line may hold anything.
    let ran = 0;
    for (const h of o.postDown) {
      await runHook(h, name).then(
        () => ran++,
        (e) => done.push(`PostDown failed: ${(e as Error).message}`),
      );
    }
    if (ran) done.push(`ran the ${ran} PostDown hook(s) it never ran`);
  }
  return done;
}
