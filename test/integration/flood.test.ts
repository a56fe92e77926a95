/**
 * Under attack (topology netns/flood-lab.ts; the long version is `npm run bench:flood`): while an
 * attacker with 64 source addresses floods the responder's port with valid-mac1 handshake
 * initiations, the established peer's pings (every 50 ms) keep getting through, and a new peer
 * that comes up in the middle of it gets in with a cookie round trip — within 2 s of its `up`,
 * where WireGuard's initiator would wait its 5 s retry timer.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpuSeconds, FLOOD_ADDR, FLOOD_TUNNEL, floodTopology, pingSummary, rcvbufErrors, socketDrops } from '../../netns/flood-lab.js';
import { canRunNetns, KEYMESH_BIN, Lab, ping, REPO, sh, sleep, startKeymesh, waitFor, type Proc } from '../../netns/lib.js';

const skip = canRunNetns();
const FLOOD = path.join(REPO, 'dist', 'netns', 'flood.js');
const SECONDS = 6;
/** The rate the issue measured (~54,000 a second, ≈ 66 Mbit/s); the bench also runs as fast as the attacker can. */
const RATE = 54_000;

function replyTimes(p: Proc): number[] {
  return [...p.output.matchAll(/^\[(\d+\.\d+)\] \d+ bytes from/gm)].map((m) => Math.round(Number(m[1]) * 1000));
}

describe.skipIf(skip)('handshake flood', () => {
  let lab: Lab;
  let t: ReturnType<typeof floodTopology>;
  const pids: Record<string, number> = {};

  beforeAll(async () => {
    lab = new Lab();
    t = floodTopology(lab);
    pids.r = (await startKeymesh(lab, t.r)).child.pid!;
    pids.e = (await startKeymesh(lab, t.e)).child.pid!;
    await waitFor('E reaches R', () => ping(lab, t.e.ns, FLOOD_TUNNEL.r, 1), 10_000, 200);
  }, 60_000);

  afterAll(async () => {
    await lab?.cleanup();
  });

  it('the established session keeps its pings and a new peer gets in within 2 s, during a flood of valid-mac1 initiations', async () => {
    const rcv0 = rcvbufErrors(lab, t.r.ns);
    const cpu0 = { r: cpuSeconds(pids.r), e: cpuSeconds(pids.e) };
    const pinger = lab.spawn(t.e.ns, ['ping', '-D', '-n', '-i', '0.05', '-W', '1', FLOOD_TUNNEL.r], 'ping E→R');
    await sleep(500);
    const from = Date.now();
    const attacker = lab.spawn(
      t.attackerNs,
      [process.execPath, FLOOD, '--target', `${FLOOD_ADDR.r}:51820`, '--kind', 'initiations', '--key', t.keys.r, '--sources', `${FLOOD_ADDR.attackerFirst},${FLOOD_ADDR.attackers}`, '--seconds', String(SECONDS), '--rate', String(RATE)],
      'attacker',
    );
    await sleep(2000);
    await startKeymesh(lab, t.n);
    const nUp = Date.now();
    const nPing = lab.spawn(t.n.ns, ['ping', '-D', '-n', '-i', '0.1', '-W', '1', '-w', String(SECONDS), FLOOD_TUNNEL.r], 'ping N→R');
    await attacker.exited;
    const to = Date.now();
    await sleep(300); // the last pings' answers
    const cpu = { r: Math.round(((cpuSeconds(pids.r) - cpu0.r) / ((to - from) / 1000)) * 100), e: Math.round(((cpuSeconds(pids.e) - cpu0.e) / ((to - from) / 1000)) * 100) };
    await pinger.stop('SIGINT', 3000);
    await nPing.stop('SIGINT', 3000);
    const flood = JSON.parse(attacker.output.trim().split('\n').pop()!);
    const stats = JSON.parse(sh(process.execPath, [KEYMESH_BIN, 'show', t.r.ifname, '--json'])).stats;
    // the established peer pinged from 0.5 s before the flood to its end (ping's own count)
    const { sent, loss } = pingSummary(pinger.output);
    const nFirst = replyTimes(nPing)[0];
    // which pings went unanswered, and the slowest answer
    const seqs = [...pinger.output.matchAll(/icmp_seq=(\d+) ttl=\d+ time=([\d.]+)/g)].map((m) => ({ seq: Number(m[1]), ms: Number(m[2]) }));
    const got = new Set(seqs.map((x) => x.seq));
    const missing: number[] = [];
    for (let s = seqs[0]?.seq ?? 1; s <= (seqs.at(-1)?.seq ?? 0); s++) if (!got.has(s)) missing.push(s);
    const slowestMs = Math.max(0, ...seqs.map((x) => x.ms));
    const figures = {
      attackPerSecond: flood.perSecond,
      cookieRepliesPerSecond: Math.round(flood.cookieReplies / flood.seconds),
      pingLossPct: Math.round(loss * 1000) / 10,
      pingsSent: sent,
      pingsMissing: missing,
      slowestPingMs: slowestMs,
      newPeerInMs: nFirst === undefined ? null : nFirst - nUp,
      rcvbufErrors: rcvbufErrors(lab, t.r.ns) - rcv0,
      socketDrops: socketDrops(lab, t.r.ns, 51820),
      cpuPct: cpu,
      drops: { cookieSent: stats.drops.cookieSent, cookieShed: stats.drops.cookieShed, handshakeShed: stats.drops.handshakeShed, rateLimited: stats.drops.rateLimited },
    };
    console.log(`flood: ${JSON.stringify(figures)}`);
    const why = `${JSON.stringify(figures)}\n${lab.logs().slice(-6000)}`;
    expect(flood.perSecond, why).toBeGreaterThan(RATE * 0.8); // it really was that flood
    expect(stats.drops.cookieSent, why).toBeGreaterThan(0);
    expect(loss, why).toBeLessThan(0.01);
    expect(nFirst, why).toBeDefined();
    expect(nFirst! - nUp, why).toBeLessThanOrEqual(2000);
  }, 60_000);
});
