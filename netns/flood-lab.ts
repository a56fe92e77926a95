/**
 * Under attack: a responder, an established peer, a new peer, and an attacker, on one network.
 *
 *                         198.51.100.0/24 (one bridge)
 *   ──┬──────────────┬──────────────┬──────────────┬──────────────────────────
 *     R .1           E .2           N .3           X .128–.191 (64 addresses)
 *     responder      established    new peer       attacker (netns/flood.ts)
 *     (keymesh or    peer: pings R  (comes up in
 *      wireguard-go) every 50 ms    the flood)
 *
 * Tunnel 10.98.0.0/24: R .1, E .2, N .3. E and N list R with its Endpoint (E keeps a
 * PersistentKeepalive); R lists both without one. The attacker knows R's public key (every peer
 * does) and floods R's port with valid-mac1 initiations from its 64 addresses, then with junk.
 */
import { readFileSync } from 'node:fs';
import { Lab, wgGenKeypair, type NodeSpec } from './lib.js';

export const FLOOD_TUNNEL = { r: '10.98.0.1', e: '10.98.0.2', n: '10.98.0.3' };
export const FLOOD_ADDR = { r: '198.51.100.1', e: '198.51.100.2', n: '198.51.100.3', attackerFirst: '198.51.100.128', attackers: 64 };

export function floodTopology(lab: Lab) {
  const plug = lab.bridge('net');
  const kr = wgGenKeypair();
  const ke = wgGenKeypair();
  const kn = wgGenKeypair();
  const nsR = lab.netns('r');
  const nsE = lab.netns('e');
  const nsN = lab.netns('n');
  const nsX = lab.netns('x');
  plug(nsR, lab.name('rw'), [`${FLOOD_ADDR.r}/24`]);
  plug(nsE, lab.name('ew'), [`${FLOOD_ADDR.e}/24`]);
  plug(nsN, lab.name('nw'), [`${FLOOD_ADDR.n}/24`]);
  const xIf = lab.name('xw');
  plug(nsX, xIf, [`${FLOOD_ADDR.attackerFirst}/24`]);
  for (let i = 1; i < FLOOD_ADDR.attackers; i++) lab.exec(nsX, ['ip', 'addr', 'add', `198.51.100.${128 + i}/24`, 'dev', xIf]);
  const r: NodeSpec = {
    ns: nsR,
    ifname: lab.name('r'),
    privateKey: kr.privateKey,
    listenPort: 51820,
    addresses: [`${FLOOD_TUNNEL.r}/24`],
    peers: [
      { publicKey: ke.publicKey, allowedIps: [`${FLOOD_TUNNEL.e}/32`] },
      { publicKey: kn.publicKey, allowedIps: [`${FLOOD_TUNNEL.n}/32`] },
    ],
  };
  const toR = { publicKey: kr.publicKey, allowedIps: [`${FLOOD_TUNNEL.r}/32`], endpoint: `${FLOOD_ADDR.r}:51820` };
  const e: NodeSpec = { ns: nsE, ifname: lab.name('e'), privateKey: ke.privateKey, addresses: [`${FLOOD_TUNNEL.e}/24`], peers: [{ ...toR, persistentKeepalive: 5 }] };
  const n: NodeSpec = { ns: nsN, ifname: lab.name('n'), privateKey: kn.privateKey, addresses: [`${FLOOD_TUNNEL.n}/24`], peers: [toR] };
  return { r, e, n, attackerNs: nsX, keys: { r: kr.publicKey, e: ke.publicKey, n: kn.publicKey } };
}

/** Datagrams this namespace's kernel dropped for a full socket receive buffer (/proc/net/snmp Udp RcvbufErrors). */
export function rcvbufErrors(lab: Lab, ns: string): number {
  const snmp = lab.exec(ns, ['cat', '/proc/net/snmp']).split('\n');
  const head = snmp.find((l) => l.startsWith('Udp:') && l.includes('RcvbufErrors'))!.split(/\s+/);
  const vals = snmp.filter((l) => l.startsWith('Udp:'))[1].split(/\s+/);
  return Number(vals[head.indexOf('RcvbufErrors')]);
}

/**
 * Datagrams dropped per UDP socket bound to `port` in this namespace (the "drops" column of
 * /proc/net/udp and udp6), in the order the kernel lists them; with keymesh's split sockets the
 * data socket and the handshake socket are two entries.
 */
export function socketDrops(lab: Lab, ns: string, port: number): number[] {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  const out: number[] = [];
  for (const f of ['/proc/net/udp', '/proc/net/udp6']) {
    for (const line of lab.exec(ns, ['cat', f]).split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length > 12 && cols[1].endsWith(`:${hex}`)) out.push(Number(cols[cols.length - 1]));
    }
  }
  return out;
}

/** ping's own summary ("N packets transmitted, M received"): sent, answered, loss as a fraction. */
export function pingSummary(output: string): { sent: number; answered: number; loss: number } {
  const m = /(\d+) packets transmitted, (\d+) received/.exec(output);
  const sent = m ? Number(m[1]) : 0;
  const answered = m ? Number(m[2]) : 0;
  return { sent, answered, loss: sent > 0 ? 1 - answered / sent : 1 };
}

/** CPU seconds (user + system) a process has used so far. */
export function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const parts = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(parts[11]) + Number(parts[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
}

/** Resident set size of a process, bytes. */
export function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}
