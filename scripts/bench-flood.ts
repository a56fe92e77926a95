/**
 * `sudo npm run bench:flood`: a responder under a handshake flood (topology netns/flood-lab.ts),
 * keymesh beside wireguard-go in the same run (the Debian build, and a modern one when
 * WG_GO_MODERN=/path/to/wireguard-go is given). Per responder:
 *   - the established peer's ping loss (every 50 ms) while 64 spoofed sources send valid-mac1
 *     initiations as fast as the attacker can for FLOOD_SECONDS (20);
 *   - the new peer's first answered ping after its `up`, 5 s into the flood;
 *   - what the responder's kernel dropped for a full receive buffer (RcvbufErrors), its CPU
 *     during the flood, the cookie replies it sent per second (as the attacker received them);
 *   - its RSS before and after 1,000,000 junk datagrams (random, then WireGuard-shaped), and 5 s later;
 *   - how long the responder takes to come up again (stopped, then started) while its port is flooded.
 * The established and new peers run the same implementation as the responder.
 * Writes bench-results/flood.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { cpuSeconds, FLOOD_ADDR, FLOOD_TUNNEL, floodTopology, pingSummary, rcvbufErrors, rssBytes } from '../netns/flood-lab.js';
import { Lab, ping, REPO, sleep, startKeymesh, startWireguardGo, waitFor, type NodeSpec, type Proc } from '../netns/lib.js';

const FLOOD_SECONDS = Number(process.env.FLOOD_SECONDS ?? 20);
const JUNK = Number(process.env.JUNK_COUNT ?? 1_000_000);
const FLOOD = path.join(REPO, 'dist', 'netns', 'flood.js');
/** FLOOD_RATE=N: the attacker's datagrams per second (default: as fast as it can). */
const RATE = process.env.FLOOD_RATE ? ['--rate', process.env.FLOOD_RATE] : [];

interface Result {
  responder: string;
  pingLossPct: number;
  pingsSent: number;
  newPeerFirstAnswerMs: number | null;
  rcvbufErrors: number;
  cpuPct: number;
  cookieRepliesPerSecond: number;
  attackPerSecond: number;
  rssBeforeMB: number;
  rssAfterJunkMB: number;
  rssLaterMB: number;
  upMs: number;
  /** The responder restarted under the flood: ms from start to its UAPI socket, and to E's first answered ping. */
  restartUpMs: number;
  /** Its first up, before the flood: the usual time, to compare restartUpMs with. */
  quietUpMs: number;
  restartReachedMs: number | null;
}

async function start(lab: Lab, impl: string, n: NodeSpec): Promise<Proc> {
  return impl === 'keymesh' ? startKeymesh(lab, n) : startWireguardGo(lab, n, impl === 'wireguard-go' ? undefined : impl);
}

/** Replies of a `ping -D` run, as wall-clock ms. */
function replyTimes(p: Proc): number[] {
  return [...p.output.matchAll(/^\[(\d+\.\d+)\] \d+ bytes from/gm)].map((m) => Math.round(Number(m[1]) * 1000));
}

async function run(impl: string): Promise<Result> {
  const lab = new Lab();
  try {
    const t = floodTopology(lab);
    const quietAt = Date.now();
    const r = await start(lab, impl, t.r);
    const quietUpMs = Date.now() - quietAt; // the same responder's up with nothing flooding it
    await start(lab, impl, t.e);
    await waitFor('E reaches R', () => ping(lab, t.e.ns, FLOOD_TUNNEL.r, 1), 15_000, 200);
    const pid = r.child.pid!;
    const rcv0 = rcvbufErrors(lab, t.r.ns);
    const cpu0 = cpuSeconds(pid);
    const pinger = lab.spawn(t.e.ns, ['ping', '-D', '-n', '-i', '0.05', '-W', '1', FLOOD_TUNNEL.r], 'ping E→R');
    await sleep(1000);
    const floodFrom = Date.now();
    const attacker = lab.spawn(
      t.attackerNs,
      [process.execPath, FLOOD, '--target', `${FLOOD_ADDR.r}:51820`, '--kind', 'initiations', '--key', t.keys.r, '--sources', `${FLOOD_ADDR.attackerFirst},${FLOOD_ADDR.attackers}`, '--seconds', String(FLOOD_SECONDS), ...RATE],
      'attacker',
    );
    await sleep(5000);
    const upAt = Date.now();
    await start(lab, impl, t.n);
    const upMs = Date.now() - upAt;
    const nUp = Date.now();
    const nPing = lab.spawn(t.n.ns, ['ping', '-D', '-n', '-i', '0.1', '-W', '1', '-w', String(FLOOD_SECONDS), FLOOD_TUNNEL.r], 'ping N→R');
    await attacker.exited;
    const floodTo = Date.now();
    const cpu1 = cpuSeconds(pid);
    const rcv1 = rcvbufErrors(lab, t.r.ns);
    await sleep(300); // the last pings' answers
    await pinger.stop('SIGINT', 3000);
    await nPing.stop('SIGINT', 3000);
    const summary = JSON.parse(attacker.output.trim().split('\n').pop()!);
    // pings sent from 1 s before the flood to its end, and how many were answered (ping's own count)
    const pings = pingSummary(pinger.output);
    const first = replyTimes(nPing)[0];
    // memory under junk
    const rssBefore = rssBytes(pid);
    for (const kind of ['junk', 'shaped']) {
      const j = lab.spawn(t.attackerNs, [process.execPath, FLOOD, '--target', `${FLOOD_ADDR.r}:51820`, '--kind', kind, '--count', String(JUNK / 2), '--seconds', '120'], `junk ${kind}`);
      await j.exited;
    }
    const rssAfter = rssBytes(pid);
    await sleep(5000);
    const rssLater = rssBytes(pid);
    // the responder restarted while its port is flooded
    const again = lab.spawn(
      t.attackerNs,
      [process.execPath, FLOOD, '--target', `${FLOOD_ADDR.r}:51820`, '--kind', 'initiations', '--key', t.keys.r, '--sources', `${FLOOD_ADDR.attackerFirst},${FLOOD_ADDR.attackers}`, '--seconds', '12', ...RATE],
      'attacker (restart)',
    );
    await sleep(1000);
    await r.stop('SIGTERM', 5000);
    const restartAt = Date.now();
    await start(lab, impl, t.r);
    const restartUpMs = Date.now() - restartAt;
    const rePing = lab.spawn(t.e.ns, ['ping', '-D', '-n', '-i', '0.1', '-W', '1', '-w', '9', FLOOD_TUNNEL.r], 'ping E→R (restart)');
    await rePing.exited;
    const reFirst = replyTimes(rePing)[0];
    await again.stop('SIGTERM', 3000);
    return {
      responder: impl === 'keymesh' || impl === 'wireguard-go' ? impl : `wireguard-go (${impl})`,
      pingLossPct: pings.loss * 100,
      pingsSent: pings.sent,
      newPeerFirstAnswerMs: first === undefined ? null : first - nUp,
      rcvbufErrors: rcv1 - rcv0,
      cpuPct: ((cpu1 - cpu0) / ((floodTo - floodFrom) / 1000)) * 100,
      cookieRepliesPerSecond: Math.round(summary.cookieReplies / summary.seconds),
      attackPerSecond: summary.perSecond,
      rssBeforeMB: rssBefore / 2 ** 20,
      rssAfterJunkMB: rssAfter / 2 ** 20,
      rssLaterMB: rssLater / 2 ** 20,
      upMs,
      restartUpMs,
      quietUpMs,
      restartReachedMs: reFirst === undefined ? null : reFirst - restartAt,
    };
  } finally {
    await lab.cleanup();
  }
}

if (process.getuid?.() !== 0) {
  console.error('bench:flood: needs root (network namespaces): sudo npm run bench:flood');
  process.exit(1);
}
const impls = ['keymesh', 'wireguard-go', ...(process.env.WG_GO_MODERN ? [process.env.WG_GO_MODERN] : [])];
const only = process.env.FLOOD_ONLY;
const results: Result[] = [];
for (const impl of impls) if (!only || impl.includes(only)) results.push(await run(impl));
const f1 = (v: number) => v.toFixed(1);
console.log(`Handshake flood: 64 spoofed sources, valid-mac1 initiations for ${FLOOD_SECONDS} s; then ${JUNK} junk datagrams (netns/flood-lab.ts)\n`);
console.log(
  `${'responder'.padEnd(34)} ${'attack/s'.padStart(9)} ${'E loss'.padStart(7)} ${'N in (ms)'.padStart(10)} ${'N up (ms)'.padStart(10)} ${'rcvbuf drops'.padStart(13)} ${'CPU'.padStart(6)} ${'cookies/s'.padStart(10)} ${'RSS MB before/junk/later'.padStart(25)} ${'R up quiet / flooded / reached (ms)'.padStart(36)}`,
);
for (const r of results) {
  console.log(
    `${r.responder.padEnd(34)} ${String(r.attackPerSecond).padStart(9)} ${`${f1(r.pingLossPct)} %`.padStart(7)} ${String(r.newPeerFirstAnswerMs ?? '—').padStart(10)} ${String(r.upMs).padStart(10)} ${String(r.rcvbufErrors).padStart(13)} ${`${Math.round(r.cpuPct)} %`.padStart(6)} ${String(r.cookieRepliesPerSecond).padStart(10)} ${`${f1(r.rssBeforeMB)} / ${f1(r.rssAfterJunkMB)} / ${f1(r.rssLaterMB)}`.padStart(25)} ${`${r.quietUpMs} / ${r.restartUpMs} / ${r.restartReachedMs ?? '—'}`.padStart(36)}`,
  );
}
mkdirSync('bench-results', { recursive: true });
writeFileSync('bench-results/flood.json', JSON.stringify(results, null, 2));
process.exit(0);
