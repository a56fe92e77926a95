/**
 * keymesh-wg under the stock wg-quick, as wireguard-go is used
 * (`WG_QUICK_USERSPACE_IMPLEMENTATION=keymesh-wg wg-quick up NAME.conf`), in network namespaces
 * (topology: netns/two-hosts.ts):
 *
 *   ns A: wg-quick ─▶ keymesh-wg (daemon)  ══ veth ══  ns B: wireguard-go (or wg-quick + keymesh-wg)
 *
 * and keymesh-wg by itself, as wg-quick calls it, for what Debian's wg-quick does not exercise
 * (a removed socket ends the daemon, as wg-quick down does it on other systems; -f).
 *
 * wg-quick falls back to a userspace implementation only when `ip link add … type wireguard`
 * fails. Where the kernel module works (or KEYMESH_TEST_FORCE_USERSPACE=1), wg-quick runs in a
 * mount namespace of its own with an empty /sys/module and an `ip` that refuses that one command
 * (a shim in front of PATH), which is what a host without the module looks like to wg-quick.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { canRunNetns, KEYMESH_BIN, Lab, ping, REPO, sh, sleep, startProbe, startWireguardGo, tcpTransfer, uapiSocket, waitFor, wgQuickConfig, type NodeSpec } from '../../netns/lib.js';
import { TUNNEL, twoHosts, UNDERLAY } from '../../netns/two-hosts.js';

const KEYMESH_WG = path.join(REPO, 'bin', 'keymesh-wg.js');
const need = (cmd: string) => (spawnSync('which', [cmd]).status === 0 ? null : `${cmd} is not installed`);
const skip = canRunNetns() ?? need('wg-quick') ?? need('wireguard-go');
if (skip) console.warn(`wg-quick tests skipped: ${skip}`);

let lab: Lab | null = null;
afterEach(async () => {
  // the daemons are not the lab's children: the namespaces' removal kills them (Lab.cleanupSync)
  await lab?.cleanup();
  lab = null;
});

/** Does the kernel's WireGuard work in this namespace (so wg-quick would not use keymesh-wg)? */
function kernelWireguard(l: Lab, ns: string): boolean {
  const probe = l.name('k');
  const r = spawnSync('ip', ['netns', 'exec', ns, 'ip', 'link', 'add', probe, 'type', 'wireguard']);
  if (r.status !== 0) return false;
  l.exec(ns, ['ip', 'link', 'del', probe]);
  return true;
}

/** The command that runs wg-quick in `ns`, on the userspace path even where the kernel module works. */
function wgQuickCommand(l: Lab, ns: string, args: string[]): string[] {
  if (process.env.KEYMESH_TEST_FORCE_USERSPACE !== '1' && !kernelWireguard(l, ns)) return ['wg-quick', ...args];
  const shim = path.join(l.dir, 'shim');
  const realIp = sh('sh', ['-c', 'command -v ip']).trim();
  sh('mkdir', ['-p', shim]);
  writeFileSync(path.join(shim, 'ip'), `#!/bin/sh\ncase " $* " in *" type wireguard "*) echo "Error: Unknown device type." >&2; exit 2;; esac\nexec ${realIp} "$@"\n`);
  chmodSync(path.join(shim, 'ip'), 0o755);
  const script = `mount -t tmpfs none /sys/module && PATH=${shim}:$PATH exec wg-quick "$@"`;
  return ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', script, 'wg-quick', ...args];
}

interface Run {
  status: number | null;
  output: string;
  ms: number;
}

/** `wg-quick up|down CONF` in the node's namespace, keymesh-wg as the userspace implementation. */
function wgQuick(l: Lab, n: NodeSpec, op: 'up' | 'down'): Run {
  const env = [`WG_QUICK_USERSPACE_IMPLEMENTATION=${KEYMESH_WG}`, `KEYMESH_WG_LOG=${logOf(l, n)}`];
  const t0 = performance.now();
  const r = spawnSync('ip', ['netns', 'exec', n.ns, 'env', ...env, ...wgQuickCommand(l, n.ns, [op, n.configFile!])], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, output: `${r.stdout}${r.stderr}`, ms: performance.now() - t0 };
}

const logOf = (l: Lab, n: NodeSpec) => path.join(l.dir, `${n.ifname}.log`);

/** Bring a node up through wg-quick; fails the test with wg-quick's and the daemon's output otherwise. */
function up(l: Lab, n: NodeSpec): Run {
  n.configFile = l.file(`${n.ifname}.conf`, wgQuickConfig(n));
  const r = wgQuick(l, n, 'up');
  const log = existsSync(logOf(l, n)) ? readFileSync(logOf(l, n), 'utf8') : '(no log)';
  expect(r.status, `wg-quick up ${n.ifname}:\n${r.output}\n--- daemon log ---\n${log}`).toBe(0);
  return r;
}

function nsPids(ns: string): string[] {
  return sh('ip', ['netns', 'pids', ns]).split('\n').filter(Boolean);
}

function linkExists(l: Lab, n: NodeSpec): boolean {
  return spawnSync('ip', ['netns', 'exec', n.ns, 'ip', 'link', 'show', 'dev', n.ifname], { stdio: 'ignore' }).status === 0;
}

/**
 * Whatever a keymesh node of this name could leave behind; `others`: processes the test itself
 * runs in that namespace (an echo server, say) are not counted.
 */
function leftovers(l: Lab, n: NodeSpec, others = false): string[] {
  const left: string[] = [];
  if (linkExists(l, n)) left.push(`interface ${n.ifname}`);
  for (const f of [uapiSocket(n.ifname), `/var/run/keymesh/${n.ifname}.sock`, `/var/run/keymesh/${n.ifname}.json`]) if (existsSync(f)) left.push(f);
  for (const pid of nsPids(n.ns)) {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
    if (!others || /keymesh|ip monitor/.test(cmd)) left.push(`process ${pid}: ${cmd}`);
  }
  return left;
}

describe.skipIf(skip)('keymesh-wg under wg-quick', () => {
  it('wg-quick up ↔ wireguard-go: pings both ways, wg show lists the handshake, wg-quick down leaves nothing within 5 s', async () => {
    lab = new Lab();
    const { a, b } = twoHosts(lab);
    const forced = process.env.KEYMESH_TEST_FORCE_USERSPACE === '1' || kernelWireguard(lab, a.ns);
    await startWireguardGo(lab, b);
    const upRun = up(lab, a);
    expect(upRun.output).toContain(`${KEYMESH_WG} ${a.ifname}`); // wg-quick ran keymesh-wg, not the kernel module
    expect(upRun.output).toContain(`wg setconf ${a.ifname}`);
    // wg-quick returned: the device and its socket exist already (it configured both)
    expect(linkExists(lab, a)).toBe(true);
    expect(existsSync(uapiSocket(a.ifname))).toBe(true);
    const log = () => `\n--- wg-quick up ---\n${upRun.output}\n--- daemon log ---\n${readFileSync(logOf(lab!, a), 'utf8')}\n${lab!.logs()}`;
    expect(ping(lab, a.ns, TUNNEL.b), `IPv4 ping keymesh-wg → wireguard-go${log()}`).toBe(true);
    expect(ping(lab, a.ns, TUNNEL.b6), `IPv6 ping keymesh-wg → wireguard-go${log()}`).toBe(true);
    expect(ping(lab, b.ns, TUNNEL.a), `IPv4 ping wireguard-go → keymesh-wg${log()}`).toBe(true);
    expect(ping(lab, b.ns, TUNNEL.a6), `IPv6 ping wireguard-go → keymesh-wg${log()}`).toBe(true);
    const show = lab.exec(a.ns, ['wg', 'show', a.ifname]);
    expect(show).toMatch(/latest handshake: .* ago/);
    const [, when] = lab.exec(a.ns, ['wg', 'show', a.ifname, 'latest-handshakes']).trim().split('\t');
    expect(Math.abs(Date.now() / 1000 - Number(when))).toBeLessThan(30);
    // the MTU wg-quick chose (1500 − 80 behind the veth) is the one keymesh runs with
    expect(lab.exec(a.ns, ['cat', `/sys/class/net/${a.ifname}/mtu`]).trim()).toBe('1420');

    const downRun = wgQuick(lab, a, 'down');
    expect(downRun.status, downRun.output).toBe(0);
    const t0 = Date.now();
    await waitFor('nothing left of the keymesh-wg node', () => leftovers(lab!, a).length === 0, 5000).catch((e) => {
      throw new Error(`${(e as Error).message}: ${leftovers(lab!, a).join('; ')}${log()}`);
    });
    const goneMs = Date.now() - t0;
    expect(readFileSync(logOf(lab, a), 'utf8')).toMatch(/: down\n$/);
    console.log(
      `wg-quick (${forced ? 'userspace path forced: shimmed ip, empty /sys/module' : 'no kernel module'}): up ${upRun.ms.toFixed(0)} ms, down ${downRun.ms.toFixed(0)} ms, daemon gone ${goneMs} ms after`,
    );
  }, 60_000);

  it('keymesh-wg ↔ keymesh-wg: the server moves to a new address and keymesh mobility carries the TCP stream over', async () => {
    lab = new Lab();
    const { a, b } = twoHosts(lab);
    up(lab, b);
    up(lab, a);
    expect(ping(lab, a.ns, TUNNEL.b), readFileSync(logOf(lab, a), 'utf8')).toBe(true);
    // a stock WireGuard client would keep sending to the server's old address: keymesh's HELLO and
    // path validation move it
    const probe = await startProbe(lab, a.ns, b.ns, TUNNEL.b);
    const transfer = tcpTransfer(lab, a.ns, b.ns, TUNNEL.b, 60 * 1024 * 1024);
    await sleep(1000);
    lab.exec(b.ns, ['ip', 'addr', 'del', `${UNDERLAY.b}/24`, 'dev', 'eth0']);
    lab.exec(b.ns, ['ip', 'addr', 'add', '192.0.2.12/24', 'dev', 'eth0']);
    await sleep(2000);
    const p = await probe.stop();
    const t = await transfer;
    const logs = `\n--- a ---\n${readFileSync(logOf(lab, a), 'utf8')}\n--- b ---\n${readFileSync(logOf(lab, b), 'utf8')}`;
    expect(t.received.sha256, logs).toBe(t.sent.sha256);
    const endpoint = lab.exec(a.ns, ['wg', 'show', a.ifname, 'endpoints']).trim().split('\t')[1];
    expect(['192.0.2.12:51820', `[${UNDERLAY.b6}]:51820`], logs).toContain(endpoint);
    expect(p.maxGapMs, JSON.stringify(p) + logs).toBeLessThanOrEqual(1000);
    // keymesh's own view of the peer, through the control socket the daemon serves too
    const status = JSON.parse(lab.exec(a.ns, [process.execPath, KEYMESH_BIN, 'show', a.ifname, '--json']));
    expect(status.peers.map((x: { speaksKeymesh: boolean }) => x.speaksKeymesh), logs).toEqual([true]);
    console.log(`keymesh-wg server move: longest probe silence ${p.maxGapMs} ms, endpoint now ${endpoint}`);
    for (const n of [a, b]) expect(wgQuick(lab, n, 'down').status).toBe(0);
    await waitFor('both nodes gone', () => leftovers(lab!, a).length + leftovers(lab!, b, true).length === 0, 5000).catch((e) => {
      throw new Error(`${(e as Error).message}: ${[...leftovers(lab!, a), ...leftovers(lab!, b, true)].join('; ')}${logs}`);
    });
  }, 60_000);

  it('keymesh-wg alone, as wg-quick calls it: returns once device and socket exist, refuses a taken name, holds its MTU, exits when its socket is removed; -f stays in the foreground', async () => {
    lab = new Lab();
    const ns = lab.netns('d');
    const n: NodeSpec = { ns, ifname: lab.name('d'), privateKey: '', addresses: [], peers: [] };
    const env = ['env', `KEYMESH_WG_LOG=${logOf(lab, n)}`];
    const run = () => spawnSync('ip', ['netns', 'exec', ns, ...env, KEYMESH_WG, n.ifname], { encoding: 'utf8', timeout: 60_000 });
    const first = run();
    expect(first.status, first.stderr).toBe(0);
    // on return, both exist (wg-quick's next step is `wg setconf`): no waiting here
    expect(linkExists(lab, n)).toBe(true);
    expect(existsSync(uapiSocket(n.ifname))).toBe(true);
    expect(lab.exec(ns, ['wg', 'show', n.ifname])).not.toContain('private key'); // empty device: no key yet
    const second = run();
    expect(second.status).toBe(1);
    expect(second.stderr).toContain(`interface ${n.ifname} belongs to a running keymesh node`);
    // an MTU the data path's buffers do not fit is put back
    lab.exec(ns, ['ip', 'link', 'set', 'dev', n.ifname, 'mtu', '9000']);
    await waitFor('the MTU back at 1420', () => lab!.exec(ns, ['cat', `/sys/class/net/${n.ifname}/mtu`]).trim() === '1420', 5000);
    // wg-quick down elsewhere (and wireguard-go's contract): removing the socket ends the daemon
    rmSync(uapiSocket(n.ifname));
    await waitFor('nothing left after the socket was removed', () => leftovers(lab!, n).length === 0, 5000).catch((e) => {
      throw new Error(`${(e as Error).message}: ${leftovers(lab!, n).join('; ')}\n${readFileSync(logOf(lab!, n), 'utf8')}`);
    });
    expect(readFileSync(logOf(lab, n), 'utf8')).toContain(`its UAPI socket ${uapiSocket(n.ifname)} was removed`);

    // -f: the same device in the foreground, logging to stdout, until SIGTERM. The signal comes
    // the moment the UAPI socket appears, while the control socket may still be opening: the
    // shutdown must wait for it, or its file is left behind.
    const fg = lab.spawn(ns, [KEYMESH_WG, '-f', n.ifname], 'keymesh-wg -f');
    await waitFor('keymesh-wg -f up', () => {
      if (!fg.running) throw new Error(`keymesh-wg -f exited (${fg.exitCode}):\n${fg.output}`);
      return existsSync(uapiSocket(n.ifname));
    }, 20_000, 5);
    expect(await fg.stop('SIGTERM')).toBe(0);
    expect(fg.output).toContain(`${n.ifname}: up,`);
    expect(fg.output).toContain('SIGTERM, shutting down');
    await waitFor('nothing left after SIGTERM', () => leftovers(lab!, n).length === 0, 5000).catch((e) => {
      throw new Error(`${(e as Error).message}: ${leftovers(lab!, n).join('; ')}\n${fg.output}`);
    });
  }, 60_000);
});
