/**
 * SaveConfig = true: on shutdown, the running configuration (peers, endpoints, allowed IPs and
 * keys as they are now, after any `wg set`) is written back to the wg-quick file it came from.
 *
 * May touch: that file (replaced atomically through atomic-write.ts, mode 0600: it holds the
 * private key) and the log; it reads the engine.
 */
import { writeFileAtomic } from './atomic-write.js';
import type { Engine } from '../core/engine.js';
import { formatAddress } from '../core/ip.js';
import { serializeWgQuick, type PeerConfig, type WgQuickConfig } from '../config/wgquick.js';
import { udpOf } from './local-ends.js';

/** What saving the configuration uses of the runtime. */
export interface SaveHost {
  readonly engine: Engine;
  readonly name: string;
  readonly listenPort: number;
  log(line: string): void;
}

/** SaveConfig = true: write the running configuration back to the file (mode 0600) on shutdown. */
export async function saveConfig(rt: SaveHost, cfg: WgQuickConfig): Promise<void> {
  // a gateway's devices live in their own file (devices.ts), not as [Peer]s
  const peers: PeerConfig[] = rt.engine.listPeers().filter((p) => p.membership === 'static' && !p.device).map((p, i) => {
    const ep = udpOf(p.endpoint.path);
    const psk = p.handshake.presharedKey;
    return {
      publicKey: p.publicKey,
      presharedKey: psk.some((b) => b !== 0) ? psk : undefined,
      allowedIps: rt.engine.allowedIpsOf(p).map((a) => ({ ...a, text: `${formatAddress(a.addr)}/${a.cidr}` })),
      endpoint: ep ? { host: ep.address, port: ep.port } : undefined,
      persistentKeepalive: p.persistentKeepalive || undefined,
      lighthouse: p.lighthouse,
      line: i,
    };
  });
  const privateKey = rt.engine.privateKey ?? cfg.interface.privateKey;
  const text = serializeWgQuick({ file: cfg.file, interface: { ...cfg.interface, privateKey, listenPort: rt.listenPort }, peers });
  // A crash (or power loss) while saving leaves the old file or the new one, never a truncated one.
  await writeFileAtomic(cfg.file, text, { mode: 0o600 });
  rt.log(`${rt.name}: configuration saved to ${cfg.file}`);
}
