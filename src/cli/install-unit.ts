/**
 * `keymesh install-unit`: put the keymesh@.service template (systemd/ in the package) where systemd
 * reads units, with ExecStart and ExecReload pointing at this very installation (absolute paths:
 * systemd's PATH may not hold the node that runs keymesh), and reload systemd if it is running.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { PACKAGE_ROOT } from './version.js';

export const UNIT_NAME = 'keymesh@.service';
export const UNIT_SOURCE = path.join(PACKAGE_ROOT, 'systemd', UNIT_NAME);

/** The unit's text with `/usr/bin/env keymesh` replaced by `node` and `bin/keymesh.js` of this installation. */
export function localizeUnit(text: string, node = process.execPath, bin = path.join(PACKAGE_ROOT, 'bin', 'keymesh.js')): string {
  const quote = (p: string) => (/[\s"'\\]/.test(p) ? `"${p.replace(/(["\\])/g, '\\$1')}"` : p);
  return text.replace(/^(Exec(?:Start|Reload)=)\/usr\/bin\/env keymesh /gm, `$1${quote(node)} ${quote(bin)} `);
}

/** Write the unit into `dir`; returns what to tell the user. */
export async function installUnit(dir: string): Promise<string> {
  let text = localizeUnit(await readFile(UNIT_SOURCE, 'utf8'));
  const notes: string[] = [];
  // ProtectHome=yes would hide a keymesh (or node) installed under /home or /root from itself
  if ([process.execPath, PACKAGE_ROOT].some((p) => /^\/(home|root)(\/|$)/.test(p))) {
    text = text.replace(/^ProtectHome=yes$/m, 'ProtectHome=read-only');
    notes.push('keymesh or node lives under /home or /root: the unit has ProtectHome=read-only instead of yes');
  }
  await mkdir(dir, { recursive: true });
  const dest = path.join(dir, UNIT_NAME);
  await writeFile(dest + '.tmp', text, { mode: 0o644 });
  await rename(dest + '.tmp', dest);
  notes.unshift(`installed ${dest}`);
  if (existsSync('/run/systemd/system')) {
    await promisify(execFile)('systemctl', ['daemon-reload']).then(
      () => notes.push('systemctl daemon-reload: done'),
      (e: Error) => notes.push(`systemctl daemon-reload failed (${e.message.trim()}): run it yourself`),
    );
  } else notes.push('systemd is not running here: run `systemctl daemon-reload` where it is');
  notes.push('then: systemctl enable --now keymesh@wg0   (reads /etc/keymesh/wg0.conf, else /etc/wireguard/wg0.conf)');
  return notes.join('\n') + '\n';
}
