/**
 * A node changes address in every order the kernel and netlink can present it, and the pair must
 * always find each other again within a bound — liveness as a property of the endpoint cache,
 * not of timing. The hosts (support/hosts.ts) have real local ends and use the runtime's own path
 * and address-change code; only sockets and the clock are fake.
 *
 *   A (client, knows B's address)  ── echo request every 10 ms ──▶  B (server, echoes)
 *
 * One of them moves from 192.0.2.x to 192.0.2.1x. The steps of a move are: `del` (the kernel
 * drops the old address), `add` (it has the new one), `react` (the runtime hears of it from
 * netlink and tells the engine), `wait N` (N ms of traffic in between). Every ordering is run
 * dual-stack (an IPv6 spare may carry the pair meanwhile) and IPv4-only (nothing else can), right
 * after the handshake and later, and with the announcement lost on the way.
 */
import { describe, expect, it } from 'vitest';
import { Host, Hosts, type Datagram } from './support/hosts.js';

type Step = string; // 'del' | 'add' | 'react' | 'wait N'

const ORDERINGS: Step[][] = [
  ['del', 'add', 'react'], // one netlink burst
  ['add', 'del', 'react'],
  ['del', 'react', 'add', 'react'], // seen separately: for a moment the mover has no IPv4 at all
  ['del', 'react', 'wait 50', 'add', 'react'],
  ['del', 'react', 'wait 400', 'add', 'react'],
  ['del', 'wait 200', 'react', 'add', 'react'],
  ['add', 'react', 'del', 'react'],
  ['add', 'react', 'wait 50', 'del', 'react'],
  ['add', 'react', 'wait 400', 'del', 'react'],
  ['del', 'react', 'add'], // the addition is never reported
  ['add', 'react', 'del'], // the deletion is never reported
];

interface Variant {
  name: string;
  v6: boolean;
  /** ms of traffic between the handshake and the move. */
  after: number;
  /** Which datagrams the network loses (a fresh decider per run). */
  lose?: () => (d: Datagram, ctx: { moveAt: number; mover: Host }) => boolean;
}

// ADDRESSES with two addresses is the only 80-byte datagram here (echo data is 64, challenges 48, keepalives 32).
const isAddresses2 = (d: { data: Uint8Array }) => d.data.length === 80 && d.data[0] === 4;

const VARIANTS: Variant[] = [
  { name: 'dual-stack, 1 s after the handshake', v6: true, after: 1000 },
  { name: 'dual-stack, right after the handshake', v6: true, after: 0 },
  { name: 'IPv4 only, 1 s after the handshake', v6: false, after: 1000 },
  { name: 'IPv4 only, right after the handshake', v6: false, after: 0 },
  {
    name: 'dual-stack, the first announcements lost (no spare validated yet)',
    v6: true,
    after: 300,
    lose: () => (d, c) => isAddresses2(d) && d.at < c.moveAt,
  },
  {
    name: 'IPv4 only, the mover’s first 3 datagrams after the move lost',
    v6: false,
    after: 1000,
    lose: () => {
      let n = 0;
      return (d, c) => d.at >= c.moveAt && d.sender === c.mover && n++ < 3;
    },
  },
  {
    name: 'dual-stack, 20% loss both ways from the move on',
    v6: true,
    after: 1000,
    lose: () => {
      let x = 7;
      return (d, c) => d.at >= c.moveAt && ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 16) % 100 < 20;
    },
  },
];

const OLD = { a: '192.0.2.1', b: '192.0.2.2' };
const NEW = { a: '192.0.2.11', b: '192.0.2.12' };

function run(ordering: Step[], who: 'a' | 'b', v: Variant) {
  const net = new Hosts();
  const a = net.add('A', '10.0.0.1', [OLD.a, ...(v.v6 ? ['fd00:2::1'] : [])]);
  const b = net.add('B', '10.0.0.2', [OLD.b, ...(v.v6 ? ['fd00:2::2'] : [])]);
  b.echo = true;
  net.connect(a, b, OLD.b);
  const mover = who === 'a' ? a : b;
  const ctx = { moveAt: Infinity, mover };
  if (v.lose) {
    const lose = v.lose();
    net.lose = (d) => lose(d, ctx);
  }
  let seq = 0;
  const traffic = (ms: number) => {
    for (let t = 0; t < ms; t += 10) {
      a.sendTo(b, `req ${seq++}`);
      net.deliver();
      net.advance(10);
    }
  };
  traffic(200); // the handshake, HELLO, ADDRESSES
  expect(a.tun.length, 'the pair works before the move').toBeGreaterThan(0);
  if (v.after) traffic(v.after);
  ctx.moveAt = net.now;
  for (const step of ordering) {
    if (step === 'del') mover.delAddr(OLD[who]);
    else if (step === 'add') mover.addAddr(NEW[who]);
    else if (step === 'react') mover.react();
    else traffic(Number(step.split(' ')[1]));
  }
  const lastStep = net.now;
  // replies resume: the first echo reply after the last step, and then they keep coming
  const before = a.tun.length;
  let backAt: number | null = null;
  for (let t = 0; t < 6000 && backAt === null; t += 10) {
    traffic(10);
    if (a.tun.length > before) backAt = net.now;
  }
  const n0 = a.tun.length;
  traffic(500);
  const steady = a.tun.length - n0;
  return { net, a, b, outage: backAt === null ? Infinity : backAt - lastStep, steady, moveAt: ctx.moveAt };
}

function describeRun(r: ReturnType<typeof run>): string {
  const ev = (h: Host) =>
    h.events
      .filter((e) => e.type === 'endpoint-changed' || e.type === 'path-lost')
      .map((e) => `${e.type === 'endpoint-changed' ? `→ ${e.to.id} (${e.reason})` : `lost ${e.path.id}`}`)
      .join('; ');
  return `A: ${ev(r.a)}\nB: ${ev(r.b)}\nA active ${r.a.activeTo(r.b)}, B active ${r.b.activeTo(r.a)}`;
}

/** Outage bound after the last step: a few recovery rounds (100, 200, 400 ms…) and a round trip. */
const BOUND = 1600;

describe('address changes in every order: the pair always reconnects', () => {
  for (const ordering of ORDERINGS) {
    for (const who of ['a', 'b'] as const) {
      it(`${who === 'a' ? 'client' : 'server'} moves: ${ordering.join(', ')}`, () => {
        const results: string[] = [];
        for (const v of VARIANTS) {
          const r = run(ordering, who, v);
          results.push(`${v.name}: ${r.outage} ms`);
          expect(r.outage, `${v.name}\n${describeRun(r)}`).toBeLessThanOrEqual(BOUND);
          // and it stays up: ~50 requests in 500 ms, each answered (bar what a lossy network loses)
          expect(r.steady, `${v.name}: steady replies\n${describeRun(r)}`).toBeGreaterThanOrEqual(v.name.includes('20% loss') ? 25 : 48);
          // both ends use addresses the other has now
          const mover = who === 'a' ? r.a : r.b;
          const other = who === 'a' ? r.b : r.a;
          const oldAddr = who === 'a' ? OLD.a : OLD.b;
          expect(other.activeTo(mover).startsWith(`${oldAddr}:`), `${v.name}: still sending to the old address\n${describeRun(r)}`).toBe(false);
        }
        console.log(`${who} moves (${ordering.join(', ')}): ${results.join('; ')}`);
      });
    }
  }
});
