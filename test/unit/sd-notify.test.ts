/**
 * sd_notify without systemd: SystemdNotifier (src/io/sd-notify.ts) and the addon's one-datagram
 * send (native/notify.c) against a python3 listener on a path socket and on an abstract one
 * ('@name', as $NOTIFY_SOCKET names them), plus the unit file as `keymesh install-unit` writes it
 * and keymesh-wg's wireguard-go arguments.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SystemdNotifier } from '../../src/io/sd-notify.js';
import { unixDatagramSend } from '../../src/io/native.js';
import { localizeUnit, UNIT_SOURCE } from '../../src/cli/install-unit.js';
import { logPathFor, parseArgs } from '../../src/cli/wg.js';

const hasPython = spawnSync('python3', ['--version']).status === 0;
if (!hasPython) console.warn('sd_notify datagram tests skipped: python3 is not installed (the listener)');

const dir = mkdtempSync(path.join(tmpdir(), 'keymesh-notify-'));
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) c.kill();
  rmSync(dir, { recursive: true, force: true });
});

/** A datagram socket bound to `name` ('@…': abstract) that hands back each message received. */
async function listen(name: string): Promise<{ next: () => Promise<string> }> {
  const py = `
import socket, sys, json
n = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\\0" + n[1:] if n.startswith("@") else n)
print("listening", flush=True)
while True:
    print(json.dumps(s.recv(4096).decode()), flush=True)
`;
  const child = spawn('python3', ['-c', py, name], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  const lines: string[] = [];
  const waiters: Array<() => void> = [];
  let buf = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      lines.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      waiters.shift()?.();
    }
  });
  const line = async () => {
    if (!lines.length) await new Promise<void>((r) => waiters.push(r));
    return lines.shift()!;
  };
  expect(await line()).toBe('listening');
  return { next: async () => JSON.parse(await line()) as string };
}

describe.skipIf(!hasPython)('sd_notify datagrams', () => {
  it('READY, RELOADING (with MONOTONIC_USEC), STOPPING reach a path socket, one datagram each', async () => {
    const sock = path.join(dir, 'notify');
    const l = await listen(sock);
    const env: NodeJS.ProcessEnv = { NOTIFY_SOCKET: sock };
    const n = SystemdNotifier.fromEnv(() => undefined, env)!;
    expect(env.NOTIFY_SOCKET, 'removed from the environment, so children cannot speak for us').toBeUndefined();
    n.ready('wg0 up,\n2 peer(s)');
    expect(await l.next()).toBe('READY=1\nSTATUS=wg0 up, 2 peer(s)\n');
    const before = process.hrtime.bigint() / 1000n;
    n.reloading();
    const m = /^RELOADING=1\nMONOTONIC_USEC=(\d+)\n$/.exec(await l.next());
    expect(m).not.toBeNull();
    expect(BigInt(m![1]) >= before && BigInt(m![1]) <= process.hrtime.bigint() / 1000n).toBe(true);
    n.ready();
    expect(await l.next()).toBe('READY=1\n');
    n.stopping();
    expect(await l.next()).toBe('STOPPING=1\n');
  });

  it('an abstract socket ("@name") gets the datagram too', async () => {
    const name = `@keymesh-test-${randomBytes(6).toString('hex')}`;
    const l = await listen(name);
    expect(unixDatagramSend(name, new TextEncoder().encode('READY=1\n'))).toBe(8);
    expect(await l.next()).toBe('READY=1\n');
  });
});

describe('sd_notify without a listener', () => {
  it('no NOTIFY_SOCKET: no notifier', () => {
    expect(SystemdNotifier.fromEnv(() => undefined, {})).toBeNull();
  });

  it('a socket nobody holds: logged with the errno, never thrown', () => {
    const logged: string[] = [];
    const n = SystemdNotifier.fromEnv((l) => logged.push(l), { NOTIFY_SOCKET: path.join(dir, 'nobody') })!;
    n.ready();
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatch(/cannot tell systemd READY=1 .*ENOENT|no such file/i);
  });

  it('names that are neither absolute nor abstract, or too long, are refused', () => {
    for (const bad of ['relative/path', '', '@', `/${'x'.repeat(200)}`]) {
      expect(() => unixDatagramSend(bad, new Uint8Array(1)), JSON.stringify(bad)).toThrow(/unixDatagramSend/);
    }
  });
});

describe('keymesh install-unit', () => {
  it('points ExecStart and ExecReload at this installation, and changes nothing else', () => {
    const shipped = readFileSync(UNIT_SOURCE, 'utf8');
    expect(shipped).toMatch(/^ExecStart=\/usr\/bin\/env keymesh up %i$/m);
    expect(shipped).toMatch(/^ExecReload=\/usr\/bin\/env keymesh reload %i$/m);
    const local = localizeUnit(shipped, '/opt/node/bin/node', '/opt/keymesh/bin/keymesh.js');
    expect(local).toMatch(/^ExecStart=\/opt\/node\/bin\/node \/opt\/keymesh\/bin\/keymesh.js up %i$/m);
    expect(local).toMatch(/^ExecReload=\/opt\/node\/bin\/node \/opt\/keymesh\/bin\/keymesh.js reload %i$/m);
    const others = (t: string) => t.split('\n').filter((l) => !l.startsWith('Exec'));
    expect(others(local)).toEqual(others(shipped));
    expect(localizeUnit(shipped, '/opt/my node/node', '/k.js')).toMatch(/^ExecStart="\/opt\/my node\/node" \/k.js up %i$/m);
  });
});

describe('keymesh-wg arguments (as wireguard-go takes them)', () => {
  it('INTERFACE, with -f/--foreground before or after', () => {
    expect(parseArgs(['wg0'])).toEqual({ foreground: false, name: 'wg0' });
    expect(parseArgs(['-f', 'wg0'])).toEqual({ foreground: true, name: 'wg0' });
    expect(parseArgs(['wg0', '--foreground'])).toEqual({ foreground: true, name: 'wg0' });
    expect(parseArgs(['--version'])).toEqual({ version: true });
    expect(parseArgs([])).toHaveProperty('error');
    expect(parseArgs(['wg0', 'wg1'])).toHaveProperty('error');
    expect(parseArgs(['../../etc'])).toHaveProperty('error');
    expect(parseArgs(['a-name-longer-than-15'])).toHaveProperty('error');
  });

  it('logs to /var/log/keymesh/NAME.log unless KEYMESH_WG_LOG says otherwise', () => {
    expect(logPathFor('wg0', {})).toBe('/var/log/keymesh/wg0.log');
    expect(logPathFor('wg0', { KEYMESH_WG_LOG: '/tmp/x.log' })).toBe('/tmp/x.log');
  });
});
