/**
 * The keymesh command line: `up`, `down`, `show`, `ping`, `reload`, `genkey`, `pubkey`, `genpsk`,
 * `install-unit` (install-unit.ts), the mesh CA's `ca init|sign|enroll|revoke` and `cert show`
 * (ca.ts), and a gateway's `device add|list|remove` (device.ts). Under systemd (`Type=notify`),
 * `up` reports readiness, reloads and shutdown (sd-notify.ts). keymesh-wg, the wg-quick userspace
 * implementation, is wg.ts.
 */
import { formatPong, pingOnce, type PingReply } from '../io/ping.js';
import { Command } from 'commander';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { nobleCrypto } from '../core/crypto.js';
import { decodeKey, encodeKey } from '../config/keys.js';
import { ConfigError, loadWgQuick } from '../config/wgquick.js';
import { CONTROL_DIR, ControlServer, controlRequest } from '../io/control.js';
import { Runtime } from '../io/runtime.js';
import { createLog, LOG_LEVELS, type LogLevel } from '../io/log.js';
import { registerCaCommands } from './ca.js';
import { registerDeviceCommands } from './device.js';
import { formatShow } from './show.js';
import { findConfig } from './config-path.js';
import { SystemdNotifier } from '../io/sd-notify.js';
import { installUnit } from './install-unit.js';
import { VERSION } from './version.js';

const IFNAME = /^[a-zA-Z0-9_=+.-]{1,15}$/;

function fail(message: string, code = 1): never {
  process.stderr.write(`keymesh: ${message}\n`);
  process.exit(code);
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function up(arg: string, opts: { interface?: string; logFormat: string; logLevel: string }): Promise<void> {
  if (opts.logFormat !== 'text' && opts.logFormat !== 'json') fail(`--log-format: "${opts.logFormat}" is neither text nor json`);
  if (!LOG_LEVELS.includes(opts.logLevel as LogLevel)) fail(`--log-level: "${opts.logLevel}" is not one of ${LOG_LEVELS.join(', ')}`);
  let configPath: string;
  try {
    configPath = await findConfig(arg);
  } catch (e) {
    fail((e as Error).message);
  }
  const log = createLog({ format: opts.logFormat, level: opts.logLevel as LogLevel, write: (l) => process.stdout.write(l) });
  const name = opts.interface ?? path.basename(configPath).replace(/\.conf$/, '');
  if (!IFNAME.test(name)) {
    fail(`"${name}" is not a valid interface name (1–15 characters of a-z A-Z 0-9 _ = + . -); use --interface NAME`);
  }
  let loaded: Awaited<ReturnType<typeof loadWgQuick>>;
  try {
    loaded = await loadWgQuick(configPath);
  } catch (e) {
    if (e instanceof ConfigError) fail(e.message);
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') fail(`${configPath}: no such file`);
    if (err.code === 'EACCES') fail(`${configPath}: permission denied`);
    throw e;
  }
  for (const w of loaded.warnings) log(`${name}: ${w}`, { level: 'warn', event: 'config-warning' });
  if (process.getuid && process.getuid() !== 0) {
    fail('keymesh up needs root (creating a TUN device and routes needs CAP_NET_ADMIN): run it with sudo');
  }
  const systemd = SystemdNotifier.fromEnv((l) => log(`${name}: ${l}`));
  // Signals are caught from the start: one that arrives while the interface is still coming up
  // is honoured as soon as it is up (so nothing is left half-configured).
  let signalled: string | null = null;
  let shutdown: (why: string) => Promise<void> = async (why) => {
    signalled ??= why;
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => void shutdown(sig));
  // SIGHUP reloads, as for most daemons (`keymesh reload NAME` does the same through the control socket)
  let reload: () => Promise<{ done: string[]; restarted: boolean }> = async () => {
    throw new Error('still coming up');
  };
  process.on('SIGHUP', () => {
    reload().then(
      (r) => log(`${name}: reloaded (SIGHUP)${r.restarted ? ', with a restart' : ''}: ${r.done.join('; ')}`, { event: 'reloaded' }),
      (e: Error) => log(`${name}: reload (SIGHUP) failed, running configuration kept: ${e.message}`, { level: 'error', event: 'reload-failed' }),
    );
  });
  let rt: Runtime;
  try {
    rt = await Runtime.start({ interfaceName: name, config: loaded.config, log, onFatal: (why) => void shutdown(why) });
  } catch (e) {
    fail((e as Error).message);
  }
  // the whole file again (config-reload.ts applies what changed); a bad line changes nothing
  reload = async () => {
    systemd?.reloading();
    try {
      const fresh = await loadWgQuick(configPath).catch((e) => {
        throw new Error(e instanceof ConfigError ? e.message : `${configPath}: ${(e as Error).message}`);
      });
      return rt.reload(fresh.config);
    } finally {
      // a refused reload leaves the node running as it was: still ready
      systemd?.ready();
    }
  };
  const control = await ControlServer.listen(name, {
    status: () => rt.status(),
    down: () => void shutdown('keymesh down'),
    ping: (target, timeoutMs) => pingOnce(rt, target, timeoutMs) as Promise<object>,
    ops: {
      // `keymesh device add|list|remove` (device.ts; the node's side in io/devices.ts)
      'device-add': async (req) => ({ device: await rt.devices.add(req) }),
      'device-list': async () => ({ devices: rt.devices.list(), file: rt.devices.file }),
      'device-remove': (req) => rt.devices.remove(req),
    },
    reload: async () => {
      const r = await reload().catch((e: Error) => {
        log(`${name}: reload failed, running configuration kept: ${e.message}`, { level: 'error', event: 'reload-failed' });
        throw e;
      });
      log(`${name}: reloaded${r.restarted ? ', with a restart' : ''}`, { event: 'reloaded' });
      return r;
    },
  }).catch((e) => {
    log(`${name}: control socket unavailable: ${(e as Error).message}`, { level: 'error', event: 'control-failed' });
    return null;
  });
  // Only now does a signal start the shutdown (until here it was noted): one begun sooner would
  // not know of the control socket, and leave its file behind.
  let stopping = false;
  shutdown = async (why: string) => {
    if (stopping) return;
    stopping = true;
    systemd?.stopping();
    log(`${name}: ${why}, shutting down`, { event: 'stopping', fields: { why } });
    await control?.close().catch(() => undefined);
    await rt.stop().catch((e) => log(`${name}: error during shutdown: ${(e as Error).message}`, { level: 'error', event: 'stop-failed' }));
    log(`${name}: down`, { event: 'down' });
    process.exit(0);
  };
  if (signalled) await shutdown(signalled);
  systemd?.ready(`${name} up, ${loaded.config.peers.length} peer(s)`);
  // Keep the process alive: the native polls are the event sources.
  setInterval(() => undefined, 1 << 30);
}

async function down(name: string): Promise<void> {
  try {
    await controlRequest(name, { op: 'down' });
  } catch (e) {
    fail((e as Error).message);
  }
  // Wait for the node to finish tearing down (its control socket disappears).
  for (let i = 0; i < 100; i++) {
    try {
      await controlRequest(name, { op: 'status' }, CONTROL_DIR, 200);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  fail(`${name} did not stop within 10 s`);
}

async function show(name: string | undefined, opts: { json?: boolean }): Promise<void> {
  let names: string[];
  if (name) names = [name];
  else {
    names = (await readdir(CONTROL_DIR).catch(() => [] as string[])).filter((f) => f.endsWith('.sock')).map((f) => f.slice(0, -5));
  }
  const statuses: object[] = [];
  for (const n of names.sort()) {
    try {
      const r = await controlRequest(n, { op: 'status' });
      if (r.ok) statuses.push(r.status);
    } catch (e) {
      if (name) fail((e as Error).message);
    }
  }
  if (opts.json) process.stdout.write(JSON.stringify(name ? statuses[0] : statuses, null, 2) + '\n');
  else process.stdout.write(statuses.map((s) => formatShow(s as any)).join('\n'));
}

const program = new Command();
program
  .name('keymesh')
  .description('An overlay VPN node that speaks WireGuard, with sessions that follow their peers across addresses')
  .version(VERSION, '-V, --version', 'print the version');
program
  .command('up')
  .argument('<config>', 'wg-quick configuration file (e.g. ./wg0.conf), or an interface name (wg0: /etc/keymesh/wg0.conf, else /etc/wireguard/wg0.conf)')
  .option('-i, --interface <name>', 'interface name (default: the file name without .conf)')
  .option('--log-format <format>', 'text (a time stamp and a sentence per line) or json (one object per line: time, level, event, msg, fields)', 'text')
  .option('--log-level <level>', 'the least severe level written: debug, info, warn or error', 'info')
  .description('bring up an interface from a wg-quick config and run in the foreground until SIGINT/SIGTERM')
  .action(up);
program.command('down').argument('<name>', 'interface name').description('stop a running node').action(down);
program
  .command('ping')
  .argument('<target>', 'a name (bob, bob.mesh), an overlay address, or a public key')
  .option('-c, --count <n>', 'stop after N pings (default 10)', '10')
  .option('-i, --interface <name>', 'the keymesh node to ping from (default: the only one running)')
  .option('--until-direct', 'stop at the first pong over a direct path (the default)', true)
  .description('ping a peer through the tunnel and say which path each pong came over (direct, or relay via a lighthouse), as `tailscale ping`')
  .action(async (target: string, o: { count: string; interface?: string }) => {
    const count = Number(o.count);
    if (!Number.isInteger(count) || count < 1) fail(`--count: "${o.count}" is not a positive number`);
    let name = o.interface;
    if (!name) {
      const running = (await readdir(CONTROL_DIR).catch(() => [] as string[])).filter((f) => f.endsWith('.sock')).map((f) => f.slice(0, -5));
      if (running.length !== 1) fail(running.length ? `several keymesh nodes are running (${running.join(', ')}): say which with --interface` : 'no keymesh node is running');
      name = running[0];
    }
    let reached = false;
    for (let i = 0; i < count; i++) {
      const started = Date.now();
      let r: { ok: boolean; pong?: PingReply; error?: string };
      try {
        r = await controlRequest(name, { op: 'ping', target, timeoutMs: 2000 }, CONTROL_DIR, 10_000);
      } catch (e) {
        fail((e as Error).message);
      }
      if (r.ok && r.pong) {
        reached = true;
        process.stdout.write(formatPong(r.pong) + '\n');
        if (r.pong.kind === 'direct') break;
      } else process.stdout.write(`${target}: ${r.error}\n`);
      if (i + 1 < count) await new Promise((res) => setTimeout(res, Math.max(0, 1000 - (Date.now() - started))));
    }
    process.exit(reached ? 0 : 1);
  });
program
  .command('reload')
  .argument('<name>', 'interface name')
  .description("re-read the node's config file and apply what changed (peers, allowed IPs, endpoints, keepalives, keys, lighthouse flags, certificate) without dropping the sessions of peers that did not change (as SIGHUP)")
  .action(async (name: string) => {
    let r: { ok: boolean; done?: string[]; restarted?: boolean; error?: string };
    try {
      r = await controlRequest(name, { op: 'reload' }, CONTROL_DIR, 15_000);
    } catch (e) {
      fail((e as Error).message);
    }
    if (!r.ok) fail(`${r.error}\nkeymesh: reload refused: the running configuration of ${name} is unchanged`);
    for (const line of r.done ?? []) process.stdout.write(`${name}: ${line}\n`);
  });
program
  .command('show')
  .argument('[name]', 'interface name (default: all running keymesh nodes)')
  .option('--json', 'machine-readable output')
  .description('show peers, endpoints, handshakes, transfer and what keymesh knows beyond `wg show`')
  .action(show);
program
  .command('genkey')
  .description('print a new private key (base64), as `wg genkey`')
  .action(() => {
    const k = nobleCrypto.generatePrivateKey((n) => new Uint8Array(randomBytes(n)));
    process.stdout.write(encodeKey(k) + '\n');
  });
program
  .command('pubkey')
  .description('read a private key on stdin and print its public key, as `wg pubkey`')
  .action(async () => {
    const k = decodeKey((await readStdin()).trim());
    if (!k) fail('pubkey: stdin is not a base64 private key (44 characters)');
    process.stdout.write(encodeKey(nobleCrypto.publicKey(k)) + '\n');
  });
program
  .command('genpsk')
  .description('print a new preshared key (base64), as `wg genpsk`')
  .action(() => {
    process.stdout.write(encodeKey(new Uint8Array(randomBytes(32))) + '\n');
  });
program
  .command('install-unit')
  .option('--dir <dir>', 'where systemd looks for unit files', '/etc/systemd/system')
  .description('install the keymesh@.service systemd template (then: systemctl enable --now keymesh@wg0)')
  .action(async (o: { dir: string }) => {
    try {
      process.stdout.write(await installUnit(o.dir));
    } catch (e) {
      fail((e as Error).message);
    }
  });
registerCaCommands(program);
registerDeviceCommands(program);

program.parseAsync(process.argv).catch((e) => fail((e as Error).message));
