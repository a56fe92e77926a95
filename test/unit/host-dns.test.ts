/**
 * host-dns.ts in temporary directories: MeshDNS = direct's backup, in-place write and restore of
 * resolv.conf, the crash record's resolvConf field undone by the next claim (crash-recovery.ts),
 * systemd-resolved's split DNS commands; and the `MeshDNS =` key of the config parser.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, parseWgQuick, serializeWgQuick } from '../../src/config/wgquick.js';
import { NodeRecord, recordPath } from '../../src/io/crash-recovery.js';
import { directUp, marker, nameserversOf, resolvedDown, resolvedPresent, resolvedUp, restoreResolvConf, type HostDnsPaths } from '../../src/io/host-dns.js';

let dir = '';
let paths: HostDnsPaths;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'keymesh-hostdns-'));
  paths = { resolvConf: path.join(dir, 'resolv.conf'), stateDir: path.join(dir, 'state') };
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const NAME = 'kmdnstest0';
const ORIGINAL = '# from DHCP\nnameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch corp.example\noptions edns0\n';

describe('MeshDNS = direct: resolv.conf', () => {
  it('backs the file up, writes ours in place (same inode), and forwards to the nameservers that were there', async () => {
    writeFileSync(paths.resolvConf, ORIGINAL);
    const inode = statSync(paths.resolvConf).ino;
    let seenBefore = '';
    const { upstreams, record } = await directUp(NAME, {
      servers: ['10.99.0.1', 'fd99::1'],
      domain: 'mesh',
      search: ['corp.example'],
      paths,
      beforeWrite: async (r) => {
        // the record is written while the file is still the old one: a crash after this restores
        seenBefore = readFileSync(r.file, 'utf8');
      },
    });
    expect(seenBefore).toBe(ORIGINAL);
    expect(upstreams).toEqual(['192.0.2.53', '2001:db8::53']);
    expect(record).toEqual({ file: paths.resolvConf, backup: path.join(paths.stateDir, `${NAME}.resolv.conf`) });
    expect(readFileSync(record.backup, 'utf8')).toBe(ORIGINAL);
    expect(readFileSync(paths.resolvConf, 'utf8')).toBe(`${marker(NAME)}\nnameserver 10.99.0.1\nnameserver fd99::1\nsearch mesh corp.example\n`);
    expect(statSync(paths.resolvConf).ino, 'written in place, not renamed over (a bind mount stays)').toBe(inode);
    expect(await restoreResolvConf(NAME, record)).toBe(`${paths.resolvConf} restored`);
    expect(readFileSync(paths.resolvConf, 'utf8')).toBe(ORIGINAL);
    expect(statSync(paths.resolvConf).ino).toBe(inode);
    expect(existsSync(record.backup)).toBe(false);
  });

  it('a file someone else rewrote meanwhile is left alone at restore', async () => {
    writeFileSync(paths.resolvConf, ORIGINAL);
    const { record } = await directUp(NAME, { servers: ['10.99.0.1'], domain: 'mesh', search: [], paths });
    writeFileSync(paths.resolvConf, 'nameserver 198.51.100.1\n');
    expect(await restoreResolvConf(NAME, record)).toContain('changed by someone else');
    expect(readFileSync(paths.resolvConf, 'utf8')).toBe('nameserver 198.51.100.1\n');
    expect(existsSync(record.backup)).toBe(false);
  });

  it('a file still ours from a run that never restored it: the backup is what was there (not our file backed up)', async () => {
    writeFileSync(paths.resolvConf, ORIGINAL);
    await directUp(NAME, { servers: ['10.99.0.1'], domain: 'mesh', search: [], paths });
    const again = await directUp(NAME, { servers: ['10.99.0.1'], domain: 'mesh', search: [], paths });
    expect(again.upstreams).toEqual(['192.0.2.53', '2001:db8::53']);
    expect(readFileSync(again.record.backup, 'utf8')).toBe(ORIGINAL);
    // ours, and no backup at all: refuse rather than lose the host's configuration
    rmSync(again.record.backup);
    await expect(directUp(NAME, { servers: ['10.99.0.1'], domain: 'mesh', search: [], paths })).rejects.toThrow(/no backup of what was there before/);
  });

  it('no resolv.conf at all: written, and left empty on restore (there was nothing to give back)', async () => {
    const { upstreams, record } = await directUp(NAME, { servers: ['10.99.0.1'], domain: 'mesh', search: [], paths });
    expect(upstreams).toEqual([]);
    expect(readFileSync(paths.resolvConf, 'utf8')).toContain('nameserver 10.99.0.1');
    await restoreResolvConf(NAME, record);
    expect(readFileSync(paths.resolvConf, 'utf8')).toBe('');
  });

  it('nameserversOf: in order, scoped addresses unscoped, junk and our own address left out', () => {
    expect(nameserversOf('nameserver 10.0.0.1\n#nameserver 10.0.0.9\nnameserver fe80::1%eth0\nnameserver bogus\n  nameserver 10.99.0.1\nnameserver 10.0.0.1\n', ['10.99.0.1'])).toEqual(['10.0.0.1', 'fe80::1']);
  });
});

describe('MeshDNS = direct: after a crash', () => {
  it("the next claim of the name writes the dead node's backup back (same network namespace only)", async () => {
    const controlDir = path.join(dir, 'keymesh');
    const uapiDir = path.join(dir, 'wireguard');
    mkdirSync(controlDir);
    mkdirSync(uapiDir);
    writeFileSync(paths.resolvConf, ORIGINAL);
    const { record } = await directUp(NAME, { servers: ['10.99.0.1'], domain: 'mesh', search: [], paths });
    const child = spawn(process.execPath, ['-e', '0']);
    const deadPid = child.pid!;
    await new Promise((r) => child.once('exit', r));
    const netns = readlinkSync('/proc/self/ns/net');
    const file = recordPath(NAME, controlDir);
    const dead = (ns: string) => JSON.stringify({ version: 1, pid: deadPid, startTime: '1', netns: ns, dns: false, pinned: [], postDown: false, resolvConf: record });
    // another namespace's file is not ours to touch
    writeFileSync(file, dead('net:[1]'));
    const log: string[] = [];
    let r = await NodeRecord.claim(NAME, { log: (l) => log.push(l), postDown: [], uapiDir, controlDir });
    expect(log.join('\n')).toContain('left alone');
    expect(readFileSync(paths.resolvConf, 'utf8')).toContain(marker(NAME));
    await r.release();
    writeFileSync(file, dead(netns));
    log.length = 0;
    r = await NodeRecord.claim(NAME, { log: (l) => log.push(l), postDown: [], uapiDir, controlDir });
    expect(log).toEqual([`${NAME}: cleaned up after a node (pid ${deadPid}) that did not stop cleanly: ${paths.resolvConf} restored`]);
    expect(readFileSync(paths.resolvConf, 'utf8')).toBe(ORIGINAL);
    // our own record carries the field from when it is set
    await r.update({ resolvConf: record });
    expect(JSON.parse(readFileSync(file, 'utf8')).resolvConf).toEqual(record);
    await r.release();
  });
});

describe('MeshDNS = auto: systemd-resolved', () => {
  it('present only with its socket and resolvectl on PATH; split DNS set and reverted with resolvectl', async () => {
    const bin = path.join(dir, 'bin');
    mkdirSync(bin);
    const socket = path.join(dir, 'io.systemd.Resolve');
    expect(resolvedPresent({ socket, pathEnv: bin })).toBe(false);
    writeFileSync(socket, '');
    expect(resolvedPresent({ socket, pathEnv: bin }), 'no resolvectl').toBe(false);
    writeFileSync(path.join(bin, 'resolvectl'), '#!/bin/sh\n', { mode: 0o755 });
    expect(resolvedPresent({ socket, pathEnv: bin })).toBe(true);
    const ran: string[] = [];
    const exec = async (cmd: string, args: string[]) => void ran.push([cmd, ...args].join(' '));
    await resolvedUp('wg0', ['10.99.0.1', 'fd99::1'], 'mesh', exec, ['99.10.in-addr.arpa']);
    await resolvedDown('wg0', exec);
    expect(ran).toEqual(['resolvectl dns wg0 10.99.0.1 fd99::1', 'resolvectl domain wg0 ~mesh ~99.10.in-addr.arpa', 'resolvectl revert wg0']);
  });
});

describe('MeshDNS = in the config', () => {
  const KEY = 'yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=';
  const conf = (v: string) => `[Interface]\nPrivateKey = ${KEY}\nMeshDNS = ${v}\n`;
  it('auto, direct, off (any case); absent means auto; SaveConfig keeps it', () => {
    expect(parseWgQuick(conf('Direct'), 'wg0.conf').interface.meshDns).toBe('direct');
    expect(parseWgQuick(conf('off'), 'wg0.conf').interface.meshDns).toBe('off');
    expect(parseWgQuick(`[Interface]\nPrivateKey = ${KEY}\n`, 'wg0.conf').interface.meshDns).toBeUndefined();
    const c = parseWgQuick(conf('auto'), 'wg0.conf');
    expect(parseWgQuick(serializeWgQuick(c), 'wg0.conf').interface.meshDns).toBe('auto');
  });
  it('anything else is an error at file:line', () => {
    expect(() => parseWgQuick(conf('yes'), 'wg0.conf')).toThrow(ConfigError);
    expect(() => parseWgQuick(conf('yes'), 'wg0.conf')).toThrow('wg0.conf:3: MeshDNS: "yes" is none of auto, direct, off');
  });
});
