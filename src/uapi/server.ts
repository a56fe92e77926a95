/**
 * The UAPI Unix socket: /var/run/wireguard/NAME.sock (mode 0600), where stock `wg` finds
 * userspace interfaces. Requests are handled one at a time per connection; a malformed request
 * gets errno=22, never a crash. A live server of the same name is refused; a stale socket file
 * (left by a killed process) is replaced.
 */
import { chmod, mkdir, unlink } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { EINVAL, parseSet, serializeGet, UapiError, type DeviceChange, type DeviceSnapshot } from './protocol.js';

export const UAPI_DIR = '/var/run/wireguard';

export interface UapiDevice {
  snapshot(): DeviceSnapshot;
  apply(change: DeviceChange): void;
}

function probe(p: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createConnection(p);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export class UapiServer {
  private constructor(
    private readonly server: net.Server,
    readonly path: string,
  ) {}

  static async listen(interfaceName: string, device: UapiDevice, dir = UAPI_DIR): Promise<UapiServer> {
    await mkdir(dir, { recursive: true, mode: 0o755 });
    const p = path.join(dir, `${interfaceName}.sock`);
    if (await probe(p)) throw new Error(`interface ${interfaceName} is already served by another process (${p} is live)`);
    await unlink(p).catch(() => undefined);
    const server = net.createServer((sock) => handle(sock, device));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(p, () => resolve());
    });
    await chmod(p, 0o600);
    server.unref();
    return new UapiServer(server, p);
  }

  async close(): Promise<void> {
    await new Promise<void>((r) => this.server.close(() => r()));
    await unlink(this.path).catch(() => undefined);
  }
}

function handle(sock: net.Socket, device: UapiDevice): void {
  let buf = '';
  sock.setEncoding('utf8');
  sock.on('error', () => undefined);
  sock.on('data', (chunk: string) => {
    buf += chunk;
    if (buf.length > 1 << 20) {
      sock.end('errno=22\n\n');
      return;
    }
    for (;;) {
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      const first = buf.slice(0, nl);
      if (first === 'get=1') {
        // get=1 is followed by a blank line
        if (buf.length < nl + 2) return;
        buf = buf.slice(buf[nl + 1] === '\n' ? nl + 2 : nl + 1);
        let body: string;
        try {
          body = serializeGet(device.snapshot()) + 'errno=0\n\n';
        } catch {
          body = 'errno=5\n\n';
        }
        sock.write(body);
        continue;
      }
      if (first === 'set=1') {
        const end = buf.indexOf('\n\n', nl);
        if (end < 0) return;
        const bodyText = buf.slice(nl + 1, end + 1);
        buf = buf.slice(end + 2);
        let errno = 0;
        try {
          device.apply(parseSet(bodyText));
        } catch (e) {
          errno = e instanceof UapiError ? e.errno : ((e as { errno?: number }).errno ?? EINVAL);
          if (errno < 0) errno = -errno;
        }
        sock.write(`errno=${errno}\n\n`);
        continue;
      }
      sock.end('errno=22\n\n');
      buf = '';
      return;
    }
  });
}
