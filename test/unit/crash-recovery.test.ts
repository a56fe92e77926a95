/**
 * crash-recovery.ts without a network: the claim on a name, in temporary directories, against
 * sockets that answer (a live owner: refused, nothing touched) or do not (a dead one: removed),
 * and records of dead and live owners. The netns test (test/integration/crash.test.ts) has the
 * real kill -9.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NodeRecord, recordPath } from '../../src/io/crash-recovery.js';

let dir = '';
let uapiDir = '';
let controlDir = '';
const servers: net.Server[] = [];
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'keymesh-claim-'));
  uapiDir = path.join(dir, 'wireguard');
  controlDir = path.join(dir, 'keymesh');
  mkdirSync(uapiDir);
  mkdirSync(controlDir);
});
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
  rmSync(dir, { recursive: true, force: true });
});

// An interface name no host has.
const NAME = 'kmclaimtest0';

/** A socket file whose owner is gone: a child binds it and is killed, so nothing unlinks it. */
async function staleSocket(p: string): Promise<void> {
  const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(p)}, () => process.kill(process.pid, 'SIGKILL'))`]);
  await new Promise((r) => child.once('exit', r));
}

async function liveSocket(p: string): Promise<void> {
  const s = net.createServer((c) => c.destroy());
  servers.push(s);
  await new Promise<void>((r) => s.listen(p, () => r()));
}

function claim(log: string[] = [], postDown: string[] = []) {
  return NodeRecord.claim(NAME, { log: (l) => log.push(l), postDown, uapiDir, controlDir });
}

const uapi = () => path.join(uapiDir, `${NAME}.sock`);
const control = () => path.join(controlDir, `${NAME}.sock`);

describe('NodeRecord.claim', () => {
  it('a fresh name: writes a record (0600, no keys) and release() removes it', async () => {
    const log: string[] = [];
    const r = await claim(log);
    const file = recordPath(NAME, controlDir);
    const data = JSON.parse(readFileSync(file, 'utf8'));
    expect(data).toMatchObject({ version: 1, pid: process.pid, dns: false, pinned: [], postDown: true });
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(log).toEqual([]);
    await r.update({ dns: true, pinned: [['-4', 'route', 'del', '192.0.2.9/32']] });
    expect(JSON.parse(readFileSync(file, 'utf8'))).toMatchObject({ dns: true, pinned: [['-4', 'route', 'del', '192.0.2.9/32']] });
    await r.release();
    expect(existsSync(file)).toBe(false);
  });

  it('stale UAPI and control sockets (connect refused) are removed', async () => {
    await staleSocket(uapi());
    await staleSocket(control());
    expect(existsSync(uapi()) && existsSync(control())).toBe(true);
    const log: string[] = [];
    const r = await claim(log);
    expect(existsSync(uapi())).toBe(false);
    expect(existsSync(control())).toBe(false);
    expect(log.join('\n')).toContain(`stale socket ${uapi()}; stale socket ${control()}`);
    await r.release();
  });

  it('a socket that answers is a live owner: refused, and nothing is touched', async () => {
    for (const which of [uapi, control]) {
      await liveSocket(which());
      const hookRan = path.join(dir, 'hook-ran');
      await expect(claim([], [`touch ${hookRan}`])).rejects.toThrow(`interface ${NAME} is served by another running process (${which()} accepts connections)`);
      expect(existsSync(which())).toBe(true);
      expect(existsSync(recordPath(NAME, controlDir))).toBe(false);
      expect(existsSync(hookRan)).toBe(false);
      for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
    }
  });

  it('a live recorded owner is refused by its pid, even before it has sockets', async () => {
    const first = await claim();
    const file = recordPath(NAME, controlDir);
    // the record as another live process would have written it: this test's parent process
    const own = JSON.parse(readFileSync(file, 'utf8'));
    const stat = readFileSync(`/proc/${process.ppid}/stat`, 'utf8');
    const startTime = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    writeFileSync(file, JSON.stringify({ ...own, pid: process.ppid, startTime }));
    await expect(claim()).rejects.toThrow(`interface ${NAME} belongs to a running keymesh node (pid ${process.ppid}); stop it first (keymesh down ${NAME})`);
    expect(JSON.parse(readFileSync(file, 'utf8')).pid).toBe(process.ppid);
    await first.release();
  });

  it("a dead owner's record: its PostDown runs once, and the record becomes ours", async () => {
    const child = spawn(process.execPath, ['-e', '0']);
    const deadPid = child.pid!;
    await new Promise((r) => child.once('exit', r));
    const file = recordPath(NAME, controlDir);
    writeFileSync(file, JSON.stringify({ version: 1, pid: deadPid, startTime: '1', netns: 'net:[1]', dns: false, pinned: [], postDown: true }));
    const marks = path.join(dir, 'marks');
    const log: string[] = [];
    const r = await claim(log, [`echo postdown %i >> ${marks}`]);
    expect(readFileSync(marks, 'utf8')).toBe(`postdown ${NAME}\n`);
    expect(log).toEqual([`${NAME}: cleaned up after a node (pid ${deadPid}) that did not stop cleanly: ran the 1 PostDown hook(s) it never ran`]);
    expect(log.join('')).not.toContain('echo postdown'); // hooks' text is not logged
    expect(JSON.parse(readFileSync(file, 'utf8')).pid).toBe(process.pid);
    await r.release();
  });

  it('a dead owner that had run its PostDown (killed late in its stop) does not get it run again', async () => {
    const file = recordPath(NAME, controlDir);
    writeFileSync(file, JSON.stringify({ version: 1, pid: 2 ** 22 + 1, startTime: '1', netns: '', dns: false, pinned: [], postDown: false }));
    const marks = path.join(dir, 'marks');
    const r = await claim([], [`echo postdown >> ${marks}`]);
    expect(existsSync(marks)).toBe(false);
    await r.release();
  });

  it('an unreadable record is ignored (a live owner would still answer on its sockets)', async () => {
    writeFileSync(recordPath(NAME, controlDir), '{"version": 1, "pid": ');
    const r = await claim();
    expect(JSON.parse(readFileSync(recordPath(NAME, controlDir), 'utf8')).pid).toBe(process.pid);
    await r.release();
  });
});
