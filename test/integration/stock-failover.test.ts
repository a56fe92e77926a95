/**
 * Failover against a STOCK WireGuard server (Debian's wireguard-go), which speaks none of keymesh's
 * extension messages: the only thing a stock server answers is a handshake initiation, and it
 * answers to the initiation's source and moves its endpoint there (roaming, whitepaper §2.1).
 * So a keymesh client that wants a second path must send an initiation from that path's local end.
 *
 *                 ┌── u1 10.1.0.2 ── [R1] ──┐
 *   C (keymesh) ──┤   preferred (metric 100) ├── br0 ── S (wireguard-go) 203.0.113.10
 *   tunnel 10.0.0.1└── u2 10.2.0.2 ── [R2] ──┘          tunnel 10.0.0.2
 *                     spare (metric 200)
 *
 * (a), (b): R1 silently drops everything it forwards (nftables, both directions); its links and
 * C's routes stay up, so routing alone keeps sending into u1.
 *
 * Topology netns/two-uplinks.ts ((a), (b), (d)) and netns/two-hosts.ts ((c), dual-stack). Every case
 * runs a 2 ms UDP echo probe through the tunnel (longest silence) and a paced TCP stream whose
 * sha256 must match at the far end. Which uplink carries the session is read at both ends: S's
 * endpoint (`wg show … endpoints`: where wireguard-go sends) and C's active path's local end
 * (`keymesh show --json`). wireguard-go runs with LOG_LEVEL=verbose, so its log says which
 * initiations it accepted, and a failure prints both ends' state.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { canRunNetns, KEYMESH_BIN, Lab, ping, sh, sleep, startKeymesh, startProbe, startWireguardGo, tcpTransfer, waitFor, type NodeSpec } from '../../netns/lib.js';
import { TUNNEL, twoHosts, UNDERLAY } from '../../netns/two-hosts.js';
import { twoUplinks } from '../../netns/two-uplinks.js';

/** The longest probe silence a failover (or a return to the preferred uplink) may cause. */
const OUTAGE_MAX_MS = 1000;
/** How long after the preferred uplink works again traffic must be back on it. */
const RETURN_MAX_MS = 10_000;
/** How long the harness waits for a failover before it gives up and reports the silence. */
const FAILOVER_WAIT_MS = 15_000;
/** The TCP stream's pace: steady traffic, so the engine sees data sent and nothing coming back. */
const RATE = 8_000_000;
/** (d): steady traffic on a healthy path, shorter than REKEY_AFTER_TIME (120 s). */
const STEADY_MS = 60_000;

const U1 = '10.1.0.2:51820';
const U2 = '10.2.0.2:51820';

function prerequisites(): string | null {
  const netns = canRunNetns();
  if (netns) return netns;
  for (const [tool, args, pkg] of [
    ['wireguard-go', ['--version'], 'wireguard-go'],
    ['wg', ['--version'], 'wireguard-tools'],
    ['nft', ['--version'], 'nftables'],
  ] as const) {
    try {
      sh(tool, [...args]);
    } catch {
      return `needs ${tool} (Debian package ${pkg})`;
    }
  }
  return null;
}
const skip = prerequisites();

let lab: Lab | null = null;
afterEach(async () => {
  await lab?.cleanup();
  lab = null;
});

// ───────────────────────────── reading both ends ─────────────────────────────

interface StockPaths {
  phase: string;
  handshakes: number;
  results: Array<{ path: string; ok: boolean; secondsAgo: number }>;
}

function showJson(c: NodeSpec): any {
  return JSON.parse(sh(process.execPath, [KEYMESH_BIN, 'show', '--json', c.ifname]));
}

/** Where wireguard-go sends to its one peer ("10.1.0.2:51820"). */
function serverEndpoint(s: NodeSpec): string {
  return sh('wg', ['show', s.ifname, 'endpoints']).trim().split('\t')[1] ?? '';
}

/** wireguard-go's last handshake with its one peer, in Unix seconds (0: none). */
function serverLatestHandshake(s: NodeSpec): number {
  return Number(sh('wg', ['show', s.ifname, 'latest-handshakes']).trim().split('\t')[1] ?? 0);
}

/** Initiations wireguard-go accepted (verbose log), and those it refused as replay or flood. */
function serverInitiations(lab: Lab, s: NodeSpec): { accepted: number; refused: number } {
  const log = lab.logs().split('\n').filter((l) => l.includes(`(${s.ifname})`));
  return {
    accepted: log.filter((l) => l.includes('Received handshake initiation')).length,
    refused: log.filter((l) => /ConsumeMessageInitiation: handshake (replay|flood)/.test(l)).length,
  };
}

/** The source address C's active path leaves from ("10.2.0.2"), or null (none, or routing chooses). */
function activeLocal(j: any): string | null {
  const a = (j.peers?.[0]?.paths ?? []).find((p: any) => p.active);
  return a?.local ? String(a.local).split('%')[0] : null;
}

/** The stock-path failover's counters (issue 16); a clear error while the engine does not have them. */
function stockPathsOf(j: any): { total: number; peer: StockPaths } {
  const total = j.stats?.stockPathHandshakes;
  const peer = j.peers?.[0]?.stockPaths;
  if (typeof total !== 'number' || !peer || typeof peer.handshakes !== 'number') {
    throw new Error(
      'keymesh show --json has no stats.stockPathHandshakes / peers[0].stockPaths { phase, handshakes, results }: ' +
        'this build has no failover by handshake for stock peers (issue 16)',
    );
  }
  return { total, peer };
}

/** Both ends' state and every process's output, for a failure's message. */
function explain(lab: Lab, c: NodeSpec, s: NodeSpec): string {
  const parts: string[] = [];
  try {
    parts.push(`--- keymesh show --json (C) ---\n${sh(process.execPath, [KEYMESH_BIN, 'show', '--json', c.ifname])}`);
  } catch (e) {
    parts.push(`--- keymesh show --json (C) failed: ${(e as Error).message}`);
  }
  try {
    parts.push(`--- wg show (S) ---\n${sh('wg', ['show', s.ifname])}`);
  } catch (e) {
    parts.push(`--- wg show (S) failed: ${(e as Error).message}`);
  }
  return `\n${parts.join('\n')}\n${lab.logs()}`;
}

/**
 * Run a case's checks; a failure's message gets both ends' state. Read only on failure, while the
 * lab still runs: each `keymesh show` is a Node start (~0.3 s), too slow to compute for every expect.
 */
async function explained<T>(lab: Lab, c: NodeSpec, s: NodeSpec, checks: () => Promise<T>): Promise<T> {
  try {
    return await checks();
  } catch (e) {
    if (e instanceof Error) e.message += explain(lab, c, s);
    throw e;
  }
}

/** R1 silently drops everything it would forward, both directions; links and routes stay up. */
function blackhole(lab: Lab, r1: string): void {
  lab.exec(r1, ['nft', '-f', '-'], 'table inet kmr1 { chain kmfwd { type filter hook forward priority 0; drop; }; }');
}

/** Wait up to `ms` for `pred`; the milliseconds it took, or null if it never held. */
async function timeUntil(pred: () => boolean, ms: number, stepMs = 20): Promise<number | null> {
  const t0 = Date.now();
  return waitFor('', pred, ms, stepMs).then(
    () => Date.now() - t0,
    () => null,
  );
}

/** "1234 ms, from 20 ms after the blackhole" (and whether it lasted to the end of the observation). */
function describeGap(p: { maxGapMs: number; gapAtMs: number }, eventAtMs: number, probeMs: number): string {
  const open = p.gapAtMs + p.maxGapMs >= probeMs - 100 ? ' (no echo since: still silent when the probe stopped)' : '';
  return `${p.maxGapMs} ms, from ${p.gapAtMs - eventAtMs} ms after the event${open}`;
}

/**
 * C (keymesh) and S (wireguard-go) on the two-uplink topology, a session up via u1, an echo probe
 * every 2 ms and a paced TCP stream of `streamSeconds` running; then `checks`, explained on failure.
 */
async function withTraffic(
  streamSeconds: number,
  checks: (t: { lab: Lab; c: NodeSpec; s: NodeSpec; r1: string; probe: Probe; probeStart: number; transfer: Transfer }) => Promise<void>,
): Promise<void> {
  const l = (lab = new Lab());
  const { c, s, r1 } = twoUplinks(l);
  s.env = { LOG_LEVEL: 'verbose' };
  await explained(l, c, s, async () => {
    await startWireguardGo(l, s);
    await startKeymesh(l, c);
    expect(ping(l, c.ns, '10.0.0.2'), 'no tunnel via u1 at the start').toBe(true);
    expect(serverEndpoint(s)).toBe(U1);
    const probe = await startProbe(l, c.ns, s.ns, '10.0.0.2', 2);
    const probeStart = Date.now(); // the probe's own clock started up to 50 ms before
    const transfer = tcpTransfer(l, c.ns, s.ns, '10.0.0.2', RATE * streamSeconds, 5201, RATE);
    transfer.catch(() => {}); // awaited later, or abandoned when an earlier check fails
    await sleep(1000);
    await checks({ lab: l, c, s, r1, probe, probeStart, transfer });
  });
}

type Probe = Awaited<ReturnType<typeof startProbe>>;
type Transfer = ReturnType<typeof tcpTransfer>;

describe.skipIf(skip)(`failover against a stock WireGuard server (keymesh client, wireguard-go server)${skip ? ` — skipped: ${skip}` : ''}`, () => {
  it(`(a) the active uplink is silently blackholed under a 2 ms probe and a TCP stream: silence ≤ ${OUTAGE_MAX_MS} ms, TCP survives`, async () => {
    await withTraffic(6, async ({ lab, c, s, r1, probe, probeStart, transfer }) => {
      const at = Date.now();
      blackhole(lab, r1);
      const movedMs = await timeUntil(() => serverEndpoint(s) === U2, FAILOVER_WAIT_MS);
      await sleep(1500);
      const probeMs = Date.now() - probeStart;
      const p = await probe.stop();
      console.log(
        `(a) active uplink blackholed: longest probe silence ${describeGap(p, at - probeStart, probeMs)}; ` +
          (movedMs === null ? `S still sent to ${serverEndpoint(s)} after ${FAILOVER_WAIT_MS} ms` : `S moved to u2 after ${movedMs} ms`) +
          `; initiations S accepted ${JSON.stringify(serverInitiations(lab, s))}`,
      );
      expect(p.maxGapMs, `longest probe silence (probe ${JSON.stringify(p)})`).toBeLessThanOrEqual(OUTAGE_MAX_MS);
      expect(serverEndpoint(s), 'where S sends').toBe(U2);
      expect(activeLocal(showJson(c)), "the local end of C's active path").toBe('10.2.0.2');
      const t = await transfer;
      expect(t.received.sha256, 'the TCP stream across the failover').toBe(t.sent.sha256);
      const stock = stockPathsOf(showJson(c));
      console.log(`(a) stock paths: ${JSON.stringify(stock)}`);
      expect(stock.total, 'stats.stockPathHandshakes after a failover').toBeGreaterThanOrEqual(1);
    });
  }, 60_000);

  it(`(b) …and the blackhole removed: traffic returns to u1 within ${RETURN_MAX_MS / 1000} s with no second outage (silence ≤ ${OUTAGE_MAX_MS} ms)`, async () => {
    await withTraffic(22, async ({ lab, c, s, r1, probe, transfer }) => {
      blackhole(lab, r1);
      const movedMs = await timeUntil(() => serverEndpoint(s) === U2, FAILOVER_WAIT_MS);
      const p1 = await probe.stop();
      expect(movedMs, `(b) needs the failover of (a) first: S still sends to ${serverEndpoint(s)} ${FAILOVER_WAIT_MS} ms after the blackhole`).not.toBeNull();
      await sleep(1000);
      const probe2 = await startProbe(lab, c.ns, s.ns, '10.0.0.2', 2, 7778);
      const probeStart = Date.now();
      await sleep(500);
      const at = Date.now();
      lab.exec(r1, ['nft', 'delete table inet kmr1']);
      // Both ends on u1 at once: wireguard-go follows the source of every authenticated packet, so
      // its endpoint alone can flip back and forth while C still sends some data via u2.
      const onU1 = () => serverEndpoint(s) === U1 && activeLocal(showJson(c)) === '10.1.0.2';
      const returnMs = await timeUntil(onU1, RETURN_MAX_MS + 2000, 50);
      await sleep(1000);
      const stable = onU1();
      const probeMs = Date.now() - probeStart;
      const p2 = await probe2.stop();
      console.log(
        `(b) failover took ${movedMs} ms (silence ${p1.maxGapMs} ms); after the blackhole was removed: ` +
          (returnMs === null ? `still on ${serverEndpoint(s)} after ${RETURN_MAX_MS + 2000} ms` : `back on u1 after ${returnMs} ms${stable ? '' : ' (but not 1 s later)'}`) +
          `, longest probe silence around the return ${describeGap(p2, at - probeStart, probeMs)}; initiations S accepted ${JSON.stringify(serverInitiations(lab, s))}`,
      );
      expect(returnMs, `traffic did not return to u1 within ${RETURN_MAX_MS + 2000} ms`).not.toBeNull();
      expect(returnMs!, 'ms until both ends were back on u1').toBeLessThanOrEqual(RETURN_MAX_MS);
      expect(stable, 'back on u1 but not 1 s later (flapping)').toBe(true);
      expect(p2.maxGapMs, `longest probe silence around the return (probe ${JSON.stringify(p2)})`).toBeLessThanOrEqual(OUTAGE_MAX_MS);
      const t = await transfer;
      expect(t.received.sha256, 'the TCP stream across failover and return').toBe(t.sent.sha256);
      console.log(`(b) stock paths: ${JSON.stringify(stockPathsOf(showJson(c)))}`);
    });
  }, 90_000);

  /**
   * (c) needs the server's IPv6 address at the client, and a stock server announces nothing: it
   * comes from the Endpoint's host name, which has both an A and an AAAA record (keymesh keeps
   * every address of the name as a candidate: src/io/reresolve.ts, learnAll).
   */
  const caseC = `(c) the IPv4 underlay is lost while IPv6 remains (Endpoint: a name with A and AAAA): silence ≤ ${OUTAGE_MAX_MS} ms, TCP survives`;
  {
    it(caseC, async () => {
      const l = (lab = new Lab());
      const { a: c, b: s } = twoHosts(l);
      s.env = { LOG_LEVEL: 'verbose' };
      // `ip netns exec` shows /etc/netns/NS/hosts as /etc/hosts inside the namespace
      const etc = `/etc/netns/${c.ns}`;
      mkdirSync(etc, { recursive: true });
      try {
        writeFileSync(`${etc}/hosts`, `127.0.0.1 localhost\n${UNDERLAY.b} kmserver.test\n${UNDERLAY.b6} kmserver.test\n`);
        c.peers[0].endpoint = 'kmserver.test:51820';
        await explained(l, c, s, async () => {
          await startWireguardGo(l, s);
          await startKeymesh(l, c);
          expect(ping(l, c.ns, TUNNEL.b), 'no tunnel over IPv4 at the start').toBe(true);
          expect(serverEndpoint(s)).toBe(`${UNDERLAY.a}:51820`);
          const probe = await startProbe(l, c.ns, s.ns, TUNNEL.b, 2);
          const probeStart = Date.now();
          const transfer = tcpTransfer(l, c.ns, s.ns, TUNNEL.b, RATE * 6, 5201, RATE);
          transfer.catch(() => {});
          await sleep(1000);
          const at = Date.now();
          // IPv4 silently stops working (the link stays up): every IPv4 tunnel datagram dropped at S
          l.exec(s.ns, ['nft', '-f', '-'], 'table ip kmdrop { chain kmin { type filter hook input priority 0; udp dport 51820 drop; }; chain kmout { type filter hook output priority 0; udp sport 51820 drop; }; }');
          const v6 = `[${UNDERLAY.a6}]:51820`;
          const movedMs = await timeUntil(() => serverEndpoint(s) === v6, FAILOVER_WAIT_MS);
          await sleep(1500);
          const probeMs = Date.now() - probeStart;
          const p = await probe.stop();
          console.log(
            `(c) IPv4 lost: longest probe silence ${describeGap(p, at - probeStart, probeMs)}; ` +
              (movedMs === null ? `S still sent to ${serverEndpoint(s)} after ${FAILOVER_WAIT_MS} ms` : `S moved to IPv6 after ${movedMs} ms`),
          );
          expect(p.maxGapMs, `longest probe silence (probe ${JSON.stringify(p)})`).toBeLessThanOrEqual(OUTAGE_MAX_MS);
          expect(serverEndpoint(s), 'where S sends').toBe(v6);
          const t = await transfer;
          expect(t.received.sha256, 'the TCP stream across the failover').toBe(t.sent.sha256);
        });
      } finally {
        rmSync(etc, { recursive: true, force: true });
      }
    }, 60_000);
  }

  it(`(d) no extra handshakes in ${STEADY_MS / 1000} s of steady traffic on a healthy path`, async () => {
    const l = (lab = new Lab());
    const { c, s } = twoUplinks(l);
    s.env = { LOG_LEVEL: 'verbose' };
    await explained(l, c, s, async () => {
      await startWireguardGo(l, s);
      await startKeymesh(l, c);
      expect(ping(l, c.ns, '10.0.0.2'), 'no tunnel via u1 at the start').toBe(true);
      // (ping ran synchronously: wireguard-go's log of the first handshake is read only now)
      await waitFor("wireguard-go's log of the first handshake", () => serverInitiations(l, s).accepted >= 1, 3000);
      const before = { s: serverLatestHandshake(s), initiations: serverInitiations(l, s), c: showJson(c) };
      expect(before.s, 'wireguard-go has no handshake after the first ping').toBeGreaterThan(0);
      const probe = await startProbe(l, c.ns, s.ns, '10.0.0.2', 2);
      const transfer = tcpTransfer(l, c.ns, s.ns, '10.0.0.2', (RATE / 4) * (STEADY_MS / 1000 - 2), 5201, RATE / 4);
      transfer.catch(() => {});
      await sleep(STEADY_MS);
      const p = await probe.stop();
      const t = await transfer;
      const after = { s: serverLatestHandshake(s), initiations: serverInitiations(l, s), c: showJson(c) };
      const stockBefore = before.c.stats?.stockPathHandshakes;
      const stockAfter = after.c.stats?.stockPathHandshakes;
      console.log(
        `(d) ${STEADY_MS / 1000} s steady: wireguard-go's latest handshake ${before.s} → ${after.s}, initiations it accepted ` +
          `${before.initiations.accepted} → ${after.initiations.accepted}; keymesh: initiations sent ${before.c.stats.handshakesSent} → ${after.c.stats.handshakesSent}, ` +
          `peer handshakes ${before.c.peers[0].handshakes} → ${after.c.peers[0].handshakes}, stockPathHandshakes ` +
          (stockAfter === undefined ? '(not in show --json: engine without issue 16)' : `${stockBefore} → ${stockAfter}`) +
          `; longest probe silence ${p.maxGapMs} ms`,
      );
      expect(t.received.sha256, 'the TCP stream').toBe(t.sent.sha256);
      expect(after.initiations.accepted, 'initiations wireguard-go accepted during steady traffic').toBe(before.initiations.accepted);
      expect(after.s, "wireguard-go's latest handshake").toBe(before.s);
      expect(after.c.stats.handshakesSent, 'initiations keymesh sent during steady traffic').toBe(before.c.stats.handshakesSent);
      expect(after.c.peers[0].handshakes, "keymesh's handshakes with the peer").toBe(before.c.peers[0].handshakes);
      if (stockAfter !== undefined) expect(stockAfter, 'stats.stockPathHandshakes').toBe(stockBefore);
      expect(serverEndpoint(s), 'where S sends').toBe(U1);
    });
  }, 75_000);
});
