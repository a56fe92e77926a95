/**
 * The UAPI's set=1 applied to a real engine (src/io/uapi-bridge.ts), where wireguard-go's
 * device/uapi.go has a rule that `wg set`, `wg setconf` and `wg syncconf` rely on: remove=true,
 * update_only=true, replace_allowed_ips=true (in order with the allowed_ip lines around it),
 * allowed_ip=-PREFIX, a section for our own key, a new private key equal to a peer's key, and the
 * flags that take only "true". The netns test (test/integration/reload.test.ts) runs stock
 * `wg syncconf` against keymesh and wireguard-go side by side.
 */
import { describe, expect, it } from 'vitest';
import { Engine, type Sink } from '../../src/core/engine.js';
import { nobleCrypto } from '../../src/core/crypto.js';
import { formatAddress } from '../../src/core/ip.js';
import { keyToHex } from '../../src/config/keys.js';
import { EINVAL, parseSet, UapiError } from '../../src/uapi/protocol.js';
import { uapiApply, type UapiHost } from '../../src/io/uapi-bridge.js';
import { PathTable } from '../../src/io/udp-path.js';
import { random } from './support/pair.js';

const sink: Sink = { send: () => undefined, writeTun: () => undefined, event: () => undefined };
const priv = (i: number) => nobleCrypto.generatePrivateKey(() => new Uint8Array(32).fill(i));
const pub = (i: number) => keyToHex(nobleCrypto.publicKey(priv(i)));

function node() {
  const engine = new Engine(sink, { privateKey: priv(1), random });
  const host: UapiHost = {
    engine,
    paths: new PathTable(),
    names: { forget: () => undefined } as unknown as UapiHost['names'],
    name: 'test0',
    listenPort: 51820,
    fwmark: 0,
    log: () => undefined,
    now: () => 0,
    rebind: () => undefined,
    setFwmark: () => undefined,
    syncRoutes: async () => undefined,
    flushAndArm: () => undefined,
  };
  const set = (body: string) => uapiApply(host, parseSet(body));
  const ips = (i: number) => {
    const p = engine.listPeers().find((q) => keyToHex(q.publicKey) === pub(i));
    return p ? engine.allowedIpsOf(p).map((a) => `${formatAddress(a.addr)}/${a.cidr}`).sort() : null;
  };
  return { engine, set, ips };
}

describe('UAPI set=1 on the engine, as wireguard-go applies it', () => {
  it('remove=true takes the peer away (and its allowed IPs); the rest of its section is ignored', () => {
    const n = node();
    n.set(`public_key=${pub(2)}\nallowed_ip=10.0.0.2/32\npublic_key=${pub(3)}\nallowed_ip=10.0.0.3/32\n`);
    n.set(`public_key=${pub(2)}\nremove=true\nallowed_ip=10.9.0.0/16\n`);
    expect(n.ips(2)).toBeNull();
    expect(n.ips(3)).toEqual(['10.0.0.3/32']);
    expect(n.engine.lookupRoute(new Uint8Array([10, 0, 0, 2]))).toBeUndefined();
    // removing a peer that is not there is no error
    n.set(`public_key=${pub(4)}\nremove=true\n`);
    expect(n.engine.listPeers()).toHaveLength(1);
  });

  it('update_only=true changes a peer that exists and creates none', () => {
    const n = node();
    n.set(`public_key=${pub(2)}\nallowed_ip=10.0.0.2/32\n`);
    n.set(`public_key=${pub(2)}\nupdate_only=true\npersistent_keepalive_interval=25\npublic_key=${pub(3)}\nupdate_only=true\nallowed_ip=10.0.0.3/32\n`);
    expect(n.engine.listPeers().map((p) => [keyToHex(p.publicKey), p.persistentKeepalive])).toEqual([[pub(2), 25]]);
  });

  it('replace_allowed_ips=true drops what the peer had and what came before it in the section', () => {
    const n = node();
    n.set(`public_key=${pub(2)}\nallowed_ip=10.0.0.2/32\nallowed_ip=10.0.1.0/24\n`);
    n.set(`public_key=${pub(2)}\nallowed_ip=10.7.0.0/16\nreplace_allowed_ips=true\nallowed_ip=10.0.0.9/32\n`);
    expect(n.ips(2)).toEqual(['10.0.0.9/32']);
  });

  it('allowed_ip=-PREFIX takes one prefix away, only from that peer', () => {
    const n = node();
    n.set(`public_key=${pub(2)}\nallowed_ip=10.0.0.2/32\nallowed_ip=10.0.1.0/24\npublic_key=${pub(3)}\nallowed_ip=10.0.3.0/24\n`);
    n.set(`public_key=${pub(2)}\nallowed_ip=-10.0.1.0/24\nallowed_ip=-10.0.3.0/24\n`);
    expect(n.ips(2)).toEqual(['10.0.0.2/32']);
    expect(n.ips(3)).toEqual(['10.0.3.0/24']);
  });

  it('a section for our own public key is ignored; a new private key whose public key is a peer’s removes that peer', () => {
    const n = node();
    n.set(`public_key=${pub(1)}\nallowed_ip=10.0.0.1/32\npublic_key=${pub(2)}\nallowed_ip=10.0.0.2/32\n`);
    expect(n.engine.listPeers().map((p) => keyToHex(p.publicKey))).toEqual([pub(2)]);
    n.set(`private_key=${keyToHex(priv(2))}\n`);
    expect(n.engine.listPeers()).toHaveLength(0);
  });

  it('replace_peers, remove, update_only and replace_allowed_ips take "true" and nothing else', () => {
    for (const body of ['replace_peers=false', `public_key=${pub(2)}\nremove=false`, `public_key=${pub(2)}\nupdate_only=false`, `public_key=${pub(2)}\nreplace_allowed_ips=false`, `public_key=${pub(2)}\nallowed_ip=-10.0.0.1`]) {
      let err: unknown = null;
      try {
        parseSet(body);
      } catch (e) {
        err = e;
      }
      expect(err, body).toBeInstanceOf(UapiError);
      expect((err as UapiError).errno).toBe(EINVAL);
    }
  });
});
