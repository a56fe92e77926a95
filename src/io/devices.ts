/**
 * A gateway's stock WireGuard devices at run time (config/devices.ts has the file and the device's
 * configuration; core/device-guard.ts what they may reach): the devices file loaded at `up`, each
 * device a static peer of the engine; `keymesh device add|list|remove` through the control socket;
 * the devices' names told to the lighthouses (names.ts: NAME.GATEWAY.DOMAIN mesh-wide); and
 * forwarding switched on for this interface only, which is how a device's packets go on to the
 * mesh (decrypted to the TUN device, forwarded by the kernel back into it toward a member).
 *
 * The device's private key never comes here: `keymesh device add` makes the key pair and sends
 * the public key (and a preshared key), and prints the configuration itself.
 *
 * May touch: the devices file (replaced atomically, 0600), the engine's static peers that are
 * devices, its device names, this interface's forwarding sysctls, the routes (through the host).
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { isLabel } from '../core/cert.js';
import type { Engine } from '../core/engine.js';
import { formatAddress } from '../core/ip.js';
import type { CertAuthority } from '../core/mesh-authority.js';
import { inside } from '../core/directory.js';
import { decodeKey, encodeKey } from '../config/keys.js';
import { allocateAddress, loadDevices, serializeDevices, type Device } from '../config/devices.js';
import { parseIp, type WgQuickConfig } from '../config/wgquick.js';
import { writeFileAtomic } from './atomic-write.js';

/** What the devices use of the runtime. */
export interface DevicesHost {
  readonly engine: Engine;
  readonly name: string;
  log(line: string): void;
  now(): number;
  flushAndArm(): void;
  syncRoutes(): Promise<void>;
}

/** What `keymesh device add` needs from the gateway to write the device's configuration. */
export interface DeviceAdded {
  name: string;
  addresses: string[];
  gateway: { name: string; publicKey: string; dns: string[]; domain: string; meshName: string; networks: string[] };
}

export interface DeviceListed {
  name: string;
  fqdn: string;
  addresses: string[];
  publicKey: string;
  /** Unix ms of the last handshake, 0 if never. */
  lastHandshake: number;
  endpoint: string | null;
  rxBytes: number;
  txBytes: number;
}

/** The devices file's path: relative to the config file's directory, as Certificate and CA are. */
export function devicesPath(cfg: WgQuickConfig): string | null {
  const d = cfg.interface.devices;
  return d === undefined ? null : path.resolve(path.dirname(cfg.file), d);
}

export class GatewayDevices {
  private devices: Device[] = [];
  /** add/remove run one at a time (each rewrites the file). */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly host: DevicesHost,
    readonly file: string | null,
  ) {}

  get count(): number {
    return this.devices.length;
  }

  /** At `up`, after the configured peers: the devices become peers, forwarding goes on, names go out. */
  async start(): Promise<void> {
    if (!this.file) return;
    const { devices, warnings } = await loadDevices(this.file);
    for (const w of warnings) this.host.log(`${this.host.name}: warning: ${w}`);
    for (const d of devices) {
      if (this.host.engine.getPeer(d.publicKey)) throw new Error(`${this.file}: device ${d.name} has the public key of a [Peer] in the configuration`);
    }
    this.devices = devices;
    const now = this.host.now();
    for (const d of devices) this.addPeer(d, now);
    await this.enableForwarding();
    this.publish();
    const own = this.host.engine.meshAuthority?.own;
    if (!own?.subnets.length) this.host.log(`${this.host.name}: warning: Devices = ${this.file}, but this node's certificate routes no subnets: the mesh will not send the devices' traffic here (keymesh ca sign --subnets)`);
    this.host.log(`${this.host.name}: ${devices.length} device(s) from ${this.file}`);
  }

  private addPeer(d: Device, now: number): void {
    const gw = this.host.engine.meshAuthority?.own.name;
    this.host.engine.upsertPeer(
      {
        publicKey: d.publicKey,
        presharedKey: d.presharedKey ?? null,
        allowedIps: d.addresses.map((a) => ({ addr: a, cidr: a.length * 8 })),
        device: true,
        // what this node calls it: NAME.GATEWAY, as the mesh does (names.ts)
        name: gw ? `${d.name}.${gw}` : d.name,
      },
      now,
    );
  }

  /**
   * Forwarding for this interface only: IPv4's per-interface switch governs what arrives on it;
   * IPv6 has no per-interface equivalent before Linux 6.17's force_forwarding (its `forwarding`
   * only follows conf/all), so without it devices' IPv6 traffic is forwarded only if the host
   * already forwards IPv6.
   */
  private async enableForwarding(): Promise<void> {
    const ifname = this.host.name;
    const set = async (p: string) => writeFile(`/proc/sys/net/${p}`, '1\n').then(
      () => true,
      () => false,
    );
    if (!(await set(`ipv4/conf/${ifname}/forwarding`))) this.host.log(`${ifname}: warning: could not enable IPv4 forwarding for ${ifname}: devices will not reach the mesh`);
    if (!(await set(`ipv6/conf/${ifname}/force_forwarding`))) await set(`ipv6/conf/${ifname}/forwarding`);
  }

  /** Tell the lighthouses our devices' names (names.ts); they keep those inside our certified subnets. */
  private publish(): void {
    this.host.engine.setDeviceNames(
      this.devices.map((d) => ({ name: d.name, addresses: d.addresses })),
      this.host.now(),
    );
    this.host.flushAndArm();
  }

  private async save(next: Device[]): Promise<void> {
    await writeFileAtomic(this.file!, serializeDevices(next), { mode: 0o600 });
  }

  private serialized<T>(f: () => Promise<T>): Promise<T> {
    const run = this.queue.then(f, f);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** `keymesh device add`: a new device, in the engine at once and in the file. */
  add(req: { name?: unknown; publicKey?: unknown; presharedKey?: unknown; ip?: unknown }): Promise<DeviceAdded> {
    return this.serialized(async () => {
      const e = this.host.engine;
      if (!this.file) throw new Error(`${this.host.name} has no Devices = PATH in its [Interface]: add one (e.g. Devices = ${this.host.name}.devices) and restart it`);
      const auth = e.meshAuthority as CertAuthority | null;
      if (!auth) throw new Error(`${this.host.name} is not a mesh member (no Certificate): devices are served by a gateway whose certificate routes subnets`);
      const own = auth.own;
      if (own.subnets.length === 0) throw new Error(`the certificate of ${own.name} routes no subnets: sign it again with --subnets (keymesh ca sign --subnets 10.99.200.0/24 …)`);
      const name = typeof req.name === 'string' ? req.name : '';
      if (!isLabel(name)) throw new Error(`"${name.slice(0, 64)}" is not a device name (a lowercase DNS label: a-z 0-9 and '-', 1–63 characters)`);
      if (this.devices.some((d) => d.name === name)) throw new Error(`there is already a device called ${name} (keymesh device remove ${name} first)`);
      const publicKey = typeof req.publicKey === 'string' ? decodeKey(req.publicKey) : null;
      if (!publicKey) throw new Error('device add: no valid public key');
      if (e.getPeer(publicKey)) throw new Error('device add: that public key is already a peer');
      const psk = typeof req.presharedKey === 'string' ? decodeKey(req.presharedKey) : null;
      if (req.presharedKey !== undefined && !psk) throw new Error('device add: the preshared key is not a valid key');
      // taken: our own addresses and every host address a peer is allowed (the other devices')
      const taken: Uint8Array[] = own.addresses.map((a) => a.addr);
      for (const p of e.listPeers()) for (const a of e.allowedIpsOf(p)) if (a.cidr === a.addr.length * 8) taken.push(a.addr);
      const isTaken = (a: Uint8Array) => taken.some((t) => t.length === a.length && t.every((b, i) => b === a[i]));
      let addresses: Uint8Array[];
      if (typeof req.ip === 'string' && req.ip !== '') {
        addresses = [];
        for (const item of req.ip.split(',').map((s) => s.trim().replace(/\/(32|128)$/, ''))) {
          const ip = parseIp(item);
          if (!ip) throw new Error(`--ip: "${item.slice(0, 64)}" is not an IP address`);
          if (!own.subnets.some((s) => inside(ip.bytes, s))) throw new Error(`--ip: ${item} is not inside this gateway's subnets (${own.subnets.map((s) => `${formatAddress(s.addr)}/${s.bits}`).join(', ')})`);
          if (isTaken(ip.bytes)) throw new Error(`--ip: ${item} is in use`);
          if (addresses.some((a) => a.length === ip.bytes.length)) throw new Error(`--ip: a second IPv${ip.family} address (a device has one per family)`);
          addresses.push(ip.bytes);
        }
      } else {
        // one address of each family our subnets offer
        addresses = ([4, 6] as const).filter((f) => own.subnets.some((s) => s.addr.length === (f === 4 ? 4 : 16))).map((f) => allocateAddress(own.subnets, taken, f));
      }
      const device: Device = { name, publicKey, ...(psk ? { presharedKey: psk } : {}), addresses };
      const next = [...this.devices, device];
      await this.save(next); // first: a device the file does not hold would vanish at the next `up`
      this.devices = next;
      this.addPeer(device, this.host.now());
      this.publish();
      await this.host.syncRoutes();
      this.host.log(`${this.host.name}: device ${name} added (${addresses.map(formatAddress).join(', ')})`);
      const families = new Set(addresses.map((a) => a.length));
      return {
        name,
        addresses: addresses.map(formatAddress),
        gateway: {
          name: own.name,
          publicKey: encodeKey(e.publicKey!),
          dns: own.addresses.filter((a) => families.has(a.addr.length)).map((a) => formatAddress(a.addr)),
          domain: auth.domain ?? 'mesh',
          meshName: auth.ca?.name ?? '',
          networks: auth.networks.map((n) => `${formatAddress(n.addr)}/${n.bits}`),
        },
      };
    });
  }

  /** `keymesh device list`. */
  list(): DeviceListed[] {
    const e = this.host.engine;
    const gw = e.meshAuthority?.own.name;
    const domain = (e.meshAuthority as CertAuthority | null)?.domain ?? 'mesh';
    return this.devices.map((d) => {
      const p = e.getPeer(d.publicKey);
      const ep = p?.endpoint.path ?? null;
      return {
        name: d.name,
        fqdn: `${d.name}.${gw ?? '?'}.${domain}`,
        addresses: d.addresses.map(formatAddress),
        publicKey: encodeKey(d.publicKey),
        lastHandshake: p ? e.lastHandshakeUnix(p) : 0,
        endpoint: ep ? ep.id : null,
        rxBytes: p?.rxBytes ?? 0,
        txBytes: p?.txBytes ?? 0,
      };
    });
  }

  /** `keymesh device remove`: out of the file, and out of the engine at once (its session ends now). */
  remove(req: { name?: unknown }): Promise<{ name: string }> {
    return this.serialized(async () => {
      const name = typeof req.name === 'string' ? req.name : '';
      const d = this.devices.find((x) => x.name === name);
      if (!d) throw new Error(`no device called ${name.slice(0, 64)}${this.devices.length ? ` (there are: ${this.devices.map((x) => x.name).join(', ')})` : ''}`);
      const next = this.devices.filter((x) => x !== d);
      await this.save(next);
      this.devices = next;
      this.host.engine.removePeer(d.publicKey); // drops its keypairs: what it sends from now on is unknownIndex
      this.publish();
      await this.host.syncRoutes();
      this.host.log(`${this.host.name}: device ${name} removed`);
      return { name };
    });
  }
}
