/**
 * The UAPI Unix socket: /var/run/wireguard/NAME.sock (mode 0600), where stock `wg` looks for
 * userspace interfaces (wireguard-tools ipc-uapi-unix.h: it stats the file, requires a socket,
 * connects, and speaks the text protocol of protocol.ts). `wg` needs no network device of that
 * name: the socket alone makes `wg show`, `wg set`, `wg showconf` and `wg syncconf` work.
 *
 *   client                                server
 *   get=1\n\n                     ──▶     key=value lines … errno=0\n\n
 *   set=1\nkey=value\n…\n\n       ──▶     errno=N\n\n
 *   (more requests on the same connection, answered in order)
 *
 * A request is answered only once it is complete, so chunking on the wire does not matter. A
 * malformed request gets errno=22 (EINVAL), never a crash; an unknown operation gets errno=22 and
 * the connection is closed, since the stream can no longer be trusted to be in step.
 *
 * Start-up: a live server of the same name (one that accepts a connection) is refused; a stale
 * socket file left by a killed process is replaced; any other file there is left alone.
 */
import { constants as osConstants } from 'node:os';
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { EINVAL, parseSet, serializeGet, UapiError, type DeviceChange, type DeviceSnapshot } from './protocol.js';

export const UAPI_DIR = '/var/run/wireguard';

/** Pending request text one connection may hold before it is refused (a big setconf is ~100 B/peer). */
const MAX_REQUEST = 16 << 20;
/** How long to wait for an existing socket to answer before calling it stale. */
const PROBE_TIMEOUT_MS = 1000;
const EIO = 5;

export interface UapiDevice {
  snapshot(): DeviceSnapshot;
  /** Apply a parsed set=1 request; may throw UapiError (its errno is reported to the client). */
  apply(change: DeviceChange): void;
}

/** Does something accept connections on this socket path? */
export function socketAnswers(p: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createConnection(p);
    const done = (live: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(live);
    };
    // A socket whose owner is stopped still completes connect() through the backlog, so a
    // timeout means "no answer at all" (e.g. a full backlog): treat that as live, to be safe.
    const timer = setTimeout(() => done(true), PROBE_TIMEOUT_MS);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** Interface names as Linux allows them (IFNAMSIZ 16 with the NUL): also keeps the path in dir. */
function checkName(name: string): void {
  if (typeof name !== 'string' || !/^[A-Za-z0-9_=+.-]{1,15}$/.test(name) || name === '.' || name === '..') {
    throw new Error(`UAPI: "${String(name)}" is not a valid interface name (1–15 characters of A–Z a–z 0–9 _ = + . -)`);
  }
}

/** Bind with umask 077 so the socket is never reachable by others, not even between bind and chmod. */
function listenPrivately(server: net.Server, p: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    let old: number | null = null;
    try {
      old = process.umask(0o077);
    } catch {
      // process.umask(mask) is not allowed in worker threads; the chmod below still applies.
    }
    try {
      // For a path, Node binds synchronously inside listen(), so the umask covers the bind.
      server.listen(p, () => {
        server.off('error', reject);
        resolve();
      });
    } finally {
      if (old !== null) process.umask(old);
    }
  });
}

function errnoOf(e: unknown): number {
  if (e instanceof UapiError) return e.errno;
  const x = e as { errno?: unknown; code?: unknown } | null;
  if (x && typeof x.errno === 'number' && x.errno !== 0) return Math.abs(x.errno);
  if (x && typeof x.code === 'string') {
    const n = (osConstants.errno as Record<string, number>)[x.code];
    if (typeof n === 'number') return n;
  }
  return EIO;
}

/** What the socket has seen; refused counts requests answered with an error errno. */
export interface UapiCounters {
  get: number;
  set: number;
  refused: number;
}

export class UapiServer {
  readonly counters: UapiCounters = { get: 0, set: 0, refused: 0 };
  private readonly conns = new Set<net.Socket>();
  private closed = false;

  private constructor(
    private readonly server: net.Server,
    readonly path: string,
  ) {}

  /**
   * Serve `wg` for interfaceName at DIR/NAME.sock. Creates DIR (0755) if needed. Throws if
   * another live process serves that name or the path holds something other than a socket.
   */
  static async listen(interfaceName: string, device: UapiDevice, dir = UAPI_DIR): Promise<UapiServer> {
    checkName(interfaceName);
    await mkdir(dir, { recursive: true, mode: 0o755 });
    const p = path.join(dir, `${interfaceName}.sock`);
    const existing = await lstat(p).catch(() => null);
    if (existing) {
      if (!existing.isSocket()) throw new Error(`UAPI: ${p} exists and is not a socket; refusing to replace it`);
      if (await socketAnswers(p)) {
        throw new Error(`UAPI: interface ${interfaceName} is already served by another process (${p} accepts connections)`);
      }
      await unlink(p).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e;
      });
    }
    let self: UapiServer | null = null;
    const server = net.createServer((sock) => {
      if (!self || self.closed) {
        sock.destroy();
        return;
      }
      self.conns.add(sock);
      sock.once('close', () => self?.conns.delete(sock));
      serveConnection(sock, device, self.counters);
    });
    await listenPrivately(server, p);
    await chmod(p, 0o600);
    // The socket must not keep the process alive by itself; the device's own handles do.
    server.unref();
    self = new UapiServer(server, p);
    return self;
  }

  /**
   * Stop serving, drop open connections, and remove the socket file. (libuv unlinks the path
   * by name when the listening handle closes, so the file goes even if someone replaced it
   * meanwhile; listen() refusing a live name keeps that from happening between our servers.)
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const done = new Promise<void>((r) => this.server.close(() => r()));
    for (const c of this.conns) c.destroy();
    await done;
    await unlink(this.path).catch(() => undefined);
  }
}

function serveConnection(sock: net.Socket, device: UapiDevice, n: UapiCounters): void {
  let buf = '';
  sock.setEncoding('utf8');
  sock.on('error', () => undefined);
  const refuse = () => {
    n.refused++;
    buf = '';
    sock.end('errno=22\n\n');
  };
  sock.on('data', (chunk: string) => {
    if (sock.writableEnded) return;
    buf += chunk;
    if (buf.length > MAX_REQUEST) return refuse();
    for (;;) {
      const nl = buf.indexOf('\n');
      if (nl < 0) {
        // No operation line yet; anything long without a newline is not the UAPI.
        if (buf.length > 16) refuse();
        return;
      }
      const op = buf.slice(0, nl);
      if (op === 'get=1') {
        // get=1 is followed by one blank line; wireguard-go refuses any other byte there.
        if (buf.length < nl + 2) return;
        const blank = buf[nl + 1] === '\n';
        buf = buf.slice(nl + 2);
        if (!blank) {
          n.refused++;
          sock.write(`errno=${EINVAL}\n\n`);
          continue;
        }
        n.get++;
        let reply: string;
        try {
          reply = serializeGet(device.snapshot()) + 'errno=0\n\n';
        } catch (e) {
          n.refused++;
          reply = `errno=${errnoOf(e)}\n\n`;
        }
        sock.write(reply);
        continue;
      }
      if (op === 'set=1') {
        // The body ends at the first empty line; "set=1\n\n" is an empty (valid) set.
        const end = buf.indexOf('\n\n', nl);
        if (end < 0) return;
        const body = buf.slice(nl + 1, end + 1);
        buf = buf.slice(end + 2);
        n.set++;
        let errno = 0;
        try {
          device.apply(parseSet(body));
        } catch (e) {
          n.refused++;
          errno = errnoOf(e);
        }
        sock.write(`errno=${errno}\n\n`);
        continue;
      }
      return refuse();
    }
  });
}
