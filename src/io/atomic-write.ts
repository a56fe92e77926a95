/**
 * Replace a file so that a crash at any moment leaves either the old content or the new, never a
 * truncated mix: write a temporary file beside it (same directory, so the rename cannot cross a
 * file system), fsync it, rename it over the original (atomic on POSIX), then fsync the directory
 * so the rename itself is on disk. A crash before the rename leaves the original intact and at
 * most the temporary file behind, which the next write replaces.
 *
 * The temporary file is created with O_EXCL (never through a symlink someone left there) and its
 * mode is set before a byte of content is written, so text holding a private key is never readable
 * by others, not even for a moment. A target that is a symlink is followed: the file it points to
 * is replaced, and the link stays.
 *
 * May touch: the target file, `TARGET.keymesh-tmp` beside it, and their directory.
 */
import { link, open, realpath, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';

export interface AtomicWriteOptions {
  /** The file's mode (default 0600). */
  mode?: number;
  /**
   * Never replace: the new file is linked into place instead of renamed, which fails with EEXIST
   * if anything (even a dangling symlink) is already there — for files such as a CA key that must
   * not be overwritten, where a check before writing would leave a window.
   */
  exclusive?: boolean;
  /** For tests: runs after the temporary file is complete and synced, before the rename. */
  beforeRename?: (tmp: string) => void | Promise<void>;
}

/** The temporary file writeFileAtomic uses for `file` (a leftover one is replaced by the next write). */
export function tmpPathFor(file: string): string {
  return `${file}.keymesh-tmp`;
}

/** Write `data` to `file` atomically (see the top of this file). */
export async function writeFileAtomic(file: string, data: string | Uint8Array, opts: AtomicWriteOptions = {}): Promise<void> {
  const mode = opts.mode ?? 0o600;
  const target = opts.exclusive ? file : await realpath(file).catch(() => file);
  const old = await stat(target).catch(() => null);
  const tmp = tmpPathFor(target);
  await unlink(tmp).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw e;
  });
  const fh = await open(tmp, 'wx', mode);
  try {
    await fh.chmod(mode); // open's mode passed through the umask
    // Keep the owner of the file being replaced (root writes it, but it may belong to another user).
    if (old && process.getuid?.() === 0) await fh.chown(old.uid, old.gid);
    await fh.writeFile(data);
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await fh.close();
  await opts.beforeRename?.(tmp);
  if (opts.exclusive) {
    try {
      await link(tmp, target);
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
  } else await rename(tmp, target);
  await syncDirectory(path.dirname(target));
}

/** fsync a directory, so that a rename or unlink in it survives a power loss. */
export async function syncDirectory(dir: string): Promise<void> {
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}
