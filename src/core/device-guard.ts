/**
 * A gateway's stock WireGuard devices reach the mesh, and only the mesh (keymesh's own; sans-I/O).
 *
 * A device (a [Device] of the devices file: a static peer with `device` set) is served through
 * the host's forwarding: its packets are decrypted and written to the TUN device, the kernel
 * routes them back into the TUN device toward a member, and keymesh seals them to that member.
 *
 *   device ──seal──▶ gateway: open ─▶ [A] ─▶ TUN ─▶ kernel forwards ─▶ TUN ─▶ route ─▶ seal ─▶ member
 *   member ──seal──▶ gateway: open ─▶ TUN ─▶ kernel forwards ─▶ TUN ─▶ [B] ─▶ seal ─▶ device
 *
 * The rule is checked where a device's packet enters or leaves keymesh, so it holds whatever the
 * host's forwarding and firewall say: [A] a packet from a device to an address outside the CA's
 * networks is dropped before it reaches the host (so the host never forwards it to the Internet,
 * nor delivers it to one of its own non-mesh addresses); [B] a packet to a device from outside
 * those networks (something the host forwarded from another interface) is dropped before it is
 * sealed. Both count `deviceOutsideMesh`. `DevicesMayLeave = true` lifts the rule (the gateway is
 * then the devices' way out, subject to the host's own forwarding and NAT).
 *
 * May touch: the engine's drop counters (the callers count).
 */
import type { Engine } from './engine.js';

/** Is the address at buf[off ..] (4 bytes for IPv4, 16 for IPv6) inside one of the mesh CA's networks? */
export function insideMesh(engine: Engine, buf: Uint8Array, off: number, version: 4 | 6): boolean {
  const networks = engine.membership?.authority.networks;
  if (!networks) return false;
  const len = version === 4 ? 4 : 16;
  for (let n = 0; n < networks.length; n++) {
    const net = networks[n];
    if (net.addr.length !== len) continue;
    let ok = true;
    const whole = net.bits >> 3;
    for (let i = 0; i < whole && ok; i++) if (buf[off + i] !== net.addr[i]) ok = false;
    const rest = net.bits & 7;
    if (ok && rest) {
      const mask = (0xff << (8 - rest)) & 0xff;
      if ((buf[off + whole] & mask) !== (net.addr[whole] & mask)) ok = false;
    }
    if (ok) return true;
  }
  return false;
}
