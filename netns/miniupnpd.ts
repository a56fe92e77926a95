/**
 * The real miniupnpd (Debian's `miniupnpd-nftables`) as a netns NAT router's UPnP IGD, with the
 * STUN responder (./stun-responder.ts) on the outside host that lets it serve on a reserved WAN
 * address (see there why). Used with the port mapping topology (./portmap.ts):
 *
 *     outside 203.0.113.66            router                                lan host
 *     stun-responder :3478 ◀── STUN ── miniupnpd: SSDP 10.77.0.1:1900, HTTP (random port),
 *                                      [NAT-PMP/PCP :5351 if asked]; its DNAT rules in
 *                                      `table inet kmupnp` (chain prerouting_miniupnpd)
 *
 * miniupnpd adds its rules to chains it is given; we create them in a table of our own (as
 * Debian's nft_init.sh would, with a forward policy of accept: the router's own filter still
 * decides, letting in what was DNAT'd). Its pid file and config live in the lab's directory, so
 * runs never meet. On SIGTERM it removes its rules; the lab deletes the namespace after.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { REPO, waitFor, type Lab, type Proc } from './lib.js';

export const MINIUPNPD = '/usr/sbin/miniupnpd';
export const UPNP_TABLE = 'kmupnp';
const STUN = path.join(REPO, 'dist', 'netns', 'stun-responder.js');

/** Why miniupnpd cannot run here, or null. */
export function miniupnpdMissing(): string | null {
  return existsSync(MINIUPNPD) ? null : `${MINIUPNPD} is missing (apt-get install --no-install-recommends miniupnpd-nftables)`;
}

export interface MiniupnpdOptions {
  router: string;
  wanIf: string;
  lanIf: string;
  /** The LAN subnet miniupnpd may map for, e.g. 10.77.0.0/24. */
  lanSubnet: string;
  outside: string;
  outsideAddr: string;
  /** Speak NAT-PMP and PCP too (default: UPnP only). */
  natPmp?: boolean;
  /** Describe itself as IGD:1 (WANIPConnection:1), as older routers do. */
  igdV1?: boolean;
  /** Label for the log. */
  label?: string;
}

export interface Miniupnpd {
  proc: Proc;
  stun: Proc;
  /** Its nftables table, as `nft list` prints it. */
  table(): string;
  stop(): Promise<void>;
}

export async function startMiniupnpd(lab: Lab, o: MiniupnpdOptions): Promise<Miniupnpd> {
  const label = o.label ?? 'miniupnpd';
  const stun = lab.spawn(o.outside, [process.execPath, STUN, '--addr', o.outsideAddr], `stun ${label}`);
  await waitFor('the STUN responder', () => {
    if (!stun.running) throw new Error(`stun-responder exited:\n${stun.output}`);
    return stun.output.includes('"listening"');
  });
  lab.exec(
    o.router,
    ['nft', '-f', '-'],
    `table inet ${UPNP_TABLE} {
  chain forward { type filter hook forward priority 0; policy accept; jump miniupnpd; }
  chain miniupnpd { }
  chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }
  chain postrouting { type nat hook postrouting priority 100; policy accept; jump postrouting_miniupnpd; }
  chain prerouting_miniupnpd { }
  chain postrouting_miniupnpd { }
}`,
  );
  const conf = lab.file(
    `${label.replace(/\W/g, '_')}.conf`,
    [
      `ext_ifname=${o.wanIf}`,
      `listening_ip=${o.lanIf}`,
      'port=0',
      `enable_natpmp=${o.natPmp ? 'yes' : 'no'}`,
      'enable_upnp=yes',
      'secure_mode=yes',
      'ext_perform_stun=yes',
      `ext_stun_host=${o.outsideAddr}`,
      'ext_stun_port=3478',
      `upnp_table_name=${UPNP_TABLE}`,
      `upnp_nat_table_name=${UPNP_TABLE}`,
      'upnp_forward_chain=miniupnpd',
      'upnp_nat_chain=prerouting_miniupnpd',
      'upnp_nat_postrouting_chain=postrouting_miniupnpd',
      'notify_interval=60',
      'uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b',
      ...(o.igdV1 ? ['force_igd_desc_v1=yes'] : []),
      `allow 1024-65535 ${o.lanSubnet} 1024-65535`,
      'deny 0-65535 0.0.0.0/0 0-65535',
      '',
    ].join('\n'),
    0o644,
  );
  const pidFile = path.join(lab.dir, `${label.replace(/\W/g, '_')}.pid`);
  const proc = lab.spawn(o.router, [MINIUPNPD, '-f', conf, '-d', '-4', '-P', pidFile], label);
  await waitFor(
    `${label} to serve`,
    () => {
      if (!proc.running) throw new Error(`miniupnpd exited (${proc.exitCode}):\n${proc.output}\n${stun.output}`);
      return /HTTP listening on port \d+/.test(proc.output) && proc.output.includes('Port forwarding is now enabled');
    },
    10_000,
  );
  return {
    proc,
    stun,
    table: () => lab.exec(o.router, ['nft', 'list', 'table', 'inet', UPNP_TABLE]),
    async stop() {
      await proc.stop('SIGTERM', 3000);
      await stun.stop('SIGTERM', 1000);
      try {
        lab.exec(o.router, ['nft', 'delete', 'table', 'inet', UPNP_TABLE]);
      } catch {
        /* gone with the namespace */
      }
    },
  };
}
