/**
 * The host's default gateway: where NAT-PMP and PCP requests go (RFC 6886 §3: "clients always
 * send their NAT-PMP requests to their default gateway"). Read from `ip -j route show default`
 * (`ip -j -6 …` for IPv6), or from /proc/net/route when iproute2 is missing (IPv4 only).
 *
 * The parsers are pure and take the text; findDefaultGateway runs the command asynchronously
 * (bounded by a timeout) so that looking never blocks the caller.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { formatAddress } from '../../core/ip.js';

export interface DefaultGateway {
  /** The gateway's address; an IPv6 link-local one carries its zone ("fe80::1%eth0"), as a socket needs it. */
  address: string;
  /** The interface the default route leaves through, when known. */
  dev: string | null;
  family: 4 | 6;
  metric: number;
}

/**
 * `ip -j route show default` (or `ip -j -6 …`): the default routes with a gateway, lowest metric
 * first. Null if the text is not iproute2's JSON.
 */
export function parseIpRouteJson(text: string, family: 4 | 6): DefaultGateway[] | null {
  let routes: unknown;
  try {
    routes = JSON.parse(text);
  } catch {
    return null;
  }
  if (!Array.isArray(routes)) return null;
  const out: DefaultGateway[] = [];
  for (const r of routes as Array<Record<string, unknown>>) {
    if (typeof r?.gateway !== 'string' || (r.dst !== undefined && r.dst !== 'default')) continue;
    const dev = typeof r.dev === 'string' ? r.dev : null;
    const linkLocal = family === 6 && /^fe[89ab]/i.test(r.gateway);
    out.push({
      address: linkLocal && dev && !r.gateway.includes('%') ? `${r.gateway}%${dev}` : r.gateway,
      dev,
      family,
      metric: typeof r.metric === 'number' ? r.metric : 0,
    });
  }
  return out.sort((a, b) => a.metric - b.metric);
}

const RTF_UP = 0x1;
const RTF_GATEWAY = 0x2;

/**
 * /proc/net/route: IPv4 routes, one a line after a header, addresses as 8 hex digits of the
 * 32-bit value in host (little-endian) order. Default routes (destination and mask 0, flags up
 * and gateway), lowest metric first.
 */
export function parseProcNetRoute(text: string): DefaultGateway[] {
  const out: DefaultGateway[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const [dev, dest, gw, flagsHex, , , metric, mask] = f;
    const flags = parseInt(flagsHex, 16);
    if (dest !== '00000000' || mask !== '00000000' || !(flags & RTF_UP) || !(flags & RTF_GATEWAY)) continue;
    if (!/^[0-9A-Fa-f]{8}$/.test(gw)) continue;
    const n = parseInt(gw, 16);
    const bytes = new Uint8Array([n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24]);
    out.push({ address: formatAddress(bytes), dev, family: 4, metric: Number(metric) || 0 });
  }
  return out.sort((a, b) => a.metric - b.metric);
}

/** Runs a command and resolves with its standard output, or null if it fails or times out. */
export type RunCommand = (cmd: string, args: string[]) => Promise<string | null>;

const runCommand: RunCommand = (cmd, args) =>
  new Promise((resolve) => {
    execFile(cmd, args, { timeout: 2000, encoding: 'utf8' }, (err, stdout) => resolve(err ? null : stdout));
  });

const readProcRoute = () => readFile('/proc/net/route', 'utf8').catch(() => null);

/** The default gateway of one family (lowest metric), or null when there is none. */
export async function findDefaultGateway(family: 4 | 6 = 4, run: RunCommand = runCommand, readRoute: () => Promise<string | null> = readProcRoute): Promise<DefaultGateway | null> {
  const json = await run('ip', ['-j', ...(family === 6 ? ['-6'] : []), 'route', 'show', 'default']);
  const fromIp = json === null ? null : parseIpRouteJson(json, family);
  if (fromIp) return fromIp[0] ?? null;
  if (family === 6) return null;
  const text = await readRoute();
  return text === null ? null : (parseProcNetRoute(text)[0] ?? null);
}
