/**
 * Path MTU (issue 15), in the lab of netns/pmtu-lab.ts: A — R — B, R's link towards B at 1280 or
 * 1400 bytes and R dropping ICMP "fragmentation needed" / "packet too big", so the path's MTU is a
 * black hole for whoever sends big datagrams from the 1500 side. Per run (keymesh ↔ keymesh):
 *   - a 1400-byte inner UDP datagram sent without DF arrives whole (keymesh fragments it inside
 *     the tunnel, the receiver's kernel reassembles);
 *   - 20 MB over TCP each way, sha256 matching, never stalling 5 s;
 *   - `ping -M do` of 1420 bytes (IPv4 and IPv6 inside) is answered by keymesh with "Frag needed
 *     and DF set (mtu = N)" / "Packet too big: mtu=N", N the peer's `tunnelMtu` in `keymesh show
 *     --json`, which fits the path (≤ P − outer IPv4/IPv6 − UDP − 32, ≥ P − 100); for IPv6
 *     inside N is 1280 where tunnelMtu is below it (the least an IPv6 link may carry);
 *   - no outer datagram was fragmented: R's counters of fragments on its ports and the kernels'
 *     FragCreates (A, B, R) did not move during the run;
 *   - on a 1280 path, after those: a 1280-byte IPv6 packet is still carried (RFC 8200 §5).
 * Then keymesh ↔ wireguard-go (keymesh on the small side with ICMP dropped, on the big side with
 * ICMP passed), the MTU dropping 1500 → 1280 under a running transfer (longest stall ≤ 1 s,
 * printed; no outer fragments), and a relayed pair (netns/nat-matrix.ts's symmetric ↔ symmetric) on a 1500 underlay
 * whose relay overhead must not fragment. The 1500 run is the control: it passes without any
 * path-MTU work. Figures are printed per case.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { controlRequest } from '../../src/io/control.js';
import { canRunNetns, Lab, sh, sleep, startKeymesh, waitFor, type Proc } from '../../netns/lib.js';
import {
  fragDelta,
  fragTotal,
  longestGap,
  pingDf,
  pmtuLab,
  PMTU_TUNNEL,
  relayedLab,
  transfer,
  tunnelUp,
  udpNoDf,
  WG_OVERHEAD,
  type FragCounters,
  type Pair,
  type PmtuLab,
} from '../../netns/pmtu-lab.js';

const skip = canRunNetns();
const hasWgGo = (() => {
  try {
    sh('which', ['wireguard-go']);
    return true;
  } catch {
    return false;
  }
})();
const MB20 = 20 * 1024 * 1024;
/** A transfer is given up after this long without a byte (a black hole does not fail, it waits). */
const STALL_MS = 5000;

/** The one peer of a node's `keymesh show --json`, its active path and that path's pmtu. */
function peerMtu(status: any): { tunnelMtu: number | undefined; pmtu: { mtu: number; state: string; source: string } | undefined; family: 4 | 6 | undefined } {
  const peer = status?.peers?.[0];
  const active = peer?.paths?.find((p: any) => p.active);
  const family = typeof active?.path === 'string' ? (active.path.startsWith('[') ? 6 : 4) : undefined;
  return { tunnelMtu: peer?.tunnelMtu, pmtu: active?.pmtu, family };
}

/** Run `fn`; when it throws, add both ends' `keymesh show --json` and logs to the message. */
async function explained<T>(dump: () => Promise<string>, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    const err = e as Error;
    err.message = `${err.message}\n${await dump()}`;
    throw err;
  }
}

const report: string[] = [];
const note = (line: string) => {
  report.push(line);
  console.log(line);
};

describe.skipIf(skip)('path MTU', () => {
  let lab: Lab;
  let t: PmtuLab;

  beforeAll(() => {
    lab = new Lab();
    t = pmtuLab(lab);
  });

  afterAll(async () => {
    console.log(`pmtu summary:\n  ${report.join('\n  ')}`);
    await lab?.cleanup();
  });

  const RUNS: Array<{ mtu: number; underlay: 4 | 6 }> = [
    { mtu: 1500, underlay: 4 }, // the control
    { mtu: 1280, underlay: 4 },
    { mtu: 1280, underlay: 6 },
    { mtu: 1400, underlay: 6 },
  ];

  for (const { mtu, underlay } of RUNS) {
    const name = `R–B ${mtu}, IPv${underlay} underlay`;
    describe(`keymesh ↔ keymesh, R–B link MTU ${mtu}, IPv${underlay} underlay, ICMP dropped${mtu === 1500 ? ' (control)' : ''}`, () => {
      let pair: Pair;
      let before: FragCounters;
      /** The inner MTU a path of `mtu` can carry at most, and the least a sensible one leaves. */
      const bound = Math.min(1420, mtu - WG_OVERHEAD[underlay]);
      const floor = Math.min(1420, mtu - 100);

      beforeAll(async () => {
        t.forgetPmtu();
        t.setLinkMtu(mtu);
        t.dropIcmp(true);
        pair = await t.start({ a: 'keymesh', b: 'keymesh', underlay });
        await explained(() => pair.dump(), () => tunnelUp(lab, t.nsA, PMTU_TUNNEL.b));
        before = t.fragments();
      });

      afterAll(async () => {
        await pair?.stop();
      });

      it('a 1400-byte inner UDP datagram without DF arrives whole, both ways', async () => {
        await explained(() => pair.dump(), async () => {
          const ab = await udpNoDf(lab, t.nsA, t.nsB, PMTU_TUNNEL.b, 1400, 3);
          const ba = await udpNoDf(lab, t.nsB, t.nsA, PMTU_TUNNEL.a, 1400, 3);
          note(`${name}: no-DF 1400-byte UDP: A→B ${ab.arrivedWhole}/${ab.sent} whole, B→A ${ba.arrivedWhole}/${ba.sent} whole`);
          expect(ab.arrivedWhole, `A→B: ${JSON.stringify(ab)}`).toBeGreaterThanOrEqual(1);
          expect(ba.arrivedWhole, `B→A: ${JSON.stringify(ba)}`).toBeGreaterThanOrEqual(1);
        });
      });

      it('20 MB over TCP each way: sha256 matches, no stall of 5 s', async () => {
        await explained(() => pair.dump(), async () => {
          for (const [dir, from, to, addr] of [
            ['A→B', t.nsA, t.nsB, PMTU_TUNNEL.b],
            ['B→A', t.nsB, t.nsA, PMTU_TUNNEL.a],
          ] as const) {
            const r = await transfer(lab, from, to, addr, { bytes: MB20, stallMs: STALL_MS, deadlineMs: 40_000 });
            const gap = r.received ? longestGap(r.received).gapMs : null;
            note(`${name}: TCP 20 MB ${dir}: ${r.ok ? `ok in ${r.seconds.toFixed(2)} s, longest gap ${gap} ms` : `FAILED: ${r.stalled ?? 'hash mismatch'}`}`);
            expect(r.stalled, `${dir}`).toBeNull();
            expect(r.ok, `${dir}: ${JSON.stringify({ sent: r.sent, received: r.received && { bytes: r.received.bytes, sha256: r.received.sha256 } })}`).toBe(true);
          }
        });
      }, 100_000);

      /**
       * `ping -M do` of 1420 bytes from both ends (both sides' figures are printed before either is
       * asserted): answered on the control run; else keymesh's ICMP carries the peer's tunnelMtu.
       * IPv6 links carry 1280 at least (RFC 8200 §5), and Linux ignores a packet too big below
       * 1280 (no PMTU is cached, TCP drops it): where the tunnelMtu is below that, keymesh must
       * say 1280 (and carry 1280-byte IPv6 packets: the last case of the run).
       */
      const dfPing = async (family: 4 | 6) => {
        const looks: Array<{ side: string; p: ReturnType<typeof pingDf>; s0: ReturnType<typeof peerMtu>; s1: ReturnType<typeof peerMtu> }> = [];
        for (const [side, from, addr] of [
          ['A', t.nsA, family === 4 ? PMTU_TUNNEL.b : PMTU_TUNNEL.b6],
          ['B', t.nsB, family === 4 ? PMTU_TUNNEL.a : PMTU_TUNNEL.a6],
        ] as const) {
          const s0 = peerMtu(await pair.show(side === 'A' ? 'a' : 'b'));
          const p = pingDf(lab, from, addr, family === 4 ? 1392 : 1372);
          const s1 = peerMtu(await pair.show(side === 'A' ? 'a' : 'b'));
          looks.push({ side, p, s0, s1 });
          const what = p.tooBig !== null ? `${family === 4 ? 'Frag needed' : 'Packet too big'} (mtu ${p.tooBig})` : p.localMtu !== null ? `local error mtu=${p.localMtu}` : `${p.replies} replies`;
          note(`${name}: ${side}: ping${family === 6 ? ' -6' : ''} -M do -s ${family === 4 ? 1392 : 1372} → ${what}; tunnelMtu ${s1.tunnelMtu}, path pmtu ${JSON.stringify(s1.pmtu)}`);
        }
        for (const { side, p, s0, s1 } of looks) {
          const why = `${side}: ${p.out}\nshow before/after: ${JSON.stringify(s0)} ${JSON.stringify(s1)}`;
          if (mtu === 1500) {
            expect(p.replies, why).toBeGreaterThanOrEqual(1);
            if (s1.tunnelMtu !== undefined) expect(s1.tunnelMtu, why).toBeGreaterThanOrEqual(1420);
            continue;
          }
          expect(s1.tunnelMtu, `${why}\n(no tunnelMtu in keymesh show --json)`).toBeTypeOf('number');
          // the bound of the active path's family: B announces both its addresses (ADDRESSES), and
          // a keymesh pair may settle on the other family's path than the Endpoint's (both validated)
          const activeBound = s1.family ? Math.min(1420, mtu - WG_OVERHEAD[s1.family]) : bound;
          expect(s1.tunnelMtu!, why).toBeLessThanOrEqual(activeBound);
          expect(s1.tunnelMtu!, why).toBeGreaterThanOrEqual(floor);
          expect(s1.pmtu?.mtu, why).toBeTypeOf('number');
          expect(s1.pmtu!.mtu, why).toBeLessThanOrEqual(mtu);
          expect(p.tooBig, `${why}\n(no "${family === 4 ? 'Frag needed and DF set (mtu = N)' : 'Packet too big: mtu=N'}" came back)`).not.toBeNull();
          const allowed = family === 6 && s1.tunnelMtu! < 1280 ? [1280] : [s0.tunnelMtu, s1.tunnelMtu];
          expect(allowed, why).toContain(p.tooBig);
        }
      };

      it(`ping -M do of 1420 bytes (IPv4 inside), both ends: ${mtu === 1500 ? 'answered' : '"Frag needed and DF set (mtu = tunnelMtu)" from keymesh'}`, async () => {
        await explained(() => pair.dump(), () => dfPing(4));
      });

      it(`ping -6 -M do of 1420 bytes (IPv6 inside), both ends: ${mtu === 1500 ? 'answered' : `"Packet too big: mtu=${bound < 1280 ? '1280' : 'tunnelMtu'}" from keymesh`}`, async () => {
        await explained(() => pair.dump(), () => dfPing(6));
      });

      it('no outer datagram was fragmented: R saw no fragments, FragCreates at A, B and R unchanged', async () => {
        await explained(() => pair.dump(), async () => {
          const d = fragDelta(before, t.fragments());
          note(`${name}: outer fragments during the run: ${JSON.stringify(d)}; R dropped ${t.icmpDropCount()} frag-needed/packet-too-big so far`);
          expect(fragTotal(d), JSON.stringify(d, null, 1)).toBe(0);
        });
      });

      if (bound < 1280) {
        // After the checks above: this one may need fragments (outer, or keymesh's own) to pass.
        it("IPv6's minimum link MTU is kept: a 1280-byte inner IPv6 packet is carried (ping -6 -M do -s 1232)", async () => {
          await explained(() => pair.dump(), async () => {
            const p = pingDf(lab, t.nsA, PMTU_TUNNEL.b6, 1232);
            note(`${name}: A: ping -6 -M do -s 1232 (1280 bytes) → ${p.replies} replies${p.tooBig !== null ? `, Packet too big mtu=${p.tooBig}` : ''}`);
            expect(p.replies, p.out).toBeGreaterThanOrEqual(1);
          });
        });
      }
    });
  }

  describe.skipIf(!hasWgGo)('keymesh ↔ wireguard-go: 20 MB over TCP each way', () => {
    const CASES: Array<{ mtu: number; keymeshAt: 'a' | 'b'; dropIcmp: boolean; what: string }> = [
      { mtu: 1500, keymeshAt: 'b', dropIcmp: true, what: 'control: R–B link 1500' },
      { mtu: 1280, keymeshAt: 'b', dropIcmp: true, what: 'keymesh on the 1280 side (B), wireguard-go on A, ICMP dropped' },
      { mtu: 1280, keymeshAt: 'a', dropIcmp: false, what: 'keymesh on the 1500 side (A), wireguard-go on B, ICMP passed' },
    ];
    for (const c of CASES) {
      it(c.what, async () => {
        t.forgetPmtu();
        t.setLinkMtu(c.mtu);
        t.dropIcmp(c.dropIcmp);
        const pair = await t.start(c.keymeshAt === 'a' ? { a: 'keymesh', b: 'wireguard-go' } : { a: 'wireguard-go', b: 'keymesh' });
        try {
          await explained(() => pair.dump(), async () => {
            await tunnelUp(lab, t.nsA, PMTU_TUNNEL.b);
            const f0 = t.fragments();
            for (const [dir, from, to, addr] of [
              ['A→B', t.nsA, t.nsB, PMTU_TUNNEL.b],
              ['B→A', t.nsB, t.nsA, PMTU_TUNNEL.a],
            ] as const) {
              const r = await transfer(lab, from, to, addr, { bytes: MB20, stallMs: STALL_MS, deadlineMs: 40_000 });
              note(`wireguard-go, ${c.what}: TCP 20 MB ${dir}: ${r.ok ? `ok in ${r.seconds.toFixed(2)} s` : `FAILED: ${r.stalled ?? 'hash mismatch'}`}`);
              expect(r.stalled, dir).toBeNull();
              expect(r.ok, dir).toBe(true);
            }
            const km = peerMtu(await pair.show(c.keymeshAt));
            note(`wireguard-go, ${c.what}: outer fragments (not asserted): ${fragTotal(fragDelta(f0, t.fragments()))}; keymesh's tunnelMtu ${km.tunnelMtu}, path pmtu ${JSON.stringify(km.pmtu)}`);
          });
        } finally {
          await pair.stop();
        }
      }, 100_000);
    }
  });

  describe('the path MTU drops from 1500 to 1280 in the middle of a transfer, ICMP dropped', () => {
    for (const underlay of [4, 6] as const) {
      it(`IPv${underlay} underlay: the transfer completes, its longest stall ≤ 1 s, no outer fragments`, async () => {
        t.forgetPmtu();
        t.setLinkMtu(1500);
        t.dropIcmp(true);
        const pair = await t.start({ a: 'keymesh', b: 'keymesh', underlay });
        try {
          await explained(() => pair.dump(), async () => {
            await tunnelUp(lab, t.nsA, PMTU_TUNNEL.b);
            const f0 = t.fragments();
            let switchAt = 0;
            // 7 s of A → B (A on the 1500 side: its big datagrams are the ones R drops), the link narrowed 2 s in
            const r = await transfer(lab, t.nsA, t.nsB, PMTU_TUNNEL.b, {
              seconds: 7,
              stallMs: STALL_MS,
              during: async () => {
                await sleep(2000);
                switchAt = Date.now();
                t.setLinkMtu(1280);
              },
            });
            const after = r.received ? longestGap(r.received, switchAt) : null;
            const overall = r.received ? longestGap(r.received) : null;
            const stall = !after ? 'no receiver account' : after.gapMs === 0 ? 'no stall after the switch' : `longest stall after the switch ${after.gapMs} ms (from ${after.endWall - after.gapMs - switchAt} ms after it)`;
            const frags = fragDelta(f0, t.fragments());
            note(
              `mid-transfer 1500 → 1280, IPv${underlay} underlay: ${r.ok ? `${(r.received!.bytes / 2 ** 20).toFixed(0)} MiB ok` : `FAILED: ${r.stalled ?? 'hash mismatch'}`}; ${stall}${overall ? `, longest overall ${overall.gapMs} ms` : ''}; outer fragments ${fragTotal(frags)}`,
            );
            expect(r.stalled).toBeNull();
            expect(r.ok).toBe(true);
            expect(after!.gapMs, JSON.stringify(after)).toBeLessThanOrEqual(1000);
            // not through fragments either (on an IPv4 underlay R would fragment what has no DF)
            expect(fragTotal(frags), JSON.stringify(frags, null, 1)).toBe(0);
          });
        } finally {
          await pair.stop();
          t.setLinkMtu(1500);
        }
      }, 60_000);
    }
  });

  describe('relayed through a lighthouse (symmetric NAT both sides), 1500 underlay', () => {
    let rlab: Lab;
    let rl: ReturnType<typeof relayedLab>;
    const procs: Proc[] = [];
    let before: ReturnType<ReturnType<typeof relayedLab>['fragments']>;
    const dump = async () => {
      const out: string[] = [];
      for (const [who, spec] of [
        ['L', rl.t.l],
        ['A', rl.t.a.spec],
        ['B', rl.t.b.spec],
      ] as const) {
        try {
          out.push(`=== ${who} show ===\n${JSON.stringify((await controlRequest(spec.ifname, { op: 'status' })).status, null, 1)}`);
        } catch (e) {
          out.push(`=== ${who}: no status (${(e as Error).message}) ===`);
        }
      }
      return `${out.join('\n')}\n${rlab.logs().slice(-8000)}`;
    };

    beforeAll(async () => {
      rlab = new Lab();
      rl = relayedLab(rlab);
      procs.push(await startKeymesh(rlab, rl.t.l), await startKeymesh(rlab, rl.t.b.spec), await startKeymesh(rlab, rl.t.a.spec));
      await explained(dump, async () => {
        await tunnelUp(rlab, rl.t.a.ns, rl.tunnel.b);
        const kind = async () => (await controlRequest(rl.t.a.spec.ifname, { op: 'status' })).status.peers.find((p: any) => p.publicKey === rl.t.keys.b)?.paths.find((p: any) => p.active)?.kind;
        await waitFor('A to be on the relay path to B', async () => (await kind()) === 'relay', 5000, 100);
      });
      before = rl.fragments();
    }, 90_000);

    afterAll(async () => {
      for (const p of procs.reverse()) await p.stop('SIGTERM', 3000);
      await rlab?.cleanup();
    });

    it('a 1400-byte inner UDP datagram without DF arrives whole, both ways', async () => {
      await explained(dump, async () => {
        const ab = await udpNoDf(rlab, rl.t.a.ns, rl.t.b.ns, rl.tunnel.b, 1400, 3);
        const ba = await udpNoDf(rlab, rl.t.b.ns, rl.t.a.ns, rl.tunnel.a, 1400, 3);
        note(`relayed: no-DF 1400-byte UDP: A→B ${ab.arrivedWhole}/${ab.sent} whole, B→A ${ba.arrivedWhole}/${ba.sent} whole`);
        expect(ab.arrivedWhole, JSON.stringify(ab)).toBeGreaterThanOrEqual(1);
        expect(ba.arrivedWhole, JSON.stringify(ba)).toBeGreaterThanOrEqual(1);
      });
    });

    it('20 MB over TCP A → B: sha256 matches', async () => {
      await explained(dump, async () => {
        const r = await transfer(rlab, rl.t.a.ns, rl.t.b.ns, rl.tunnel.b, { bytes: MB20, stallMs: STALL_MS, deadlineMs: 60_000 });
        note(`relayed: TCP 20 MB A→B: ${r.ok ? `ok in ${r.seconds.toFixed(2)} s` : `FAILED: ${r.stalled ?? 'hash mismatch'}`}`);
        expect(r.stalled).toBeNull();
        expect(r.ok).toBe(true);
      });
    }, 90_000);

    it('no outer datagram was fragmented: FragCreates at both members (and the lighthouse) unchanged, no fragments on their links', async () => {
      await explained(dump, async () => {
        const now = rl.fragments();
        const d = Object.fromEntries(
          (['a', 'b', 'l'] as const).map((w) => [w, { in: now[w].in - before[w].in, out: now[w].out - before[w].out, fragCreates: now[w].fragCreates - before[w].fragCreates }]),
        );
        const s = await controlRequest(rl.t.a.spec.ifname, { op: 'status' });
        note(`relayed: outer fragments during the run: ${JSON.stringify(d)}; A's tunnelMtu to B ${peerMtu({ peers: s.status.peers.filter((p: any) => p.publicKey === rl.t.keys.b) }).tunnelMtu}`);
        let total = 0;
        for (const v of Object.values(d)) total += v.in + v.out + v.fragCreates;
        expect(total, JSON.stringify(d)).toBe(0);
      });
    });
  });
});

