/**
 * `keymesh up NAME`: which file a bare name means (/etc/keymesh, then /etc/wireguard, as wg-quick
 * looks in /etc/wireguard), and that a path is still a path. The directories are temporary ones
 * (the same lookup with KEYMESH_CONFIG_DIRS); the last test runs the CLI itself.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CONFIG_DIRS, configDirs, findConfig, isBareName } from '../../src/cli/config-path.js';

const root = mkdtempSync(path.join(tmpdir(), 'keymesh-config-path-'));
const keymeshDir = path.join(root, 'keymesh');
const wireguardDir = path.join(root, 'wireguard');
mkdirSync(keymeshDir);
mkdirSync(wireguardDir);
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('keymesh up NAME: where the configuration is looked for', () => {
  const dirs = [keymeshDir, wireguardDir];

  it('the default places are /etc/keymesh then /etc/wireguard; KEYMESH_CONFIG_DIRS replaces them', () => {
    expect(CONFIG_DIRS).toEqual(['/etc/keymesh', '/etc/wireguard']);
    expect(configDirs({})).toEqual(CONFIG_DIRS);
    expect(configDirs({ KEYMESH_CONFIG_DIRS: '/a:/b' })).toEqual(['/a', '/b']);
    expect(configDirs({ KEYMESH_CONFIG_DIRS: '' })).toEqual(CONFIG_DIRS);
  });

  it('a name only in the second directory is found there', async () => {
    writeFileSync(path.join(wireguardDir, 'wg1.conf'), '');
    expect(await findConfig('wg1', dirs)).toBe(path.join(wireguardDir, 'wg1.conf'));
  });

  it('the first directory wins when both have the name', async () => {
    writeFileSync(path.join(keymeshDir, 'wg2.conf'), '');
    writeFileSync(path.join(wireguardDir, 'wg2.conf'), '');
    expect(await findConfig('wg2', dirs)).toBe(path.join(keymeshDir, 'wg2.conf'));
  });

  it('a name found nowhere: the error lists every place tried, in order', async () => {
    await expect(findConfig('wg9', dirs)).rejects.toThrow(`no configuration for wg9: tried ${path.join(keymeshDir, 'wg9.conf')}, ${path.join(wireguardDir, 'wg9.conf')}`);
  });

  it('paths are paths: with a slash, or ending in .conf, or too long for an interface name', async () => {
    for (const p of ['./wg1', 'wg1.conf', '/tmp/x/wg1.conf', 'a-name-longer-than-15']) {
      expect(isBareName(p), p).toBe(false);
      expect(await findConfig(p, dirs)).toBe(p);
    }
    expect(isBareName('wg0')).toBe(true);
    expect(isBareName('home.lan')).toBe(true); // a dot is allowed in interface names, as in wg-quick
  });

  it('the CLI: `keymesh up NAME` with nothing to find says where it looked and exits 1', () => {
    const bin = path.resolve(import.meta.dirname, '../../bin/keymesh.js');
    const r = spawnSync(process.execPath, [bin, 'up', 'wg9'], { encoding: 'utf8', env: { ...process.env, KEYMESH_CONFIG_DIRS: dirs.join(':') } });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`tried ${path.join(keymeshDir, 'wg9.conf')}, ${path.join(wireguardDir, 'wg9.conf')}`);
  });
});
