/**
 * keymesh's own control socket, beside the WireGuard UAPI one: /var/run/keymesh/NAME.sock speaks
 * one JSON request per line ({"op":"status"} or {"op":"down"}) and answers one JSON line. It carries
 * what `wg` has no words for (drop counters, session roles, the runtime's counters) and lets
 * `keymesh down NAME` stop a node cleanly. Mode 0600: only root may use it.
 */
import { chmod, mkdir, unlink } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';

export const CONTROL_DIR = '/var/run/keymesh';

export function controlPath(name: string, dir = CONTROL_DIR): string {
  return path.join(dir, `${name}.sock`);
}

export interface ControlHandlers {
  status(): object;
  down(): void;
  /** `keymesh reload`: re-read the configuration; resolves to what was done, rejects with why not. */
  reload?(): Promise<string>;
  /** `keymesh ping`: one ping to what `target` names; resolves to the reply, rejects with why not. */
  ping?(target: string, timeoutMs: number): Promise<object>;
  /** Further ops answered asynchronously (`keymesh device add|list|remove`): the result's fields join {ok: true}; a rejection is {ok: false, error}. */
  ops?: Record<string, (req: Record<string, unknown>) => Promise<object>>;
}

export class ControlServer {
  private constructor(
    private readonly server: net.Server,
    readonly path: string,
  ) {}

  static async listen(name: string, h: ControlHandlers, dir = CONTROL_DIR): Promise<ControlServer> {
    await mkdir(dir, { recursive: true, mode: 0o755 });
    const p = controlPath(name, dir);
    await unlink(p).catch(() => undefined); // bring-up already refused if a live node owns NAME (crash-recovery.ts)
    const server = net.createServer((sock) => {
      let buf = '';
      sock.setEncoding('utf8');
      sock.on('error', () => undefined);
      sock.on('data', (chunk: string) => {
        buf += chunk;
        if (buf.length > 65536) return sock.destroy();
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          let reply: object;
          try {
            const req = JSON.parse(line) as { op?: string };
            if (req.op === 'reload' && h.reload) {
              // answered when the reload is done (it reads files)
              h.reload().then(
                (done) => sock.write(JSON.stringify({ ok: true, done }) + '\n'),
                (e: Error) => sock.write(JSON.stringify({ ok: false, error: e.message }) + '\n'),
              );
              continue;
            }
            const op = typeof req.op === 'string' && h.ops && Object.hasOwn(h.ops, req.op) ? h.ops[req.op] : undefined;
            if (op) {
              op(req as Record<string, unknown>).then(
                (r) => sock.write(JSON.stringify({ ok: true, ...r }) + '\n'),
                (e: Error) => sock.write(JSON.stringify({ ok: false, error: e.message }) + '\n'),
              );
              continue;
            }
            if (req.op === 'ping' && h.ping) {
              const r = req as { target?: unknown; timeoutMs?: unknown };
              const timeoutMs = typeof r.timeoutMs === 'number' && r.timeoutMs > 0 && r.timeoutMs <= 30_000 ? r.timeoutMs : 2000;
              if (typeof r.target !== 'string' || r.target.length > 300) reply = { ok: false, error: 'ping: no target' };
              else {
                h.ping(r.target, timeoutMs).then(
                  (pong) => sock.write(JSON.stringify({ ok: true, pong }) + '\n'),
                  (e: Error) => sock.write(JSON.stringify({ ok: false, error: e.message }) + '\n'),
                );
                continue;
              }
            } else if (req.op === 'status') reply = { ok: true, status: h.status() };
            else if (req.op === 'down') {
              reply = { ok: true };
              setImmediate(() => h.down());
            } else reply = { ok: false, error: `unknown op ${JSON.stringify(req.op)}` };
          } catch (e) {
            reply = { ok: false, error: `bad request: ${(e as Error).message}` };
          }
          sock.write(JSON.stringify(reply) + '\n');
        }
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(p, () => resolve());
    });
    await chmod(p, 0o600);
    server.unref();
    return new ControlServer(server, p);
  }

  async close(): Promise<void> {
    await new Promise<void>((r) => this.server.close(() => r()));
    await unlink(this.path).catch(() => undefined);
  }
}

/** Send one request to a node's control socket and return its reply. */
export function controlRequest(name: string, req: object, dir = CONTROL_DIR, timeoutMs = 5000): Promise<any> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(controlPath(name, dir));
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer from keymesh node ${name} within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(JSON.stringify(req) + '\n'));
    sock.on('data', (c: string) => {
      buf += c;
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        sock.end();
        try {
          resolve(JSON.parse(buf.slice(0, nl)));
        } catch (e) {
          reject(e);
        }
      }
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') reject(new Error(`no keymesh node named ${name} is running`));
      else reject(e);
    });
  });
}
