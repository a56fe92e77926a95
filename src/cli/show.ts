/** Human-readable `keymesh show`, in the shape of `wg show` with keymesh's extra lines. */

import type { ResolverCounters } from '../dns/resolver.js';

export interface ShowStatus {
  interface: string;
  publicKey: string | null;
  listenPort: number;
  mtu: number;
  fwmark: number;
  aead: string;
  portMapping?: { protocol: string; gateway: string; external: string; internalPort: number; secondsLeft: number | null } | null;
  offload?: { tun: Record<string, boolean> | null; udp: { gso: boolean; gro: boolean } };
  stats: {
    drops: Record<string, number>;
    rxPackets: number;
    txPackets: number;
    underLoad: boolean;
    lighthouse?: Record<string, number>;
    punch?: { openersSent: number; punchOpenSent: number; punchOpenReceived: number; held: number; ttl: number; ttlConfirmed: boolean; ttlRaised: number };
    pmtu?: { probes: number; probeBytes: number; blackHoles: number; icmpSent: number; fragmented: number; mssClamped: number };
  };
  isLighthouse?: boolean;
  mesh?: { name: string; addresses: string[]; groups: string[]; fingerprint: string; notAfter: string; networks: string[]; revocationSerial: string | null; pending: number; certified: number } | null;
  dns?: ({ mode: string; listening: string[]; host: string; upstreams: string[] } & ResolverCounters) | null;
  peers: Array<{
    membership?: 'static' | 'pending' | 'certified';
    name?: string | null;
    certificate?: { name: string; groups: string[]; lighthouse: boolean; fingerprint: string; notAfter: string; expiresInDays: number } | null;
    publicKey: string;
    endpoint: string | null;
    unresolvedEndpoint?: { endpoint: string; error: string | null; lookups: number; seconds: number } | null;
    allowedIps: string[];
    latestHandshake: number | null;
    secondsSinceHandshake: number | null;
    rxBytes: number;
    txBytes: number;
    persistentKeepalive: number;
    presharedKey: boolean;
    handshakes: number;
    pathChanges?: number;
    session: { role: string; ageSeconds: number } | null;
    stagedPackets: number;
    speaksKeymesh?: boolean;
    lighthouse?: boolean;
    foundVia?: string | null;
    relayReason?: string | null;
    relayed?: { packets: number; bytes: number };
    paths?: Array<{
      path: string;
      kind?: 'direct' | 'relay';
      via?: string | null;
      local?: string | null;
      state: string;
      active: boolean;
      rttMs: number | null;
      lastReceiveSecondsAgo: number | null;
      pmtu?: { mtu: number; state: string; source: string; probes: number; probeBytes: number; blackHoles: number } | null;
    }>;
    tunnelMtu?: number;
    stockPaths?: { phase: string; handshakes: number; results: Array<{ path: string; ok: boolean; why: string; secondsAgo: number }> } | null;
  }>;
}

type PathStatus = NonNullable<ShowStatus['peers'][number]['paths']>[number];

/**
 * The paths worth listing: a configured Endpoint starts as a path with no local end ("routing
 * chooses"); once the same remote is reached from a real local end that path takes over and the
 * unbound one is never used again, so it is left out unless it is the active one or still works.
 */
export function shownPaths(paths: PathStatus[]): PathStatus[] {
  return paths.filter(
    (p) => p.active || p.local || p.kind === 'relay' || p.state === 'validated' || !paths.some((q) => q !== p && q.local && q.path === p.path),
  );
}

export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(2)} ${units[i]}`;
}

export function humanAgo(s: number): string {
  if (s < 1) return 'Now';
  const parts: string[] = [];
  const units: Array<[number, string]> = [
    [86400, 'day'],
    [3600, 'hour'],
    [60, 'minute'],
    [1, 'second'],
  ];
  let rest = s;
  for (const [size, name] of units) {
    const q = Math.floor(rest / size);
    if (q > 0) parts.push(`${q} ${name}${q === 1 ? '' : 's'}`);
    rest -= q * size;
  }
  return `${parts.join(', ')} ago`;
}

export function formatShow(s: ShowStatus): string {
  const out: string[] = [];
  out.push(`interface: ${s.interface}`);
  if (s.publicKey) out.push(`  public key: ${s.publicKey}`);
  out.push('  private key: (hidden)');
  out.push(`  listening port: ${s.listenPort}`);
  if (s.fwmark) out.push(`  fwmark: 0x${s.fwmark.toString(16)}`);
  out.push(`  mtu: ${s.mtu}`);
  if (s.portMapping) {
    const m = s.portMapping;
    out.push(`  port mapping: ${m.protocol} via ${m.gateway}: ${m.external} → port ${m.internalPort} (${m.secondsLeft === null ? 'permanent lease' : `${m.secondsLeft} s left`})`);
  }
  if (s.offload) {
    const on = [
      ...Object.entries(s.offload.tun ?? {})
        .filter(([k, v]) => v && k !== 'vnetHdr')
        .map(([k]) => `tun ${k}`),
      ...(s.offload.udp.gso ? ['udp gso'] : []),
      ...(s.offload.udp.gro ? ['udp gro'] : []),
    ];
    out.push(`  offloads: ${on.length ? on.join(', ') : 'off'}`);
  }
  out.push(`  packets: ${s.stats.rxPackets} received, ${s.stats.txPackets} sent${s.stats.underLoad ? ' (under load: cookies required)' : ''}`);
  const drops = Object.entries(s.stats.drops).filter(([, v]) => v > 0);
  if (drops.length) out.push(`  dropped: ${drops.map(([k, v]) => `${k} ${v}`).join(', ')}`);
  const lh = s.stats.lighthouse;
  if (s.isLighthouse && lh) {
    out.push(
      `  lighthouse: ${lh.lookupsAnswered} lookups answered, ${lh.lookupsRefused} refused, ${lh.punchesSent} punches, ` +
        `${lh.relayedPackets} packets (${humanBytes(lh.relayedBytes)}) relayed, ${lh.relayRefused} refused, ${lh.relayRateLimited} over the rate`,
    );
  }
  const pm = s.stats.pmtu;
  if (pm && (pm.probes || pm.icmpSent || pm.fragmented || pm.mssClamped)) {
    out.push(
      `  path mtu: ${pm.probes} probes (${humanBytes(pm.probeBytes)}), ${pm.blackHoles} black hole(s); at the tunnel edge ${pm.icmpSent} ICMP too-big sent, ` +
        `${pm.fragmented} packets fragmented, ${pm.mssClamped} SYNs' MSS clamped`,
    );
  }
  const pu = s.stats.punch;
  if (pu && pu.openersSent > 0) {
    out.push(
      `  punching: NAT openers with TTL ${pu.ttl}${pu.ttlConfirmed ? ' (confirmed by ICMP)' : ''}, ${pu.openersSent} sent; ` +
        `PUNCH_OPEN ${pu.punchOpenSent} sent, ${pu.punchOpenReceived} received`,
    );
  }
  if (s.mesh) {
    const m = s.mesh;
    out.push(`  mesh: "${m.name}" ${m.addresses.join(', ')}${m.groups.length ? `, groups ${m.groups.join(', ')}` : ''}; certificate valid until ${m.notAfter.slice(0, 10)}`);
    out.push(`  mesh networks: ${m.networks.join(', ')}; ${m.certified} peer(s) admitted by certificate, ${m.pending} pending; revocation list ${m.revocationSerial === null ? 'none' : `serial ${m.revocationSerial}`}`);
  }
  if (s.dns) {
    const d = s.dns;
    const host = d.host === 'direct' ? "the host's resolver (resolv.conf)" : d.host === 'resolved' ? 'split DNS through systemd-resolved' : 'not used by the host';
    out.push(`  dns: on ${d.listening.join(', ')} port 53, ${host}${d.upstreams.length ? `; others forwarded to ${d.upstreams.join(', ')}` : ''}`);
    out.push(
      `  dns queries: ${d.queries}; ${d.answered} answered, ${d.nxdomain} nxdomain, ${d.refused} refused, ${d.servfail} servfail, ` +
        `${d.malformed} malformed, ${d.rateLimited} rate-limited, ${d.forwarded} forwarded, ${d.truncated} truncated`,
    );
  }
  for (const p of s.peers) {
    out.push('');
    out.push(`peer: ${p.publicKey}${p.name ? ` (${p.name})` : ''}`);
    if (p.membership === 'pending') out.push('  membership: pending (handshake done; waiting for its certificate)');
    if (p.certificate) {
      const c = p.certificate;
      const how = p.membership === 'certified' ? 'admitted by certificate' : 'configured; certificate';
      out.push(`  ${how}: "${c.name}"${c.groups.length ? `, groups ${c.groups.join(', ')}` : ''}${c.lighthouse ? ', lighthouse' : ''}, expires ${c.notAfter.slice(0, 10)} (${c.expiresInDays} days)`);
    }
    if (p.presharedKey) out.push('  preshared key: (hidden)');
    if (p.endpoint) out.push(`  endpoint: ${p.endpoint}`);
    const u = p.unresolvedEndpoint;
    if (u) out.push(`  endpoint: ${u.endpoint} (not resolved yet${u.error ? `: ${u.error === 'ENOTFOUND' ? 'no such name' : u.error}` : ''}; ${u.lookups} lookup(s) in ${u.seconds} s, still trying)`);
    out.push(`  allowed ips: ${p.allowedIps.length ? p.allowedIps.join(', ') : '(none)'}`);
    if (p.secondsSinceHandshake !== null) out.push(`  latest handshake: ${humanAgo(p.secondsSinceHandshake)}`);
    if (p.rxBytes || p.txBytes) out.push(`  transfer: ${humanBytes(p.rxBytes)} received, ${humanBytes(p.txBytes)} sent`);
    if (p.persistentKeepalive) out.push(`  persistent keepalive: every ${p.persistentKeepalive} seconds`);
    if (p.session) out.push(`  session: ${p.session.role}, keys ${p.session.ageSeconds} s old, ${p.handshakes} handshake(s)`);
    if (p.stagedPackets) out.push(`  waiting for handshake: ${p.stagedPackets} packet(s)`);
    out.push(`  peer speaks keymesh: ${p.speaksKeymesh ? 'yes (roaming needs path validation)' : 'no (WireGuard semantics)'}`);
    if (p.lighthouse) out.push('  lighthouse: yes (registered; asked about other peers)');
    if (p.foundVia) out.push(`  found via lighthouse: ${p.foundVia}`);
    if (p.relayReason) out.push(`  relayed: ${p.relayReason}`);
    if (p.relayed && p.relayed.packets) out.push(`  relayed for this peer: ${p.relayed.packets} packets, ${humanBytes(p.relayed.bytes)}`);
    if (p.stockPaths && p.stockPaths.handshakes > 0) {
      const last = p.stockPaths.results[0];
      out.push(
        `  path checks (stock peer): ${p.stockPaths.handshakes} handshake(s) as path probes${p.stockPaths.phase !== 'idle' ? `, ${p.stockPaths.phase} now` : ''}` +
          (last ? `; last: ${last.path} ${last.ok ? 'answered' : 'no answer'} (${last.why}) ${last.secondsAgo} s ago` : ''),
      );
    }
    if (p.tunnelMtu !== undefined && p.tunnelMtu !== s.mtu) out.push(`  tunnel mtu: ${p.tunnelMtu} (the active path carries less than the interface's ${s.mtu})`);
    for (const path of shownPaths(p.paths ?? [])) {
      const rtt = path.rttMs === null ? '' : `, rtt ${path.rttMs} ms`;
      const rx = path.lastReceiveSecondsAgo === null ? '' : `, heard ${path.lastReceiveSecondsAgo} s ago`;
      const from = path.local ? `, from ${path.local}` : '';
      const name = path.kind === 'relay' ? `relay via lighthouse ${path.via ?? '?'}` : path.path;
      const kind = path.kind ? ` [${path.kind}]` : '';
      const pm = path.pmtu;
      const pmtu = pm ? `, pmtu ${pm.mtu} (${pm.source === 'probe' ? (pm.state === 'complete' ? 'probed' : pm.state) : pm.source === 'kernel' ? 'route' : 'configured'}${pm.blackHoles ? `, ${pm.blackHoles} black hole(s)` : ''})` : '';
      out.push(`  path ${path.active ? '*' : ' '} ${name} ${path.state}${from}${rtt}${pmtu}${rx}${kind}`);
    }
  }
  return out.join('\n') + '\n';
}
