/**
 * Port mapping through a home router: a LAN host behind a NAT router that runs the NAT-PMP/PCP
 * responder (netns/portmap-responder.ts), and a host outside on the router's WAN.
 *
 *     outside                      router                                  lan host
 *   203.0.113.66 ──── WAN ──── 203.0.113.1 │ 10.77.0.1 ──── LAN ──── 10.77.0.2 (default via 10.77.0.1)
 *                                 masquerade out of WAN
 *                                 drop new from WAN, unless DNAT'd (a mapping)
 *                                 responder on 10.77.0.1:5351
 *
 * The router's filter is a home router's: what arrives new on the WAN is dropped, except flows
 * a port forward translated (`ct status dnat accept`) — so a datagram from outside reaches the
 * LAN host only while the responder has a mapping (a DNAT rule) for it.
 */
import { Lab } from './lib.js';

export const PORTMAP_ADDR = { wan: '203.0.113.1', outside: '203.0.113.66', gateway: '10.77.0.1', host: '10.77.0.2' };

export function portmapTopology(lab: Lab) {
  const { ns: router } = lab.router('r');
  const lan = lab.netns('lan');
  const outside = lab.netns('out');
  const wanIf = lab.name('w');
  const lanIf = lab.name('l');
  lab.link(outside, lab.name('o'), [`${PORTMAP_ADDR.outside}/24`], router, wanIf, [`${PORTMAP_ADDR.wan}/24`]);
  lab.link(lan, lab.name('h'), [`${PORTMAP_ADDR.host}/24`], router, lanIf, [`${PORTMAP_ADDR.gateway}/24`]);
  lab.exec(lan, ['ip', 'route', 'add', 'default', 'via', PORTMAP_ADDR.gateway]);
  lab.exec(
    router,
    ['nft', '-f', '-'],
    `table ip kmnat {
  chain post { type nat hook postrouting priority 100; oifname "${wanIf}" masquerade; };
  chain in { type filter hook input priority 0; iifname "${wanIf}" ct state new drop; };
  chain fwd4 { type filter hook forward priority 0; iifname "${wanIf}" ct status dnat accept; iifname "${wanIf}" ct state new drop; };
}`,
  );
  return { router, lan, outside, wanIf, lanIf };
}
