/**
 * atomic-write.ts and SaveConfig through it: a crash between writing and renaming leaves the
 * original configuration intact (and the new one complete beside it); what is written is 0600.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { tmpPathFor, writeFileAtomic } from '../../src/io/atomic-write.js';
import { saveConfig } from '../../src/io/save-config.js';
import { Engine, type Sink } from '../../src/core/engine.js';
import { nobleCrypto } from '../../src/core/crypto.js';
import { encodeKey } from '../../src/config/keys.js';
import { parseWgQuick } from '../../src/config/wgquick.js';

// A rename that fails once, on request: the crash point SaveConfig's own code passes through.
const renameFails = vi.hoisted(() => ({ next: false }));
vi.mock('node:fs/promises', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs/promises')>();
  const rename: typeof fs.rename = async (from, to) => {
    if (renameFails.next) {
      renameFails.next = false;
      throw new Error('simulated crash');
    }
    return fs.rename(from, to);
  };
  return { ...fs, rename, default: { ...fs, rename } };
});

const rnd = (n: number) => new Uint8Array(randomBytes(n));
let dir = '';
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'keymesh-atomic-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const mode = (p: string) => statSync(p).mode & 0o777;
const crash = () => {
  throw new Error('simulated crash');
};

describe('writeFileAtomic', () => {
  it('replaces the file with mode 0600, whatever the old mode and the umask', async () => {
    const f = path.join(dir, 'wg0.conf');
    writeFileSync(f, 'old\n', { mode: 0o644 });
    const umask = process.umask(0);
    try {
      await writeFileAtomic(f, 'new\n');
    } finally {
      process.umask(umask);
    }
    expect(readFileSync(f, 'utf8')).toBe('new\n');
    expect(mode(f)).toBe(0o600);
    expect(existsSync(tmpPathFor(f))).toBe(false);
  });

  it('a crash between write and rename leaves the original intact and the new text complete, 0600, beside it', async () => {
    const f = path.join(dir, 'wg0.conf');
    const old = '[Interface]\nPrivateKey = old\n';
    writeFileSync(f, old, { mode: 0o600 });
    const big = '# ' + 'x'.repeat(1 << 20) + '\n';
    let seen = '';
    await expect(
      writeFileAtomic(f, big, {
        beforeRename: (tmp) => {
          seen = tmp;
          crash();
        },
      }),
    ).rejects.toThrow('simulated crash');
    expect(readFileSync(f, 'utf8')).toBe(old);
    expect(seen).toBe(tmpPathFor(f));
    expect(readFileSync(seen, 'utf8')).toBe(big);
    expect(mode(seen)).toBe(0o600);
    // the next save replaces the leftover and completes
    await writeFileAtomic(f, 'after\n');
    expect(readFileSync(f, 'utf8')).toBe('after\n');
    expect(existsSync(seen)).toBe(false);
  });

  it('never writes through a symlink left at the temporary path', async () => {
    const f = path.join(dir, 'wg0.conf');
    const victim = path.join(dir, 'victim');
    writeFileSync(victim, 'untouched\n');
    symlinkSync(victim, tmpPathFor(f));
    await writeFileAtomic(f, 'secret\n');
    expect(readFileSync(victim, 'utf8')).toBe('untouched\n');
    expect(readFileSync(f, 'utf8')).toBe('secret\n');
  });

  it('a configuration that is a symlink keeps its link; the file it points to is replaced', async () => {
    const real = path.join(dir, 'real.conf');
    const link = path.join(dir, 'wg0.conf');
    writeFileSync(real, 'old\n', { mode: 0o600 });
    symlinkSync(real, link);
    await writeFileAtomic(link, 'new\n');
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readlinkSync(link)).toBe(real);
    expect(readFileSync(real, 'utf8')).toBe('new\n');
  });
});

describe('SaveConfig', () => {
  const sink: Sink = { send: () => undefined, writeTun: () => undefined, event: () => undefined };

  function node(file: string) {
    const privateKey = nobleCrypto.generatePrivateKey(rnd);
    const peerKey = nobleCrypto.publicKey(nobleCrypto.generatePrivateKey(rnd));
    const engine = new Engine(sink, { privateKey, random: rnd });
    engine.upsertPeer({ publicKey: peerKey, endpoint: null, allowedIps: [{ addr: new Uint8Array([10, 0, 0, 2]), cidr: 32 }] }, 0);
    const text = `[Interface]\nPrivateKey = ${encodeKey(privateKey)}\nListenPort = 51820\nAddress = 10.0.0.1/24\nSaveConfig = true\n`;
    writeFileSync(file, text, { mode: 0o600 });
    const cfg = parseWgQuick(text, file);
    const lines: string[] = [];
    const host = { engine, name: 'wg0', listenPort: 51820, log: (l: string) => lines.push(l) };
    return { host, cfg, text, privateKey, peerKey, lines };
  }

  it('writes the running configuration, 0600, and it parses back', async () => {
    const f = path.join(dir, 'wg0.conf');
    const n = node(f);
    await saveConfig(n.host, n.cfg);
    expect(mode(f)).toBe(0o600);
    const back = parseWgQuick(readFileSync(f, 'utf8'), f);
    expect(encodeKey(back.interface.privateKey)).toBe(encodeKey(n.privateKey));
    expect(back.peers.map((p) => encodeKey(p.publicKey))).toEqual([encodeKey(n.peerKey)]);
    expect(back.peers[0].allowedIps.map((a) => a.text)).toEqual(['10.0.0.2/32']);
    expect(n.lines.join('\n')).not.toContain(encodeKey(n.privateKey));
  });

  it('a crash before the rename leaves the old file as it was', async () => {
    const f = path.join(dir, 'wg0.conf');
    const n = node(f);
    renameFails.next = true;
    await expect(saveConfig(n.host, n.cfg)).rejects.toThrow('simulated crash');
    expect(readFileSync(f, 'utf8')).toBe(n.text);
    expect(mode(tmpPathFor(f))).toBe(0o600);
    expect(parseWgQuick(readFileSync(tmpPathFor(f), 'utf8'), f).peers).toHaveLength(1); // complete, not truncated
  });
});

describe('writeFileAtomic, exclusive (the CA key)', () => {
  it('writes a new file with its mode, and never replaces one — not even through a dangling symlink', async () => {
    const f = path.join(dir, 'ca.key');
    await writeFileAtomic(f, 'secret\n', { mode: 0o600, exclusive: true });
    expect(readFileSync(f, 'utf8')).toBe('secret\n');
    expect(mode(f)).toBe(0o600);
    await expect(writeFileAtomic(f, 'other\n', { exclusive: true })).rejects.toMatchObject({ code: 'EEXIST' });
    expect(readFileSync(f, 'utf8')).toBe('secret\n');
    const link = path.join(dir, 'link.key');
    symlinkSync(path.join(dir, 'nowhere'), link);
    await expect(writeFileAtomic(link, 'x', { exclusive: true })).rejects.toMatchObject({ code: 'EEXIST' });
    expect(existsSync(path.join(dir, 'nowhere'))).toBe(false);
    expect(existsSync(tmpPathFor(f))).toBe(false);
  });
});
