/**
 * Crash safety (crash-recovery.ts): a node killed with SIGKILL, then `keymesh up` again with the
 * same configuration; and a second `up` of a name a live node holds.
 *
 *     ns a (the node that crashes)                  ns b (its peer)
 *   ┌──────────────────────────────────┐         ┌──────────────────┐
 *   │ eth0 192.0.2.1   default via b   ├─────────┤ eth0 192.0.2.2   │
 *   │ tunnel 10.0.0.1  AllowedIPs /0   │         │ tunnel 10.0.0.2  │
 *   │ DNS = 10.0.0.53 (fake resolvconf)│         └──────────────────┘
 *   │ PostUp/PostDown append to a file │
 *   └──────────────────────────────────┘
 *
 * AllowedIPs = 0.0.0.0/0 makes A pin a host route to B's endpoint through eth0: one of the things
 * that outlive the process. resolvconf is a stand-in on PATH that keeps each record as a file, so
 * what DNS state a node leaves can be read. (A `wg show` anywhere on the machine removes a UAPI
 * socket that refuses connections, as wireguard-tools does; so the dead node's UAPI socket may or
 * may not be there after the kill, and the test accepts both.)
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { canRunNetns, KEYMESH_BIN, Lab, ping, sh, startKeymesh, uapiSocket, waitFor, type NodeSpec, type Proc } from '../../netns/lib.js';
import { TUNNEL, twoHosts } from '../../netns/two-hosts.js';

const skip = canRunNetns();

let lab: Lab | null = null;
afterEach(async () => {
  await lab?.cleanup();
  lab = null;
});

const controlSocket = (ifname: string) => `/var/run/keymesh/${ifname}.sock`;
const recordFile = (ifname: string) => `/var/run/keymesh/${ifname}.json`;

/** Does something accept connections on this Unix socket? */
function answers(p: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(p);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

const FAKE_RESOLVCONF = `#!/bin/sh
# resolvconf -a NAME [opts] < text  |  resolvconf -d NAME [-f]: one file per record
mkdir -p "$RESOLVCONF_DIR"
case "$1" in
  -a) cat > "$RESOLVCONF_DIR/$2" ;;
  -d) rm -f "$RESOLVCONF_DIR/$2" ;;
  *) exit 2 ;;
esac
`;

interface CrashSetup {
  a: NodeSpec;
  b: NodeSpec;
  hooks: string;
  records: string;
}

function setUp(l: Lab): CrashSetup {
  const { a, b } = twoHosts(l);
  l.exec(a.ns, ['ip', 'route', 'add', 'default', 'via', '192.0.2.2']);
  a.peers[0].allowedIps = ['0.0.0.0/0'];
  const hooks = path.join(l.dir, 'hooks.log');
  const records = path.join(l.dir, 'resolvconf');
  const bin = path.join(l.dir, 'bin');
  sh('mkdir', ['-p', bin]);
  l.file('bin/resolvconf', FAKE_RESOLVCONF, 0o755);
  a.extra = ['DNS = 10.0.0.53, example.net', `PostUp = echo postup %i >> ${hooks}`, `PostDown = echo postdown %i >> ${hooks}`];
  a.env = { PATH: `${bin}:${process.env.PATH}`, RESOLVCONF_DIR: records };
  return { a, b, hooks, records };
}

const readOr = (p: string, otherwise = '') => (existsSync(p) ? readFileSync(p, 'utf8') : otherwise);
const routes = (l: Lab, ns: string) => l.exec(ns, ['ip', '-4', 'route', 'show']);
const count = (text: string, re: RegExp) => text.split('\n').filter((line) => re.test(line)).length;

/** The keymesh process itself: Lab.spawn's `ip netns exec` and `env` exec it, so the child is it. */
function keymeshPid(p: Proc): number {
  const pid = p.child.pid!;
  const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  expect(cmdline, 'the spawned pid is the keymesh process').toContain(KEYMESH_BIN);
  return pid;
}

async function waitUp(l: Lab, s: CrashSetup, p: Proc): Promise<void> {
  await waitFor(`${s.a.ifname} up`, () => {
    if (!p.running) throw new Error(`keymesh exited:\n${p.output}`);
    return p.output.includes(`${s.a.ifname}: up,`);
  }, 15_000);
  await waitFor('a ping through the tunnel', () => ping(l, s.a.ns, TUNNEL.b, 1), 15_000, 200);
}

describe.skipIf(skip)('crash safety', () => {
  it('after kill -9, up with the same config cleans up what the dead node left and works', async () => {
    lab = new Lab();
    const s = setUp(lab);
    const { a } = s;
    const dns = path.join(s.records, `tun.${a.ifname}`);
    await startKeymesh(lab, s.b);
    const first = await startKeymesh(lab, a);
    await waitUp(lab, s, first);
    expect(readOr(dns)).toBe('nameserver 10.0.0.53\nsearch example.net\n');
    expect(count(routes(lab, a.ns), /^192\.0\.2\.2 via/)).toBe(1);

    // the crash: SIGKILL to the keymesh process alone, as `kill -9 PID` would
    const pid = keymeshPid(first);
    process.kill(pid, 'SIGKILL');
    await first.exited;

    // what the kernel took away: the device, its addresses and routes; and no process stays behind
    expect(() => lab!.exec(a.ns, ['ip', 'link', 'show', a.ifname])).toThrow();
    expect(routes(lab, a.ns)).not.toContain(a.ifname);
    await waitFor('nothing left running in the namespace', () => sh('ip', ['netns', 'pids', a.ns]).trim() === '', 5000);
    // what it left: sockets nobody answers on, its record, the pinned route, its DNS, PostUp's effects
    expect(existsSync(controlSocket(a.ifname))).toBe(true);
    expect(await answers(controlSocket(a.ifname))).toBe(false);
    expect(existsSync(uapiSocket(a.ifname)) && (await answers(uapiSocket(a.ifname)))).toBe(false);
    const dead = JSON.parse(readFileSync(recordFile(a.ifname), 'utf8'));
    expect(dead).toMatchObject({ pid, dns: true, postDown: true, pinned: [['-4', 'route', 'del', '192.0.2.2/32']] });
    expect(readFileSync(recordFile(a.ifname), 'utf8')).not.toContain(a.privateKey);
    expect(count(routes(lab, a.ns), /^192\.0\.2\.2 via/)).toBe(1);
    expect(readOr(dns)).toContain('10.0.0.53');
    expect(readOr(s.hooks)).toBe(`postup ${a.ifname}\n`);

    // up again, same configuration
    const second = await startKeymesh(lab, a);
    await waitUp(lab, s, second);
    expect(second.output).toContain(`${a.ifname}: cleaned up after a node (pid ${pid}) that did not stop cleanly`);
    expect(second.output).toMatch(/route 192\.0\.2\.2\/32; resolvconf record tun\.\S+; ran the 1 PostDown hook/);
    const show = spawnSync(process.execPath, [KEYMESH_BIN, 'show', a.ifname], { encoding: 'utf8' });
    expect(show.status, show.stderr).toBe(0);
    expect(show.stdout).toContain(`interface: ${a.ifname}`);
    const wg = spawnSync('wg', ['show', a.ifname], { encoding: 'utf8' });
    expect(wg.status, wg.stderr).toBe(0);
    expect(wg.stdout).toContain(`peer: ${a.peers[0].publicKey}`);
    // nothing twice: the dead node's PostDown ran before our PostUp, one pinned route, one of each route, DNS once
    expect(readOr(s.hooks)).toBe(`postup ${a.ifname}\npostdown ${a.ifname}\npostup ${a.ifname}\n`);
    const now = routes(lab, a.ns);
    expect(count(now, /^192\.0\.2\.2 via/), now).toBe(1);
    expect(count(now, /^0\.0\.0\.0\/1 dev/), now).toBe(1);
    expect(count(now, /^128\.0\.0\.0\/1 dev/), now).toBe(1);
    expect(readdirSync(s.records)).toEqual([`tun.${a.ifname}`]);
    expect(readOr(dns)).toBe('nameserver 10.0.0.53\nsearch example.net\n');
    expect(JSON.parse(readFileSync(recordFile(a.ifname), 'utf8')).pid).toBe(keymeshPid(second));

    // and a clean stop after that leaves nothing
    expect(await second.stop('SIGTERM'), second.output).toBe(0);
    expect(existsSync(recordFile(a.ifname))).toBe(false);
    expect(existsSync(controlSocket(a.ifname))).toBe(false);
    expect(existsSync(uapiSocket(a.ifname))).toBe(false);
    expect(readdirSync(s.records)).toEqual([]);
    expect(routes(lab, a.ns)).not.toMatch(/192\.0\.2\.2 via|0\.0\.0\.0\/1/);
    expect(readOr(s.hooks)).toBe(`postup ${a.ifname}\npostdown ${a.ifname}\npostup ${a.ifname}\npostdown ${a.ifname}\n`);
  }, 90_000);

  it('a name a live node holds: up refuses plainly and touches nothing of it, in its namespace or another', async () => {
    lab = new Lab();
    const s = setUp(lab);
    const { a } = s;
    await startKeymesh(lab, s.b);
    const live = await startKeymesh(lab, a);
    await waitUp(lab, s, live);
    const pid = keymeshPid(live);
    const dns = readOr(path.join(s.records, `tun.${a.ifname}`));
    const other = lab.netns('c');
    for (const ns of [a.ns, other]) {
      const env = ['env', `PATH=${a.env!.PATH}`, `RESOLVCONF_DIR=${a.env!.RESOLVCONF_DIR}`];
      const r = spawnSync('ip', ['netns', 'exec', ns, ...env, process.execPath, KEYMESH_BIN, 'up', a.configFile!], { encoding: 'utf8', timeout: 20_000 });
      expect(r.status, r.stdout + r.stderr).toBe(1);
      expect(r.stderr).toContain(`keymesh: interface ${a.ifname} belongs to a running keymesh node (pid ${pid}); stop it first (keymesh down ${a.ifname})`);
      expect(r.stdout, 'nothing was brought up').toBe('');
      expect(lab.exec(other, ['ip', 'link', 'show'])).not.toContain(a.ifname);
    }
    // the live node kept everything: its hooks' effects, DNS, sockets, record, and its traffic
    expect(readOr(s.hooks)).toBe(`postup ${a.ifname}\n`);
    expect(readOr(path.join(s.records, `tun.${a.ifname}`))).toBe(dns);
    expect(await answers(uapiSocket(a.ifname))).toBe(true);
    expect(await answers(controlSocket(a.ifname))).toBe(true);
    expect(JSON.parse(readFileSync(recordFile(a.ifname), 'utf8')).pid).toBe(pid);
    expect(ping(lab, a.ns, TUNNEL.b)).toBe(true);
    expect(live.running).toBe(true);
  }, 90_000);
});
