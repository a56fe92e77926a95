/**
 * A small laboratory of hosts in network namespaces, for integration tests, benchmarks and the
 * demo. Everything a Lab creates — namespaces (and with them their veths and TUN devices),
 * processes, files — is registered and torn down by `cleanup()`, which tests call in afterAll and
 * which also runs on process exit, so a failing or interrupted run leaves nothing behind.
 *
 * Names are unique per lab (`km<6 hex>-<role>`), because interface names and the UAPI socket
 * directory (/var/run/wireguard) are shared by the whole machine.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = (() => {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  return dir;
})();
export const KEYMESH_BIN = path.join(REPO, 'bin', 'keymesh.js');

const live = new Set<Lab>();
process.on('exit', () => {
  for (const lab of live) lab.cleanupSync();
});
// An interrupted run (Ctrl-C, a CI timeout) must not leave namespaces or daemons behind: Node's
// default signal action would skip the 'exit' handlers, so tear down and exit as the signal would.
for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const) {
  process.once(signal, () => {
    for (const lab of live) lab.cleanupSync();
    process.exit(code);
  });
}

export function sh(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
}

export function wgGenKeypair(): { privateKey: string; publicKey: string } {
  const privateKey = sh('wg', ['genkey']).trim();
  const publicKey = sh('wg', ['pubkey'], privateKey).trim();
  return { privateKey, publicKey };
}

export function canRunNetns(): string | null {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, TUN devices)';
  if (!existsSync('/dev/net/tun')) return '/dev/net/tun is missing';
  try {
    sh('ip', ['-V']);
  } catch {
    return 'iproute2 (`ip`) is not installed';
  }
  return null;
}

export class Proc {
  private out = '';
  exitCode: number | null = null;
  readonly exited: Promise<number | null>;
  constructor(
    readonly child: ChildProcess,
    readonly label: string,
  ) {
    child.stdout?.on('data', (d) => (this.out += d));
    child.stderr?.on('data', (d) => (this.out += d));
    // 'exit' can come before the last of the output has been read from the pipes: a caller that
    // parses the output once the process has exited waits for 'close' (both pipes drained). A
    // grandchild that inherited the pipes could hold them open, so 'close' is awaited 2 s at most.
    this.exited = new Promise((resolve) => {
      let grace: NodeJS.Timeout | null = null;
      const done = () => {
        if (grace) clearTimeout(grace);
        resolve(this.exitCode);
      };
      child.on('exit', (code, signal) => {
        this.exitCode = code ?? (signal ? 128 : null);
        grace = setTimeout(done, 2000);
      });
      child.on('close', (code, signal) => {
        if (this.exitCode === null) this.exitCode = code ?? (signal ? 128 : null);
        done();
      });
    });
  }
  get output(): string {
    return this.out;
  }
  get running(): boolean {
    return this.exitCode === null && this.child.exitCode === null;
  }
  /** Signal the process group, wait up to `ms`, then SIGKILL. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', ms = 5000): Promise<number | null> {
    if (!this.running) return this.exitCode;
    try {
      process.kill(-this.child.pid!, signal);
    } catch {
      /* gone */
    }
    const t = setTimeout(() => {
      try {
        process.kill(-this.child.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, ms);
    const code = await this.exited;
    clearTimeout(t);
    return code;
  }
}

export async function waitFor(what: string, pred: () => boolean | Promise<boolean>, timeoutMs = 10_000, stepMs = 50): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await pred()) return;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

export class Lab {
  readonly id = randomBytes(3).toString('hex');
  readonly dir = mkdtempSync(path.join(tmpdir(), 'keymesh-lab-'));
  private readonly namespaces: string[] = [];
  private readonly procs: Proc[] = [];

  constructor() {
    live.add(this);
  }

  /** A unique short name for an interface or namespace role (≤ 15 characters). */
  name(role: string): string {
    return `km${this.id}${role}`.slice(0, 15);
  }

  netns(role: string): string {
    const ns = `km-${this.id}-${role}`;
    sh('ip', ['netns', 'add', ns]);
    this.namespaces.push(ns);
    this.exec(ns, ['ip', 'link', 'set', 'lo', 'up']);
    return ns;
  }

  /** A veth pair between two namespaces, each end given its addresses ("192.0.2.1/24", "fd00::1/64"). */
  link(nsA: string, ifA: string, addrsA: string[], nsB: string, ifB: string, addrsB: string[]): void {
    sh('ip', ['link', 'add', ifA, 'netns', nsA, 'type', 'veth', 'peer', 'name', ifB, 'netns', nsB]);
    for (const [ns, ifn, addrs] of [
      [nsA, ifA, addrsA],
      [nsB, ifB, addrsB],
    ] as const) {
      // No duplicate address detection delay for IPv6 test addresses.
      this.exec(ns, ['sysctl', '-qw', `net.ipv6.conf.${ifn}.accept_dad=0`]);
      for (const a of addrs) this.exec(ns, ['ip', 'addr', 'add', a, 'dev', ifn, ...(a.includes(':') ? ['nodad'] : [])]);
      this.exec(ns, ['ip', 'link', 'set', ifn, 'up']);
    }
  }

  /** A bridge in its own namespace; returns a function that plugs a host into it. */
  bridge(role: string): (ns: string, ifn: string, addrs: string[]) => void {
    const sw = this.netns(role);
    this.exec(sw, ['ip', 'link', 'add', 'br0', 'type', 'bridge']);
    this.exec(sw, ['ip', 'link', 'set', 'br0', 'up']);
    let port = 0;
    return (ns, ifn, addrs) => {
      const p = `p${port++}`;
      sh('ip', ['link', 'add', ifn, 'netns', ns, 'type', 'veth', 'peer', 'name', p, 'netns', sw]);
      this.exec(sw, ['ip', 'link', 'set', p, 'master', 'br0', 'up']);
      this.exec(ns, ['sysctl', '-qw', `net.ipv6.conf.${ifn}.accept_dad=0`]);
      for (const a of addrs) this.exec(ns, ['ip', 'addr', 'add', a, 'dev', ifn, ...(a.includes(':') ? ['nodad'] : [])]);
      this.exec(ns, ['ip', 'link', 'set', ifn, 'up']);
    };
  }

  /** A router namespace: forwarding on; `masquerade(ifn)` NATs traffic leaving through ifn. */
  router(role: string): { ns: string; masquerade: (ifn: string) => void } {
    const ns = this.netns(role);
    this.exec(ns, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    this.exec(ns, ['sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1']);
    return {
      ns,
      masquerade: (ifn: string) => {
        const rules = `table ip nat { chain kmpost { type nat hook postrouting priority 100; oifname "${ifn}" masquerade; }; }`;
        this.exec(ns, ['nft', '-f', '-'], rules);
      },
    };
  }

  exec(ns: string, cmd: string[], input?: string): string {
    return sh('ip', ['netns', 'exec', ns, ...cmd], input);
  }

  /** Start a long-running process inside a namespace (its own process group, output captured). */
  spawn(ns: string, cmd: string[], label = cmd[0]): Proc {
    const child = spawn('ip', ['netns', 'exec', ns, ...cmd], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const p = new Proc(child, label);
    this.procs.push(p);
    return p;
  }

  file(name: string, content: string, mode = 0o600): string {
    const p = path.join(this.dir, name);
    writeFileSync(p, content, { mode });
    return p;
  }

  /** Everything the lab's processes printed, for failure messages. */
  logs(): string {
    return this.procs.map((p) => `--- ${p.label} (exit ${p.exitCode}) ---\n${p.output}`).join('\n');
  }

  async cleanup(): Promise<void> {
    for (const p of [...this.procs].reverse()) await p.stop('SIGTERM', 3000);
    this.cleanupSync();
  }

  cleanupSync(): void {
    for (const p of this.procs) {
      try {
        if (p.running) process.kill(-p.child.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    for (const ns of [...this.namespaces].reverse()) {
      try {
        const pids = sh('ip', ['netns', 'pids', ns]).split('\n').filter(Boolean);
        for (const pid of pids) {
          try {
            process.kill(Number(pid), 'SIGKILL');
          } catch {
            /* gone */
          }
        }
        sh('ip', ['netns', 'del', ns]);
      } catch {
        /* already gone */
      }
    }
    this.namespaces.length = 0;
    // what a killed node leaves under its name (sockets, crash-recovery record): every name is km<id>…
    for (const dir of ['/var/run/keymesh', '/var/run/wireguard']) {
      for (const f of existsSync(dir) ? readdirSync(dir) : []) if (f.startsWith(`km${this.id}`)) rmSync(path.join(dir, f), { force: true });
    }
    rmSync(this.dir, { recursive: true, force: true });
    live.delete(this);
  }
}

// ───────────────────────────── nodes ─────────────────────────────

export interface PeerSpec {
  publicKey: string;
  allowedIps: string[];
  endpoint?: string;
  presharedKey?: string;
  persistentKeepalive?: number;
  /** keymesh only: `Lighthouse = true` (the peer is a lighthouse this node registers with). */
  lighthouse?: boolean;
}

export interface NodeSpec {
  ns: string;
  ifname: string;
  privateKey: string;
  listenPort?: number;
  addresses: string[];
  peers: PeerSpec[];
  /** Extra [Interface] lines (e.g. "SaveConfig = true", "PostUp = …"); keymesh only. */
  extra?: string[];
  /** Environment for the node's process (e.g. { KEYMESH_CRYPTO: 'noble' }, or { LOG_LEVEL: 'verbose' } for wireguard-go). */
  env?: Record<string, string>;
  /** Extra arguments to `keymesh up` (e.g. ["--log-format", "json"]); keymesh only. */
  upArgs?: string[];
  /** Set by startKeymesh: where the config file was written. */
  configFile?: string;
}

export function wgQuickConfig(n: NodeSpec): string {
  const lines = ['[Interface]', `PrivateKey = ${n.privateKey}`];
  if (n.listenPort) lines.push(`ListenPort = ${n.listenPort}`);
  lines.push(`Address = ${n.addresses.join(', ')}`);
  lines.push(...(n.extra ?? []));
  for (const p of n.peers) {
    lines.push('', '[Peer]', `PublicKey = ${p.publicKey}`, `AllowedIPs = ${p.allowedIps.join(', ')}`);
    if (p.presharedKey) lines.push(`PresharedKey = ${p.presharedKey}`);
    if (p.endpoint) lines.push(`Endpoint = ${p.endpoint}`);
    if (p.persistentKeepalive) lines.push(`PersistentKeepalive = ${p.persistentKeepalive}`);
    if (p.lighthouse) lines.push('Lighthouse = true');
  }
  return lines.join('\n') + '\n';
}

export const uapiSocket = (ifname: string) => `/var/run/wireguard/${ifname}.sock`;

/**
 * Ask a running node (keymesh or wireguard-go) for its state over the UAPI socket directly, without
 * the wg tool: returns the `key=value` lines of the `get=1` answer, errno line included.
 */
export function uapiGet(ifname: string, timeoutMs = 3000): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const sock = connect(uapiSocket(ifname));
    let text = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`UAPI get on ${ifname}: no complete answer within ${timeoutMs} ms (got ${JSON.stringify(text)})`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write('get=1\n\n'));
    sock.on('data', (d) => {
      text += d;
      // The answer ends with an errno line and an empty line.
      if (/(^|\n)errno=\d+\n\n$/.test(text)) {
        clearTimeout(timer);
        sock.end();
        resolve(text.trimEnd().split('\n'));
      }
    });
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** Start `keymesh up` in a namespace and wait until its UAPI socket exists. */
export async function startKeymesh(lab: Lab, n: NodeSpec): Promise<Proc> {
  const conf = lab.file(`${n.ifname}.conf`, wgQuickConfig(n));
  n.configFile = conf;
  const env = Object.entries(n.env ?? {}).map(([k, v]) => `${k}=${v}`);
  const p = lab.spawn(n.ns, [...(env.length ? ['env', ...env] : []), process.execPath, KEYMESH_BIN, 'up', ...(n.upArgs ?? []), conf], `keymesh ${n.ifname}`);
  await waitFor(`keymesh ${n.ifname} to come up`, () => {
    if (!p.running) throw new Error(`keymesh ${n.ifname} exited (${p.exitCode}):\n${p.output}`);
    return existsSync(uapiSocket(n.ifname));
  });
  return p;
}

/** Start wireguard-go (`binary`: another build of it) in a namespace and configure it with `wg` and `ip`, as wg-quick would. */
export async function startWireguardGo(lab: Lab, n: NodeSpec, binary = 'wireguard-go'): Promise<Proc> {
  const env = Object.entries(n.env ?? {}).map(([k, v]) => `${k}=${v}`);
  const p = lab.spawn(n.ns, ['env', 'WG_PROCESS_FOREGROUND=1', ...env, binary, n.ifname], `wireguard-go ${n.ifname}`);
  await waitFor(`wireguard-go ${n.ifname}`, () => existsSync(uapiSocket(n.ifname)));
  const keyFile = lab.file(`${n.ifname}.key`, n.privateKey + '\n');
  const args = ['set', n.ifname, 'private-key', keyFile];
  if (n.listenPort) args.push('listen-port', String(n.listenPort));
  for (const peer of n.peers) {
    args.push('peer', peer.publicKey, 'allowed-ips', peer.allowedIps.join(','));
    if (peer.endpoint) args.push('endpoint', peer.endpoint);
    if (peer.persistentKeepalive) args.push('persistent-keepalive', String(peer.persistentKeepalive));
    if (peer.presharedKey) args.push('preshared-key', lab.file(`${n.ifname}-${peer.publicKey.slice(0, 6).replace(/\W/g, '')}.psk`, peer.presharedKey + '\n'));
  }
  lab.exec(n.ns, ['wg', ...args]);
  for (const a of n.addresses) lab.exec(n.ns, ['ip', 'addr', 'add', a, 'dev', n.ifname]);
  lab.exec(n.ns, ['ip', 'link', 'set', n.ifname, 'up']);
  for (const peer of n.peers) {
    for (const a of peer.allowedIps) lab.exec(n.ns, ['ip', a.includes(':') ? '-6' : '-4', 'route', 'replace', a, 'dev', n.ifname]);
  }
  return p;
}

// ───────────────────────────── traffic ─────────────────────────────

export function ping(lab: Lab, ns: string, addr: string, count = 3): boolean {
  try {
    lab.exec(ns, ['ping', ...(addr.includes(':') ? ['-6'] : []), '-c', String(count), '-i', '0.2', '-W', '2', addr]);
    return true;
  } catch {
    return false;
  }
}

const SERVER = `
const net=require('net'),crypto=require('crypto');
const h=crypto.createHash('sha256');let n=0;
const s=net.createServer(c=>{c.on('data',d=>{h.update(d);n+=d.length});c.on('end',()=>{console.log(JSON.stringify({bytes:n,sha256:h.digest('hex')}));c.end();s.close()})});
s.listen(Number(process.argv[2]),process.argv[1],()=>console.log('LISTENING'));`;

// argv[4], when not 0: a pace in bytes per second (never ahead of rate × elapsed; after a stall it
// catches up as fast as TCP allows), so a stream of a given size lasts a given time.
const CLIENT = `
const net=require('net'),crypto=require('crypto');
const total=Number(process.argv[3]),rate=Number(process.argv[4]||0);const h=crypto.createHash('sha256');let sent=0;const t0=Date.now();
const c=net.connect(Number(process.argv[2]),process.argv[1],()=>{
  const pump=()=>{while(sent<total){if(rate&&sent>=rate*(Date.now()-t0)/1000)return setTimeout(pump,5);const n=Math.min(rate?16384:65536,total-sent);const b=crypto.randomBytes(n);h.update(b);sent+=n;if(!c.write(b))return c.once('drain',pump)}c.end()};pump()});
c.on('close',()=>console.log(JSON.stringify({bytes:sent,sha256:h.digest('hex'),seconds:(Date.now()-t0)/1000})));
c.on('error',e=>{console.error(e.message);process.exit(1)});`;

/**
 * Send `bytes` random bytes over TCP from one namespace to a listener in another; returns both
 * hashes. `rateBytesPerSecond` paces the sender (a stream that keeps flowing for bytes/rate seconds).
 */
export async function tcpTransfer(
  lab: Lab,
  fromNs: string,
  toNs: string,
  toAddr: string,
  bytes: number,
  port = 5201,
  rateBytesPerSecond = 0,
): Promise<{ sent: { bytes: number; sha256: string; seconds: number }; received: { bytes: number; sha256: string } }> {
  const server = lab.spawn(toNs, [process.execPath, '-e', SERVER, toAddr, String(port)], 'tcp server');
  await waitFor('tcp server', () => server.output.includes('LISTENING'), 5000);
  const client = lab.spawn(fromNs, [process.execPath, '-e', CLIENT, toAddr, String(port), String(bytes), String(rateBytesPerSecond)], 'tcp client');
  const timeout = setTimeout(() => void client.stop('SIGKILL'), 120_000);
  await client.exited;
  await Promise.race([server.exited, new Promise((r) => setTimeout(r, 5000))]);
  clearTimeout(timeout);
  const sentLine = client.output.trim().split('\n').pop()!;
  const recvLine = server.output.trim().split('\n').pop()!;
  try {
    return { sent: JSON.parse(sentLine), received: JSON.parse(recvLine) };
  } catch {
    throw new Error(`transfer failed:\nclient: ${client.output}\nserver: ${server.output}`);
  }
}

// ───────────────────────────── outage probe ─────────────────────────────

const ECHO = `
const s=require('dgram').createSocket(process.argv[1].includes(':')?'udp6':'udp4');
s.on('message',(m,r)=>s.send(m,r.port,r.address));s.bind(Number(process.argv[2]),process.argv[1],()=>console.log('ECHOING'));`;

const PROBE = `
const s=require('dgram').createSocket(process.argv[1].includes(':')?'udp6':'udp4');
const t0=Date.now();let seq=0,last=t0,maxGap=0,got=0,gapAt=0;
s.on('message',()=>{const now=Date.now();got++;if(now-last>maxGap){maxGap=now-last;gapAt=last-t0}last=now});
const iv=setInterval(()=>s.send(String(seq++),Number(process.argv[2]),process.argv[1]),Number(process.argv[3]));
process.on('SIGTERM',()=>{clearInterval(iv);const now=Date.now();if(now-last>maxGap){maxGap=now-last;gapAt=last-t0}
console.log(JSON.stringify({sent:seq,received:got,maxGapMs:maxGap,gapAtMs:gapAt}));process.exit(0)});
console.log('PROBING');`;

/**
 * A steady UDP echo probe through the tunnel: `fromNs` sends a datagram every `intervalMs` to an
 * echo server at `toAddr` in `toNs`; stop() returns the longest silence between echoes.
 */
export async function startProbe(lab: Lab, fromNs: string, toNs: string, toAddr: string, intervalMs = 10, port = 7777) {
  const echo = lab.spawn(toNs, [process.execPath, '-e', ECHO, toAddr, String(port)], 'echo');
  await waitFor('echo server', () => echo.output.includes('ECHOING'), 5000);
  const probe = lab.spawn(fromNs, [process.execPath, '-e', PROBE, toAddr, String(port), String(intervalMs)], 'probe');
  await waitFor('probe', () => probe.output.includes('PROBING'), 5000);
  return {
    async stop(): Promise<{ sent: number; received: number; maxGapMs: number; gapAtMs: number }> {
      try {
        process.kill(probe.child.pid!, 'SIGTERM');
      } catch {
        /* gone */
      }
      await probe.exited;
      return JSON.parse(probe.output.trim().split('\n').pop()!);
    },
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
