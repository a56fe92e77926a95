/**
 * `keymesh device add|list|remove`: stock WireGuard devices (phones) joining the mesh through a
 * gateway, run on the gateway beside its running node (the control socket's device-* ops; the
 * node's side is io/devices.ts).
 *
 * `device add` makes the device's key pair and a preshared key here, sends the node only the
 * public and preshared keys, and prints the device's wg-quick configuration and a QR code of it
 * (the WireGuard apps' "scan from QR code"). Printing the private key is the command's purpose;
 * it is not kept anywhere.
 */
import type { Command } from 'commander';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import QRCode from 'qrcode';
import { nobleCrypto } from '../core/crypto.js';
import { decodeKey, encodeKey } from '../config/keys.js';
import { deviceConfigText, type Prefix } from '../config/devices.js';
import { parseCidr, parseEndpoint, parseIp } from '../config/wgquick.js';
import { CONTROL_DIR, controlRequest } from '../io/control.js';
import type { DeviceAdded, DeviceListed } from '../io/devices.js';
import { writeFileAtomic } from '../io/atomic-write.js';

function fail(message: string): never {
  process.stderr.write(`keymesh: ${message}\n`);
  process.exit(1);
}

/** The node to talk to: the one named, else the only one running. */
async function nodeName(given: string | undefined): Promise<string> {
  if (given) return given;
  const running = (await readdir(CONTROL_DIR).catch(() => [] as string[])).filter((f) => f.endsWith('.sock')).map((f) => f.slice(0, -5));
  if (running.length !== 1) fail(running.length ? `several keymesh nodes are running (${running.join(', ')}): say which with --interface` : 'no keymesh node is running (keymesh up first)');
  return running[0];
}

async function ask(name: string, req: object): Promise<any> {
  let r: any;
  try {
    r = await controlRequest(name, req, CONTROL_DIR, 15_000);
  } catch (e) {
    fail((e as Error).message);
  }
  if (!r.ok) fail(r.error ?? 'refused');
  return r;
}

function prefix(text: string): Prefix {
  const c = parseCidr(text);
  if (typeof c === 'string') throw new Error(`the gateway sent a bad network: ${c}`);
  return { addr: c.bytes, bits: c.cidr };
}

function address(text: string): Uint8Array {
  const ip = parseIp(text);
  if (!ip) throw new Error(`the gateway sent a bad address: ${text}`);
  return ip.bytes;
}

/** The device's configuration from what the gateway answered and the keys made here. */
export function configFromAnswer(a: DeviceAdded, privateKey: Uint8Array, presharedKey: Uint8Array | undefined, endpoint: string): string {
  const gwKey = decodeKey(a.gateway.publicKey);
  if (!gwKey) throw new Error('the gateway sent a bad public key');
  return deviceConfigText({
    name: a.name,
    gatewayName: a.gateway.name,
    meshName: a.gateway.meshName,
    privateKey,
    ...(presharedKey ? { presharedKey } : {}),
    addresses: a.addresses.map(address),
    dns: a.gateway.dns.map(address),
    domain: a.gateway.domain,
    gatewayPublicKey: gwKey,
    endpoint,
    allowedIps: a.gateway.networks.map(prefix),
  });
}

/** The QR code of `text` for a terminal: black on white through ANSI colours on a TTY, plain blocks otherwise. */
export function qrForTerminal(text: string, tty: boolean): Promise<string> {
  return tty ? QRCode.toString(text, { type: 'terminal', small: true, errorCorrectionLevel: 'L' }) : QRCode.toString(text, { type: 'utf8', errorCorrectionLevel: 'L' });
}

/** A PNG of the QR code of `text` (it holds a private key: the file is written 0600). */
export async function writeQrPng(file: string, text: string): Promise<void> {
  const png = await QRCode.toBuffer(text, { type: 'png', errorCorrectionLevel: 'L', margin: 4, scale: 6 });
  await writeFileAtomic(file, png, { mode: 0o600 });
}

function ago(unixMs: number): string {
  if (!unixMs) return 'never';
  const s = Math.max(0, Math.round((Date.now() - unixMs) / 1000));
  return s < 120 ? `${s} s ago` : s < 7200 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
}

/** `keymesh device list` as a table. */
export function formatDeviceList(devices: DeviceListed[]): string {
  if (devices.length === 0) return 'no devices (keymesh device add NAME --endpoint HOST:PORT)\n';
  const rows = [['NAME', 'ADDRESS', 'PUBLIC KEY', 'LAST HANDSHAKE'], ...devices.map((d) => [d.fqdn, d.addresses.join(', '), d.publicKey, ago(d.lastHandshake)])];
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((v, c) => (c === r.length - 1 ? v : v.padEnd(widths[c]))).join('  ')).join('\n') + '\n';
}

export function registerDeviceCommands(program: Command): void {
  const device = program.command('device').description("a gateway's stock WireGuard devices (phones): add, list, remove");
  device
    .command('add')
    .argument('<name>', "the device's name (a DNS label); it resolves mesh-wide as NAME.GATEWAY.DOMAIN")
    .requiredOption('--endpoint <host:port>', 'where the device reaches this gateway (its public address or name, and ListenPort)')
    .option('--ip <addr>', "the device's address (default: the first free one in the gateway's subnets; one per family, comma-separated)")
    .option('-i, --interface <name>', 'the gateway node (default: the only one running)')
    .option('--qr-png <file>', 'also write the QR code as a PNG (mode 0600: it holds the private key)')
    .option('--no-qr', 'print the configuration only')
    .option('--no-psk', 'no preshared key')
    .description("add a device: prints its wg-quick configuration and a QR code for the WireGuard app (the only place its private key appears)")
    .action(async (name: string, o: { endpoint: string; ip?: string; interface?: string; qrPng?: string; qr: boolean; psk: boolean }) => {
      const ep = parseEndpoint(o.endpoint);
      if (typeof ep === 'string') fail(`--endpoint: ${ep}`);
      const node = await nodeName(o.interface);
      const privateKey = nobleCrypto.generatePrivateKey((n) => new Uint8Array(randomBytes(n)));
      const publicKey = nobleCrypto.publicKey(privateKey);
      const psk = o.psk ? new Uint8Array(randomBytes(32)) : undefined;
      const r = await ask(node, { op: 'device-add', name, publicKey: encodeKey(publicKey), ...(psk ? { presharedKey: encodeKey(psk) } : {}), ...(o.ip ? { ip: o.ip } : {}) });
      const text = configFromAnswer(r.device as DeviceAdded, privateKey, psk, o.endpoint);
      process.stdout.write(text);
      if (o.qr) process.stdout.write('\n' + (await qrForTerminal(text, process.stdout.isTTY === true)));
      if (o.qrPng) await writeQrPng(o.qrPng, text);
      process.stderr.write(`keymesh: device ${name} added as ${r.device.addresses.join(', ')}; its private key is shown above only\n`);
    });
  device
    .command('list')
    .option('-i, --interface <name>', 'the gateway node (default: the only one running)')
    .option('--json', 'machine-readable output')
    .description("the gateway's devices: name, address, public key, last handshake")
    .action(async (o: { interface?: string; json?: boolean }) => {
      const r = await ask(await nodeName(o.interface), { op: 'device-list' });
      process.stdout.write(o.json ? JSON.stringify(r.devices, null, 2) + '\n' : formatDeviceList(r.devices));
    });
  device
    .command('remove')
    .argument('<name>', "the device's name")
    .option('-i, --interface <name>', 'the gateway node (default: the only one running)')
    .description('remove a device: its session ends at once and it is gone from the devices file')
    .action(async (name: string, o: { interface?: string }) => {
      await ask(await nodeName(o.interface), { op: 'device-remove', name });
      process.stdout.write(`device ${name} removed\n`);
    });
}
