/**
 * Prometheus metrics (`MetricsListen = 127.0.0.1:9586`): GET /metrics over HTTP answers the
 * text exposition format, version 0.0.4 (prometheus.io/docs/instrumenting/exposition_formats).
 *
 * Every scrape renders the very object `keymesh show --json` prints (status.ts), at the moment of
 * the scrape, so the two always agree: nothing is counted twice, and there is no registry to keep
 * in step with peers that come and go. That is also why the format is written here rather than
 * with prom-client: its registry holds metric objects that would have to be reset and refilled
 * from this snapshot on every collect(), for a format that is a few lines of text.
 *
 * Names follow Prometheus' conventions: a `keymesh_` prefix, base units (bytes, seconds),
 * `_total` on counters. Every series has an `interface` label; per peer series have `peer` (the
 * base64 public key: public, and what `wg show` prints) and `name` (its mesh or `Name =` name,
 * "" if none).
 *
 * May touch: its HTTP server's socket (opened and closed here, on the runtime's word), nothing of
 * the node: it reads the status it is handed.
 */
import { createServer, type Server } from 'node:http';
import type { ShowStatus } from '../cli/show.js';

type Labels = Record<string, string>;
type Kind = 'counter' | 'gauge';

/** One metric family: its help, type and samples, written in that order. */
class Family {
  readonly samples: Array<{ labels: Labels; value: number }> = [];
  constructor(
    readonly name: string,
    readonly kind: Kind,
    readonly help: string,
  ) {}
}

/** Label values escaped as the format says: backslash, double quote and newline. */
function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/** camelCase → snake_case (the engine's counter names → metric names). */
function snake(s: string): string {
  return s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** What the lighthouse counters (core/lighthouse.ts) count, for their HELP lines. */
const LIGHTHOUSE_HELP: Record<string, string> = {
  lookupsAnswered: 'Lighthouse: LOOKUPs answered.',
  lookupsRefused: 'Lighthouse: LOOKUPs refused (not a lighthouse, unknown peer, over the rate, nothing known).',
  punchesSent: 'Lighthouse: CANDIDATES sent to the peer asked about (punch requests).',
  relayedPackets: 'Lighthouse: datagrams relayed between members.',
  relayedBytes: 'Lighthouse: bytes relayed between members.',
  relayRefused: 'Lighthouse: datagrams not relayed (access control).',
  relayRateLimited: 'Lighthouse: datagrams not relayed (over the rate).',
  lookupsSent: 'Member: LOOKUPs sent to lighthouses.',
  candidatesReceived: 'Member: CANDIDATES received from lighthouses.',
  relaySent: 'Member: datagrams sent over relay paths.',
  relayReceived: 'Member: datagrams received over relay paths.',
  ignored: 'Member: CANDIDATES or RELAYED ignored (not from our lighthouse, or about a stranger).',
  namesRefused: "Lighthouse: device names from a gateway refused (not certified for the subnets, a bad name, too many).",
};

/** The status (as `keymesh show --json` prints it) in the text exposition format. */
export function renderMetrics(s: ShowStatus): string {
  const families = new Map<string, Family>();
  const add = (name: string, kind: Kind, help: string, labels: Labels, value: number | null | undefined) => {
    if (value === null || value === undefined) return;
    let f = families.get(name);
    if (!f) families.set(name, (f = new Family(name, kind, help)));
    f.samples.push({ labels: { interface: s.interface, ...labels }, value });
  };

  add('keymesh_info', 'gauge', 'The node: 1, with its public key and listen port as labels.', { public_key: s.publicKey ?? '', listen_port: String(s.listenPort) }, 1);
  add('keymesh_peers', 'gauge', 'Peers configured or admitted.', {}, s.peers.length);
  add('keymesh_rx_packets_total', 'counter', 'Datagrams received on the UDP socket.', {}, s.stats.rxPackets);
  add('keymesh_tx_packets_total', 'counter', 'Datagrams sent on the UDP socket.', {}, s.stats.txPackets);
  add('keymesh_under_load', 'gauge', '1 while handshakes need cookies (under load), else 0.', {}, s.stats.underLoad ? 1 : 0);
  for (const [reason, n] of Object.entries(s.stats.drops)) add('keymesh_drops_total', 'counter', 'Packets dropped, by reason (the names of `keymesh show`).', { reason }, n);
  for (const [k, n] of Object.entries(s.stats.lighthouse ?? {})) {
    if (typeof n !== 'number') continue;
    add(`keymesh_lighthouse_${snake(k)}_total`, 'counter', LIGHTHOUSE_HELP[k] ?? `Lighthouse counter ${k}.`, {}, n);
  }

  for (const p of s.peers) {
    const l: Labels = { peer: p.publicKey, name: p.name ?? '' };
    add('keymesh_peer_rx_bytes_total', 'counter', 'Bytes received from the peer (as `wg show` transfer).', l, p.rxBytes);
    add('keymesh_peer_tx_bytes_total', 'counter', 'Bytes sent to the peer (as `wg show` transfer).', l, p.txBytes);
    add('keymesh_peer_handshakes_total', 'counter', 'Handshakes completed with the peer.', l, p.handshakes);
    add('keymesh_peer_last_handshake_timestamp_seconds', 'gauge', 'Unix time of the latest handshake, 0 if none.', l, p.latestHandshake ?? 0);
    add('keymesh_peer_last_handshake_age_seconds', 'gauge', 'Seconds since the latest handshake (absent if none).', l, p.secondsSinceHandshake);
    add('keymesh_peer_path_changes_total', 'counter', "Times the peer's endpoint (active path) moved.", l, p.pathChanges);
    const active = (p.paths ?? []).find((x) => x.active);
    for (const kind of ['direct', 'relay'] as const) {
      add('keymesh_peer_active_path', 'gauge', 'The kind of the active path: 1 for the kind in use (direct or relay through a lighthouse), 0 for the other.', { ...l, kind }, active && (active.kind ?? 'direct') === kind ? 1 : 0);
    }
    add('keymesh_peer_path_rtt_seconds', 'gauge', 'Smoothed round-trip time of the active path (keymesh peers; absent until measured).', l, active?.rttMs == null ? null : active.rttMs / 1000);
    add('keymesh_peer_paths', 'gauge', 'Paths known to the peer (active, spare and candidate).', l, p.paths?.length ?? 0);
    add('keymesh_peer_relayed_bytes_total', 'counter', 'Lighthouse: bytes relayed for this peer.', l, p.relayed?.bytes ?? 0);
    add('keymesh_peer_endpoint_unresolved', 'gauge', "1 while the peer's Endpoint host name has not resolved (no endpoint yet), else 0.", l, p.unresolvedEndpoint ? 1 : 0);
  }

  const out: string[] = [];
  for (const f of families.values()) {
    out.push(`# HELP ${f.name} ${f.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${f.name} ${f.kind}`);
    for (const x of f.samples) {
      const labels = Object.entries(x.labels)
        .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
        .join(',');
      out.push(`${f.name}{${labels}} ${formatValue(x.value)}`);
    }
  }
  return out.join('\n') + '\n';
}

/** The HTTP endpoint: GET /metrics renders `status()`; / says where to look; anything else is 404. */
export class MetricsServer {
  private constructor(
    private readonly server: Server,
    readonly address: string,
  ) {}

  /** Listen on host:port; rejects (EADDRINUSE, EADDRNOTAVAIL, …) with the address in the message. */
  static listen(host: string, port: number, status: () => ShowStatus): Promise<MetricsServer> {
    const server = createServer((req, res) => {
      const url = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
        return;
      }
      if (url === '/metrics') {
        let body: string;
        try {
          body = renderMetrics(status());
        } catch (e) {
          res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`${(e as Error).message}\n`);
          return;
        }
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
        res.end(req.method === 'HEAD' ? undefined : body);
      } else if (url === '/') {
        res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end('keymesh: metrics at /metrics\n');
      } else res.writeHead(404).end();
    });
    // a scraper that connects and says nothing does not hold a socket for long
    server.headersTimeout = 10_000;
    server.requestTimeout = 10_000;
    const shown = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    return new Promise((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => reject(new Error(`MetricsListen ${shown}: ${e.code ?? e.message}`)));
      server.listen(port, host, () => {
        server.unref();
        const a = server.address();
        const bound = a && typeof a === 'object' ? a.port : port; // (port 0: the one the kernel chose)
        resolve(new MetricsServer(server, host.includes(':') ? `[${host}]:${bound}` : `${host}:${bound}`));
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}
