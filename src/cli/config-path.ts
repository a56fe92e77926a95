/**
 * Which file `keymesh up ARG` reads. A bare interface name (`wg0`: no slash, no `.conf`) is looked
 * up as wg-quick looks up its own: /etc/keymesh/wg0.conf first, then /etc/wireguard/wg0.conf, so a
 * node configured for wg-quick comes up under keymesh unchanged. Anything else is a path.
 * KEYMESH_CONFIG_DIRS (directories separated by ':') replaces the two directories (for tests, or
 * a system that keeps configurations elsewhere).
 */
import { access } from 'node:fs/promises';
import path from 'node:path';

export const CONFIG_DIRS = ['/etc/keymesh', '/etc/wireguard'];

const BARE_NAME = /^[a-zA-Z0-9_=+.-]{1,15}$/;

export function configDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  const dirs = env.KEYMESH_CONFIG_DIRS?.split(':').filter(Boolean);
  return dirs?.length ? dirs : CONFIG_DIRS;
}

/** Is this argument an interface name to look up (rather than a path)? */
export function isBareName(arg: string): boolean {
  return BARE_NAME.test(arg) && !arg.endsWith('.conf') && arg !== '.' && arg !== '..';
}

/**
 * The configuration file for `arg`: a path as given, or the first NAME.conf found in `dirs`.
 * Throws, naming every place tried, when a bare name is found nowhere.
 */
export async function findConfig(arg: string, dirs: string[] = configDirs()): Promise<string> {
  if (!isBareName(arg)) return arg;
  const tried = dirs.map((d) => path.join(d, `${arg}.conf`));
  for (const p of tried) {
    // existence only: a file we may not read is still the one meant, and reading it says why not
    if (await access(p).then(() => true, () => false)) return p;
  }
  throw new Error(`no configuration for ${arg}: tried ${tried.join(', ')} (or give a path: keymesh up ./${arg}.conf)`);
}
