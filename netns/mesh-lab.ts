/**
 * A mesh made the way a user makes one: `keymesh ca init`, `keymesh ca enroll` per device, each
 * device's config listing only the lighthouse. The lighthouse is on the public network; every
 * member is behind its own NAT router (plain masquerade, as a home router or a cloud NAT: no
 * filtering of new inbound packets beyond conntrack's), and a stranger with a certificate from
 * another CA sits on the public network.
 *
 *          public network 203.0.113.0/24 (one bridge)
 *   ──┬──────────────────┬──────────────────┬──
 *     LH .1              core .254          X .66 (another CA)
 *     lighthouse         a router, as the internet's
 *            ┌───────────┼───────────┬───────────┐  198.51.100.4k+1/30 ↔ 4k+2 (routerWan(k))
 *            r1          r2          r3          r4        NAT routers
 *            10.1.0/24   10.2.0/24   10.3.0/24   10.4.0/24
 *            m1 .2       m2 .2       m3 .2       m4 .2 (enrolled later)
 *
 * With `adjacentNats` the NAT routers sit on the public bridge itself (203.0.113.10+k), one hop
 * from each other, as two home routers plugged into one building's or one cloud subnet's switch:
 * then any packet that passes one NAT reaches the other, and no punch can get through two plain
 * masquerades (punch.ts): those members stay relayed, and say why.
 *
 * `member(k, name, { nat, wanMtu })` varies what a member sits behind (the NAT kinds of
 * nat-matrix.ts): `symmetric` (a new port per destination, new inbound dropped), `cgnat` (r<k> a
 * carrier's NAT with 100.64.k.0/30 inside, and a plain home router g<k> behind it), and a WAN link
 * of `wanMtu` bytes whose router sends no ICMP "too big" (a PMTU black hole).
 *
 * Overlay: the CA's networks 10.99.0.0/16 and fd99::/48, addresses handed out by `ca sign`.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { KEYMESH_BIN, Lab, sh, waitFor, type Proc } from './lib.js';
import { existsSync } from 'node:fs';
import { natRules, type NatKind } from './nat-matrix.js';

export const MESH_LH = '203.0.113.1';
export const MESH_PORT = 51820;

export interface MeshNode {
  name: string;
  ns: string;
  ifname: string;
  /** Its config file (as `ca enroll` printed it, plus what the test adds). */
  conf: string;
  v4: string;
  v6: string;
  publicKey: string;
  proc: Proc | null;
}

/** Run the keymesh CLI (no namespace: the CA lives on the admin's machine). */
export function km(args: string[], input?: string): string {
  return sh(process.execPath, [KEYMESH_BIN, ...args], input);
}

/** The overlay addresses and key a config's certificate names (from its comment lines and `keymesh cert show`). */
function identity(conf: string): { v4: string; v6: string; publicKey: string } {
  const text = readFileSync(conf, 'utf8');
  const cert = /^Certificate = (\S+)/m.exec(text)![1];
  const shown = JSON.parse(km(['cert', 'show', '-', '--json'], cert)) as { addresses: string[]; publicKey: string };
  const v4 = shown.addresses.find((a) => !a.includes(':'))!.split('/')[0];
  const v6 = shown.addresses.find((a) => a.includes(':'))!.split('/')[0];
  return { v4, v6, publicKey: shown.publicKey };
}

/** NAT router k's public address (on its link to the core; on the bridge with `adjacentNats`). */
export function routerWan(k: number, adjacentNats = false): string {
  return adjacentNats ? `203.0.113.${10 + k}` : `198.51.100.${4 * k + 2}`;
}

export function meshLab(lab: Lab, opts: { adjacentNats?: boolean } = {}) {
  const adjacent = opts.adjacentNats ?? false;
  const caDir = path.join(lab.dir, 'ca');
  km(['ca', 'init', '--name', 'lab mesh', '--networks', '10.99.0.0/16,fd99::/48', '--out', caDir]);
  const bridge = lab.bridge('wan');
  const { ns: core } = lab.router('core');
  bridge(core, 'eth0', ['203.0.113.254/24']);
  /** A host on the public bridge, its default route through the core. */
  const wan = (ns: string, ifn: string, addrs: string[]) => {
    bridge(ns, ifn, addrs);
    lab.exec(ns, ['ip', 'route', 'add', 'default', 'via', '203.0.113.254']);
  };
  const nodes = new Map<string, MeshNode>();

  const add = (name: string, ns: string, conf: string): MeshNode => {
    const n: MeshNode = { name, ns, ifname: lab.name(name), conf, ...identity(conf), proc: null };
    nodes.set(name, n);
    return n;
  };

  // the lighthouse: enrolled with --is-lighthouse, on the public network, with a revocation file
  const lhNs = lab.netns('lh');
  wan(lhNs, 'eth0', [`${MESH_LH}/24`]);
  const lhText = km(['ca', 'enroll', '--ca', caDir, '--name', 'lh', '--is-lighthouse', '--listen-port', String(MESH_PORT)]);
  const lhCrl = path.join(lab.dir, 'lh.crl');
  const lh = add('lh', lhNs, lab.file('lh.conf', lhText.replace('[Interface]\n', `[Interface]\nRevocations = ${lhCrl}\n`)));

  /** A device behind NAT router r<k>, enrolled with `ca enroll` (not started); `subnets`: routed through it (`--subnets`, a gateway). */
  const member = (k: number, name = `m${k}`, o: { subnets?: string; groups?: string; nat?: NatKind; wanMtu?: number } = {}): MeshNode => {
    const nat = o.nat ?? 'plain';
    const { ns: r } = lab.router(`r${k}`);
    if (adjacent) wan(r, 'wan', [`${routerWan(k, true)}/24`]);
    else {
      const base = 4 * k;
      lab.link(r, 'wan', [`${routerWan(k)}/30`], core, `c${k}`, [`198.51.100.${base + 1}/30`]);
      lab.exec(r, ['ip', 'route', 'add', 'default', 'via', `198.51.100.${base + 1}`]);
    }
    if (o.wanMtu) {
      for (const [ns, ifn] of [[r, 'wan'], [core, `c${k}`]]) lab.exec(ns, ['ip', 'link', 'set', ifn, 'mtu', String(o.wanMtu)]);
      // a black hole: what does not fit is dropped and nobody is told
      for (const ns of [r, core]) lab.exec(ns, ['nft', '-f', '-'], `table ip kmicmp${k} { chain out { type filter hook output priority 0; icmp type destination-unreachable icmp code frag-needed drop; }; }`);
    }
    lab.exec(r, ['nft', '-f', '-'], natRules(nat === 'cgnat' ? 'plain' : nat, 'wan'));
    // behind a carrier's NAT, the device's own (plain) home router
    let lanRouter = r;
    if (nat === 'cgnat') {
      const { ns: g } = lab.router(`g${k}`);
      lab.link(g, 'wan', [`100.64.${k}.2/30`], r, 'cgin', [`100.64.${k}.1/30`]);
      lab.exec(g, ['ip', 'route', 'add', 'default', 'via', `100.64.${k}.1`]);
      lab.exec(g, ['nft', '-f', '-'], natRules('plain', 'wan'));
      lanRouter = g;
    }
    const ns = lab.netns(name);
    lab.link(ns, 'eth0', [`10.${k}.0.2/24`], lanRouter, 'lan', [`10.${k}.0.1/24`]);
    lab.exec(ns, ['ip', 'route', 'add', 'default', 'via', `10.${k}.0.1`]);
    const text = km(['ca', 'enroll', '--ca', caDir, '--name', name, '--lighthouse', `lh=${MESH_LH}:${MESH_PORT}`, '--listen-port', String(MESH_PORT), ...(o.subnets ? ['--subnets', o.subnets] : []), ...(o.groups ? ['--groups', o.groups] : [])]);
    return add(name, ns, lab.file(`${name}.conf`, text));
  };

  /** A device with a certificate from another CA, on the public network; it lists our lighthouse. */
  const stranger = (): MeshNode => {
    const otherCa = path.join(lab.dir, 'other-ca');
    km(['ca', 'init', '--name', 'other mesh', '--networks', '10.99.0.0/16,fd99::/48', '--out', otherCa]);
    const ns = lab.netns('x');
    wan(ns, 'eth0', ['203.0.113.66/24']);
    const text = km(['ca', 'enroll', '--ca', otherCa, '--name', 'mallory', '--listen-port', String(MESH_PORT), '--ip', '10.99.0.200/16,fd99::c8/48', '--is-lighthouse']);
    // it names our lighthouse as its lighthouse, with our lighthouse's key (public knowledge)
    const lhKey = lh.publicKey;
    const conf = text.replace(/IsLighthouse = true\n/, '') + `\n[Peer]\nPublicKey = ${lhKey}\nEndpoint = ${MESH_LH}:${MESH_PORT}\nLighthouse = true\nPersistentKeepalive = 10\n`;
    return add('x', ns, lab.file('x.conf', conf));
  };

  /** `keymesh up` in the node's namespace; resolves when its UAPI socket exists. */
  const up = async (n: MeshNode): Promise<Proc> => {
    const p = lab.spawn(n.ns, [process.execPath, KEYMESH_BIN, 'up', n.conf, '--interface', n.ifname], `keymesh ${n.name}`);
    n.proc = p;
    await waitFor(`keymesh ${n.name} to come up`, () => {
      if (!p.running) throw new Error(`keymesh ${n.name} exited (${p.exitCode}):\n${p.output}`);
      return existsSync(`/var/run/wireguard/${n.ifname}.sock`);
    });
    return p;
  };

  /** `keymesh show --json` of a running node. */
  const show = (n: MeshNode): any => JSON.parse(km(['show', n.ifname, '--json']));

  return { lab, caDir, lh, lhCrl, nodes, member, stranger, up, show };
}

export type MeshLab = ReturnType<typeof meshLab>;
