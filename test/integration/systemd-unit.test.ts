/**
 * The keymesh@.service contract, without systemd: the unit's own ExecStart and ExecReload lines
 * (parsed from systemd/keymesh@.service, %i replaced) run as written in a network namespace, with
 * `keymesh` found through PATH as systemd would find it, its configuration found by name, and
 * $NOTIFY_SOCKET naming a datagram socket a small python3 listener holds, as systemd does:
 *
 *   ExecStart  ──▶ READY=1      (the interface and its UAPI socket exist by then)
 *   ExecReload ──▶ RELOADING=1, READY=1   (a refused reload too: the node runs on)
 *   SIGTERM    ──▶ STOPPING=1, exit 0
 *
 * Where systemd runs (PID 1, /run/systemd/system), the real thing as well: install-unit into
 * /run/systemd/system, systemctl start, reload and stop. That part is skipped elsewhere.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { canRunNetns, KEYMESH_BIN, Lab, REPO, sh, uapiSocket, waitFor, wgGenKeypair, type Proc } from '../../netns/lib.js';

const UNIT = path.join(REPO, 'systemd', 'keymesh@.service');
const skip = canRunNetns() ?? (spawnSync('which', ['python3']).status === 0 ? null : 'python3 is not installed (the fake NOTIFY_SOCKET listener)');
const noSystemd = skip ?? (existsSync('/run/systemd/system') ? null : 'systemd is not running on this machine');
if (noSystemd) console.warn(`systemd unit test against a real systemd skipped: ${noSystemd}`);

/** Print each datagram on the socket as a JSON line, with whether the interface and UAPI socket exist as it arrives. */
const LISTENER = `
import json, os, socket, subprocess, sys
path, ifname = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
print(json.dumps({"listening": True}), flush=True)
while True:
    msg = s.recv(4096).decode()
    link = subprocess.run(["ip", "link", "show", "dev", ifname], capture_output=True).returncode == 0
    print(json.dumps({"msg": msg, "link": link, "uapi": os.path.exists("/var/run/wireguard/%s.sock" % ifname)}), flush=True)
`;

interface Note {
  msg: string;
  link: boolean;
  uapi: boolean;
}

/** The unit's [Service] settings (the last of each key, as systemd reads a reset-free unit). */
function unitSettings(text: string): Map<string, string> {
  const out = new Map<string, string>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const s = /^\[(.+)\]$/.exec(line);
    if (s) section = s[1];
    else if (section === 'Service') {
      const eq = line.indexOf('=');
      out.set(line.slice(0, eq), line.slice(eq + 1));
    }
  }
  return out;
}

/** An Exec line as argv: %i replaced, split on blanks (the unit uses no quoting). */
function execArgv(line: string | undefined, instance: string): string[] {
  expect(line, 'Exec line present').toBeTruthy();
  expect(line).not.toMatch(/["'\\]/);
  return line!.replaceAll('%i', instance).split(/\s+/).filter(Boolean);
}

let lab: Lab | null = null;
afterEach(async () => {
  await lab?.cleanup();
  lab = null;
});

describe.skipIf(skip)('keymesh@.service', () => {
  it('ExecStart and ExecReload as written: READY=1 once the interface is up, RELOADING=1/READY=1 around reloads, STOPPING=1 on SIGTERM', async () => {
    lab = new Lab();
    const unit = unitSettings(readFileSync(UNIT, 'utf8'));
    expect(unit.get('Type')).toBe('notify');
    const ns = lab.netns('s');
    const name = lab.name('s');
    // `keymesh` through PATH (as ExecStart's /usr/bin/env finds it), the configuration by name:
    // not in the first directory, so the second one (the /etc/wireguard of a real system) is used
    const bin = path.join(lab.dir, 'bin');
    mkdirSync(bin);
    symlinkSync(KEYMESH_BIN, path.join(bin, 'keymesh'));
    const [first, second] = [path.join(lab.dir, 'etc-keymesh'), path.join(lab.dir, 'etc-wireguard')];
    mkdirSync(first);
    mkdirSync(second);
    const conf = path.join(second, `${name}.conf`);
    const good = `[Interface]\nPrivateKey = ${wgGenKeypair().privateKey}\nAddress = 10.9.0.1/24\nListenPort = 51821\n`;
    writeFileSync(conf, good, { mode: 0o600 });
    const notifySocket = path.join(lab.dir, 'notify');
    const listener = lab.spawn(ns, ['python3', '-c', LISTENER, notifySocket, name], 'notify listener');
    await waitFor('the notify listener', () => listener.output.includes('"listening"'), 5000);
    const notes = (): Note[] =>
      listener.output
        .split('\n')
        .filter((l) => l.startsWith('{"msg"'))
        .map((l) => JSON.parse(l) as Note);
    const env = ['env', `PATH=${bin}:${path.dirname(process.execPath)}:${process.env.PATH}`, `KEYMESH_CONFIG_DIRS=${first}:${second}`];

    const start = execArgv(unit.get('ExecStart'), name);
    const node: Proc = lab.spawn(ns, [...env, `NOTIFY_SOCKET=${notifySocket}`, ...start], 'ExecStart');
    await waitFor('READY=1', () => {
      if (!node.running) throw new Error(`ExecStart exited (${node.exitCode}):\n${node.output}`);
      return notes().length > 0;
    }, 20_000);
    const [ready] = notes();
    expect(ready.msg).toMatch(/^READY=1\n/);
    expect(ready.msg).toMatch(/\nSTATUS=.+\n/);
    expect(ready, 'the interface and its UAPI socket exist when READY=1 arrives').toMatchObject({ link: true, uapi: true });
    expect(lab.exec(ns, ['ip', '-o', '-4', 'addr', 'show', 'dev', name])).toContain('10.9.0.1/24');

    const reload = execArgv(unit.get('ExecReload'), name);
    const ok = spawnSync('ip', ['netns', 'exec', ns, ...env, ...reload], { encoding: 'utf8' });
    expect(ok.status, ok.stderr + node.output).toBe(0);
    await waitFor('RELOADING=1 then READY=1', () => notes().length >= 3, 5000);
    expect(notes()[1].msg).toMatch(/^RELOADING=1\nMONOTONIC_USEC=\d+\n$/);
    expect(notes()[2].msg).toBe('READY=1\n');

    // a broken file: the reload is refused with file:line, and the node says it is ready again
    writeFileSync(conf, good + 'Bogus = 1\n');
    const bad = spawnSync('ip', ['netns', 'exec', ns, ...env, ...reload], { encoding: 'utf8' });
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toContain(`${conf}:5`);
    await waitFor('RELOADING=1 then READY=1 after the refused reload', () => notes().length >= 5, 5000);
    expect(notes().slice(3).map((n) => n.msg.split('\n')[0])).toEqual(['RELOADING=1', 'READY=1']);

    expect(await node.stop('SIGTERM', 10_000)).toBe(0);
    await waitFor('STOPPING=1', () => notes().length >= 6, 5000);
    expect(notes()[5].msg).toBe('STOPPING=1\n');
    expect(notes()).toHaveLength(6);
    expect(existsSync(uapiSocket(name))).toBe(false);
  }, 60_000);

  it.skipIf(noSystemd)('under the real systemd: start (active once READY=1), reload, stop', () => {
    const name = `kmsd${process.pid % 100000}`;
    const conf = `/etc/keymesh/${name}.conf`;
    const unitDir = '/run/systemd/system'; // runtime units: gone at the next boot whatever happens
    const systemctl = (...args: string[]) => spawnSync('systemctl', args, { encoding: 'utf8' });
    try {
      mkdirSync('/etc/keymesh', { recursive: true });
      writeFileSync(conf, `[Interface]\nPrivateKey = ${wgGenKeypair().privateKey}\nAddress = 10.9.1.1/24\n`, { mode: 0o600 });
      sh(process.execPath, [KEYMESH_BIN, 'install-unit', '--dir', unitDir]);
      const started = systemctl('start', `keymesh@${name}`);
      expect(started.status, started.stderr).toBe(0);
      expect(systemctl('is-active', `keymesh@${name}`).stdout.trim()).toBe('active');
      expect(existsSync(uapiSocket(name))).toBe(true);
      expect(systemctl('reload', `keymesh@${name}`).status).toBe(0);
      expect(systemctl('is-active', `keymesh@${name}`).stdout.trim()).toBe('active');
      expect(systemctl('stop', `keymesh@${name}`).status).toBe(0);
      expect(existsSync(uapiSocket(name))).toBe(false);
    } finally {
      systemctl('stop', `keymesh@${name}`);
      rmSync(conf, { force: true });
      rmSync(path.join(unitDir, 'keymesh@.service'), { force: true });
      systemctl('daemon-reload');
    }
  }, 60_000);
});
