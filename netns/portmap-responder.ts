/**
 * A home router's NAT-PMP (RFC 6886) and PCP (RFC 6887) server, for the netns tests: run with
 * node inside a NAT router's namespace,
 *
 *   node dist/netns/portmap-responder.js --wan IF --lan-addr ADDR [--refuse] [--nat-pmp-only] [--max-lifetime S]
 *
 * It listens on ADDR:5351 (the LAN side only: RFC 6886 §3.3 wants no requests taken from
 * outside), answers with netns/portmap-server.ts, and makes each mapping real: an nftables DNAT
 * rule in its own table, installed before the answer goes out and removed on delete or expiry,
 *
 *   table inet kmportmap { chain prerouting { type nat hook prerouting priority dstnat;
 *     iifname "IF" ip daddr WAN udp dport EXT dnat ip to INTERNAL:PORT } }
 *
 * and on removal the flows conntrack still holds for it are flushed, so that an outside sender
 * that already got through is cut off too (its packets would otherwise keep matching the old
 * translation). The router's filter must let translated flows in — `ct status dnat accept`
 * before its "drop new from the WAN" rule, as home routers do for port forwards. (An accept in
 * this table could not do it: in nftables an accept ends only its own base chain, and another
 * table's drop at the same hook still drops.)
 *
 * On start it announces itself (PCP ANNOUNCE and NAT-PMP's external address, to 224.0.0.1:5350,
 * ten times from 250 ms doubling: RFC 6886 §3.2.1), so a restart makes clients map again. On
 * SIGTERM or SIGINT it removes its table.
 *
 * It prints one JSON line per event, for the tests: listening, request (with what it was and
 * what it got), add / refresh / delete / expire (with the nft rule's handle), announce, exit.
 */
import dgram from 'node:dgram';
import { execFileSync } from 'node:child_process';
import { PortMapServer, type MappingChange } from './portmap-server.js';
import { NATPMP_ANNOUNCE_GROUP, NATPMP_CLIENT_PORT, NATPMP_SERVER_PORT } from '../src/io/portmap/natpmp.js';

const TABLE = 'kmportmap';
const t0 = Date.now();

function emit(event: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(JSON.stringify({ event, t: Date.now() - t0, ...fields }) + '\n');
}

function fail(problem: string): never {
  process.stderr.write(`portmap-responder: ${problem}\n`);
  process.exit(2);
}

function parseArgs(argv: string[]) {
  const o = { wan: '', lanAddr: '', refuse: false, natPmpOnly: false, maxLifetime: 86_400 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => argv[++i] ?? fail(`${a} needs a value`);
    if (a === '--wan') o.wan = value();
    else if (a === '--lan-addr') o.lanAddr = value();
    else if (a === '--refuse') o.refuse = true;
    else if (a === '--nat-pmp-only') o.natPmpOnly = true;
    else if (a === '--max-lifetime') {
      o.maxLifetime = Number(value());
      if (!Number.isInteger(o.maxLifetime) || o.maxLifetime < 1) fail(`--max-lifetime: "${argv[i]}" is not a number of seconds`);
    } else fail(`unknown argument "${a}" (usage: --wan IF --lan-addr ADDR [--refuse] [--nat-pmp-only] [--max-lifetime S])`);
  }
  if (!o.wan || !o.lanAddr) fail('--wan IF and --lan-addr ADDR are required');
  return o;
}

function run(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
}

/** The WAN interface's first IPv4 address. */
function wanAddressOf(ifname: string): string {
  let info: Array<{ addr_info?: Array<{ family: string; local: string }> }>;
  try {
    info = JSON.parse(run('ip', ['-j', '-4', 'addr', 'show', 'dev', ifname]));
  } catch (e) {
    fail(`cannot read the addresses of --wan ${ifname}: ${(e as Error).message.split('\n')[0]}`);
  }
  const a = info[0]?.addr_info?.find((x) => x.family === 'inet')?.local;
  return a ?? fail(`--wan ${ifname} has no IPv4 address`);
}

const opts = parseArgs(process.argv.slice(2));
const wanAddress = wanAddressOf(opts.wan);
const server = new PortMapServer({ wanAddress, refuse: opts.refuse, natPmpOnly: opts.natPmpOnly, maxLifetime: opts.maxLifetime }, Date.now());
/** nft rule handle of each mapping, by "protocol external-port". */
const rules = new Map<string, number>();

function removeTable(): void {
  try {
    run('nft', ['delete', 'table', 'inet', TABLE]);
  } catch {
    /* not there */
  }
}

removeTable(); // a previous run's mappings are gone with its state, as after a reboot
run('nft', ['-f', '-'], `table inet ${TABLE} { chain prerouting { type nat hook prerouting priority dstnat; policy accept; }; }`);

function apply(c: MappingChange): void {
  const m = c.mapping;
  const k = `${m.protocol} ${m.externalPort}`;
  let handle = rules.get(k) ?? null;
  if (c.change === 'add') {
    const out = run('nft', [
      '--echo',
      '--handle',
      'add',
      'rule',
      'inet',
      TABLE,
      'prerouting',
      'iifname',
      opts.wan,
      'ip',
      'daddr',
      wanAddress,
      m.protocol,
      'dport',
      String(m.externalPort),
      'dnat',
      'ip',
      'to',
      `${m.internalAddress}:${m.internalPort}`,
    ]);
    handle = Number(/# handle (\d+)/.exec(out)?.[1] ?? NaN);
    if (!Number.isInteger(handle)) fail(`nft did not give the new rule's handle: ${out.trim()}`);
    rules.set(k, handle);
  } else if (c.change === 'delete' || c.change === 'expire') {
    if (handle !== null) run('nft', ['delete', 'rule', 'inet', TABLE, 'prerouting', 'handle', String(handle)]);
    rules.delete(k);
    try {
      run('conntrack', ['-D', '-p', m.protocol, '--orig-dst', wanAddress, '--orig-port-dst', String(m.externalPort)]);
    } catch {
      /* no flow to flush (conntrack exits 1 then) */
    }
  }
  emit(c.change, {
    via: c.via,
    protocol: m.protocol,
    internal: `${m.internalAddress}:${m.internalPort}`,
    external: `${wanAddress}:${m.externalPort}`,
    lifetime: m.lifetime,
    rule: handle,
  });
}

let expiryTimer: NodeJS.Timeout | null = null;
function armExpiry(): void {
  if (expiryTimer) clearTimeout(expiryTimer);
  expiryTimer = null;
  const at = server.nextExpiry();
  if (at === null) return;
  expiryTimer = setTimeout(
    () => {
      for (const c of server.expire(Date.now())) apply(c);
      armExpiry();
    },
    Math.max(0, at - Date.now()),
  );
}

const sock = dgram.createSocket('udp4');
sock.on('message', (msg, rinfo) => {
  const r = server.handle(new Uint8Array(msg.buffer, msg.byteOffset, msg.length), { address: rinfo.address }, Date.now());
  emit('request', { from: `${rinfo.address}:${rinfo.port}`, bytes: msg.length, note: r.note });
  for (const c of r.changes) apply(c);
  armExpiry();
  if (r.reply) sock.send(r.reply, rinfo.port, rinfo.address);
});
sock.on('error', (e) => fail(`socket on ${opts.lanAddr}:${NATPMP_SERVER_PORT}: ${e.message}`));
sock.bind(NATPMP_SERVER_PORT, opts.lanAddr, () => {
  sock.setMulticastInterface(opts.lanAddr);
  emit('listening', { wan: opts.wan, wanAddress, lan: opts.lanAddr, refuse: opts.refuse, natPmpOnly: opts.natPmpOnly, maxLifetime: opts.maxLifetime });
  announce(0, 250);
});

/** RFC 6886 §3.2.1: ten announcements, the first two 250 ms apart, doubling after. */
function announce(n: number, gapMs: number): void {
  if (n >= 10) return;
  for (const a of server.announcements(Date.now())) sock.send(a, NATPMP_CLIENT_PORT, NATPMP_ANNOUNCE_GROUP);
  emit('announce', { n: n + 1 });
  setTimeout(() => announce(n + 1, gapMs * 2), gapMs).unref();
}

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    // Going down loses every mapping, the flows through them included, as a reboot does.
    for (const c of server.restart(Date.now())) apply(c);
    removeTable();
    emit('exit', { signal });
    process.exit(0);
  });
}
