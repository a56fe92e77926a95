/**
 * keymesh-wg: keymesh as a userspace WireGuard implementation for the stock wg-quick, invoked as
 * wireguard-go is (`WG_QUICK_USERSPACE_IMPLEMENTATION=keymesh-wg wg-quick up wg0`):
 *
 *   keymesh-wg [-f|--foreground] INTERFACE
 *
 * creates the TUN device INTERFACE and serves /var/run/wireguard/INTERFACE.sock for `wg`, with an
 * empty device (no key, no peers). wg-quick then does the rest: `wg setconf`, addresses, MTU, link
 * up, routes, DNS, hooks. The command returns only once both the device and the socket exist:
 *
 *   wg-quick ─▶ keymesh-wg wg0 (parent) ──spawn, detached──▶ keymesh-wg -f wg0 (daemon)
 *                   │ waits on fd 3 (a pipe)                    Runtime.start: TUN + UAPI
 *                   │ ◀───────────── "READY\n" ─────────────────┤   (or "ERROR why\n", or exit)
 *               exit 0 (1 with the reason)                      runs until: socket removed
 *                                                               (wg-quick down), device deleted,
 *                                                               SIGTERM/SIGINT, keymesh down
 *
 * As wireguard-go, it stays in the foreground with -f or WG_PROCESS_FOREGROUND=1, logging to
 * stdout; the daemon logs to /var/log/keymesh/INTERFACE.log (KEYMESH_WG_LOG names another file).
 * keymesh's own configuration keys (Lighthouse, Certificate, …) have no UAPI words, so they are
 * not available this way; keymesh-to-keymesh mobility (HELLO, path validation, multihoming) is.
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, watch, writeSync, type FSWatcher } from 'node:fs';
import { lstat, readFile } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { interfaceDefaults, type WgQuickConfig } from '../config/wgquick.js';
import { ControlServer } from '../io/control.js';
import { ip } from '../io/netconf.js';
import { pingOnce } from '../io/ping.js';
import { Runtime } from '../io/runtime.js';
import { UAPI_DIR } from '../uapi/server.js';
import { VERSION } from './version.js';

const IFNAME = /^[a-zA-Z0-9_=+.-]{1,15}$/;
/** The daemon's fd for its readiness line, when its parent waits on one. */
const READY_FD_ENV = 'KEYMESH_WG_READY_FD';
/** How often the UAPI socket is looked at, besides the inotify watch (which can miss a replaced directory). */
const SOCKET_CHECK_MS = 1000;
/** How long the parent waits for the daemon: bring-up (with its data path warm-up) takes about a second. */
const READY_TIMEOUT_MS = 60_000;

const USAGE = `Usage: keymesh-wg [-f/--foreground] INTERFACE-NAME
keymesh as a userspace WireGuard implementation for wg-quick:
  WG_QUICK_USERSPACE_IMPLEMENTATION=keymesh-wg wg-quick up wg0
`;

function fail(message: string, code = 1): never {
  process.stderr.write(`keymesh-wg: ${message}\n`);
  process.exit(code);
}

export function logPathFor(name: string, env: NodeJS.ProcessEnv = process.env): string {
  return env.KEYMESH_WG_LOG || path.join('/var/log/keymesh', `${name}.log`);
}

/** wireguard-go's arguments: one interface name, optionally -f/--foreground before it. */
export function parseArgs(argv: string[]): { foreground: boolean; name: string } | { help: true } | { version: true } | { error: string } {
  let foreground = false;
  const rest: string[] = [];
  for (const a of argv) {
    if (a === '-f' || a === '--foreground') foreground = true;
    else if (a === '-h' || a === '--help') return { help: true };
    else if (a === '-V' || a === '--version' || a === '-v') return { version: true };
    else rest.push(a);
  }
  if (rest.length !== 1) return { error: `expected one interface name, got ${rest.length}` };
  if (!IFNAME.test(rest[0])) return { error: `"${rest[0]}" is not a valid interface name (1–15 characters of a-z A-Z 0-9 _ = + . -)` };
  return { foreground, name: rest[0] };
}

/** An empty device: no peers, nothing for the host. The key is the warm-up's, cleared before `wg` can see it. */
function emptyDevice(): WgQuickConfig {
  return {
    file: '(keymesh-wg)',
    interface: { ...interfaceDefaults(), privateKey: new Uint8Array(randomBytes(32)), portMapping: false },
    peers: [],
  };
}

/**
 * The parent: start the daemon detached (its own session, so wg-quick's exit or terminal does not
 * end it), with stdout and stderr on the log file and fd 3 a pipe back to us; return when it says
 * it is ready, fail with what it says (or how it died) otherwise.
 */
function daemonize(name: string): void {
  const logFile = logPathFor(name);
  let logFd: number;
  try {
    mkdirSync(path.dirname(logFile), { recursive: true, mode: 0o755 });
    logFd = openSync(logFile, 'a', 0o640);
  } catch (e) {
    fail(`cannot open the log file ${logFile}: ${(e as Error).message} (KEYMESH_WG_LOG names another)`);
  }
  const child = spawn(process.execPath, [...process.execArgv, process.argv[1], '--foreground', name], {
    detached: true,
    stdio: ['ignore', logFd, logFd, 'pipe'],
    env: { ...process.env, WG_PROCESS_FOREGROUND: '1', [READY_FD_ENV]: '3' },
  });
  closeSync(logFd);
  const pipe = child.stdio[3] as NodeJS.ReadableStream;
  let said = '';
  const timer = setTimeout(() => {
    child.kill('SIGTERM');
    fail(`${name}: not ready within ${READY_TIMEOUT_MS / 1000} s (see ${logFile})`);
  }, READY_TIMEOUT_MS);
  pipe.setEncoding('utf8');
  pipe.on('data', (d: string) => {
    said += d;
    const nl = said.indexOf('\n');
    if (nl < 0) return;
    clearTimeout(timer);
    const line = said.slice(0, nl);
    if (line === 'READY') {
      child.unref();
      (pipe as unknown as { destroy(): void }).destroy();
      process.exit(0);
    }
    fail(line.replace(/^ERROR /, ''));
  });
  child.on('exit', (code, signal) => {
    clearTimeout(timer);
    fail(`${name}: the daemon exited (${signal ?? `status ${code}`}) before it was ready (see ${logFile})`);
  });
}

/** Tell the waiting parent (if any) how bring-up went; the pipe is closed after the one line. */
function report(line: string): void {
  const fd = Number(process.env[READY_FD_ENV]);
  delete process.env[READY_FD_ENV]; // not for hooks or other children
  if (!Number.isInteger(fd) || fd < 0) return;
  try {
    writeSync(fd, line + '\n');
    closeSync(fd);
  } catch {
    // the parent is gone (killed while waiting): there is no one left to tell
  }
}

/** Call `gone` once the socket at `p` is removed or replaced (wg-quick down: `rm -f` the socket). */
async function watchSocket(p: string, gone: () => void): Promise<() => void> {
  const ino = (await lstat(p).catch(() => null))?.ino;
  if (ino === undefined) gone();
  const check = () => {
    lstat(p).then(
      (st) => st.ino !== ino && gone(),
      () => gone(),
    );
  };
  let watcher: FSWatcher | null = null;
  try {
    watcher = watch(p, { persistent: false }, check);
    watcher.on('error', () => undefined); // the poll below still looks
  } catch {
    // no inotify: the poll alone
  }
  const poll = setInterval(check, SOCKET_CHECK_MS);
  poll.unref();
  return () => {
    watcher?.close();
    clearInterval(poll);
  };
}

/**
 * wg-quick sets the MTU from the underlay's (its MTU less 80: 1420 behind 1500, 65456 with only
 * loopback, 8920 behind jumbo frames), but the data path's buffers are sized for the MTU keymesh
 * started with: a larger one is put back down, once each time it is raised, and said in the log.
 */
async function holdMtu(name: string, mtu: number, log: (l: string) => void): Promise<void> {
  const now = Number((await readFile(`/sys/class/net/${name}/mtu`, 'utf8').catch(() => '')).trim());
  if (!(now > mtu)) return;
  await ip(['link', 'set', 'dev', name, 'mtu', String(mtu)]).then(
    () => log(`${name}: MTU ${now} set by wg-quick is above the ${mtu} keymesh-wg runs with; set back to ${mtu} (MTU = in the config chooses a smaller one)`),
    (e: Error) => log(`${name}: cannot lower the MTU ${now} to ${mtu}: ${e.message}`),
  );
}

/** The daemon (or `-f`): bring the empty device up and serve it until something ends it. */
async function runDevice(name: string): Promise<void> {
  const log = (l: string) => process.stdout.write(`${new Date().toISOString()} ${l}\n`);
  let signalled: string | null = null;
  let shutdown: (why: string) => Promise<void> = async (why) => {
    signalled ??= why;
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => void shutdown(sig));
  process.on('SIGHUP', () => undefined); // no file to re-read: wg-quick's `wg syncconf` is the reload
  log(`keymesh-wg ${VERSION}: starting ${name}`);
  let rt: Runtime;
  try {
    rt = await Runtime.start({ interfaceName: name, config: emptyDevice(), log, wgQuickDriven: true, onFatal: (why) => void shutdown(why) });
  } catch (e) {
    const msg = (e as Error).message;
    log(`${name}: ${msg}`);
    report(`ERROR ${msg}`);
    process.exit(1);
  }
  // Until every socket below is open, a signal (or a fatal error) is only noted: a shutdown begun
  // sooner would not know of a socket opened after it, and leave that file behind.
  const sock = path.join(UAPI_DIR, `${name}.sock`);
  const unwatchSocket = await watchSocket(sock, () => void shutdown(`its UAPI socket ${sock} was removed`));
  const mtuCheck = setInterval(() => void holdMtu(name, rt.mtu, log), SOCKET_CHECK_MS);
  mtuCheck.unref();
  // `keymesh show` and `keymesh down` work on it as on any keymesh node
  const control = await ControlServer.listen(name, {
    status: () => rt.status(),
    down: () => void shutdown('keymesh down'),
    ping: (target, timeoutMs) => pingOnce(rt, target, timeoutMs) as Promise<object>,
  }).catch((e) => {
    log(`${name}: control socket unavailable: ${(e as Error).message}`);
    return null;
  });
  let stopping = false;
  shutdown = async (why: string) => {
    if (stopping) return;
    stopping = true;
    log(`${name}: ${why}, shutting down`);
    unwatchSocket();
    clearInterval(mtuCheck);
    await control?.close().catch(() => undefined);
    await rt.stop().catch((e) => log(`${name}: error during shutdown: ${(e as Error).message}`));
    log(`${name}: down`);
    process.exit(0);
  };
  if (signalled) return shutdown(signalled);
  report('READY');
  // Keep the process alive: the native polls are the event sources.
  setInterval(() => undefined, 1 << 30);
}

export function main(argv: string[]): void {
  const a = parseArgs(argv);
  if ('help' in a) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  if ('version' in a) {
    process.stdout.write(`keymesh-wg ${VERSION}\n`);
    process.exit(0);
  }
  if ('error' in a) fail(`${a.error}\n${USAGE}`);
  if (process.getuid && process.getuid() !== 0) fail('needs root (creating a TUN device needs CAP_NET_ADMIN)');
  if (a.foreground || process.env.WG_PROCESS_FOREGROUND === '1') {
    runDevice(a.name).catch((e) => {
      report(`ERROR ${(e as Error).message}`);
      fail((e as Error).message);
    });
  } else daemonize(a.name);
}

