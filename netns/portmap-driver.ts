/**
 * A LAN host's side of the port mapping netns test: binds a UDP port, maps it on the default
 * gateway with the PortMapper (from dist/, as the runtime will use it), and reports.
 *
 *   node dist/netns/portmap-driver.js --port P [--gateway ADDR] [--lifetime S] [--give-up-ms MS]
 *
 * One JSON line per event, each with `t` (ms since the driver started): ready (the port is
 * bound), start (mapping begins), mapped, lost, log, datagram (one that reached the port, with
 * its source and text), stopped. SIGUSR1 stops the mapper (the mapping is deleted) but keeps the
 * port open, so the test can check that nothing gets through any more; SIGTERM stops and exits.
 */
import dgram from 'node:dgram';
import { PortMapper } from '../src/io/portmap/client.js';
import { findDefaultGateway } from '../src/io/portmap/gateway.js';

const t0 = performance.now();

function emit(event: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(JSON.stringify({ event, t: Math.round(performance.now() - t0), ...fields }) + '\n');
}

function fail(problem: string): never {
  process.stderr.write(`portmap-driver: ${problem}\n`);
  process.exit(2);
}

const args = process.argv.slice(2);
function option(name: string): string | undefined {
  const i = args.indexOf(name);
  return i < 0 ? undefined : (args[i + 1] ?? fail(`${name} needs a value`));
}
const num = (name: string): number | undefined => {
  const v = option(name);
  if (v === undefined) return undefined;
  const n = Number(v);
  return Number.isInteger(n) && n >= 0 ? n : fail(`${name}: "${v}" is not a whole number`);
};

const port = num('--port') ?? fail('--port P is required');
const sock = dgram.createSocket('udp4');
sock.on('message', (msg, r) => emit('datagram', { from: `${r.address}:${r.port}`, data: msg.toString() }));
sock.on('error', (e) => fail(`UDP port ${port}: ${e.message}`));

sock.bind(port, async () => {
  emit('ready', { port });
  const gateway = option('--gateway') ?? (await findDefaultGateway(4))?.address ?? fail('no default gateway, and no --gateway');
  const pm = new PortMapper({
    gateway,
    internalPort: port,
    lifetime: num('--lifetime'),
    giveUpMs: num('--give-up-ms'),
    onMapped: (m) => emit('mapped', { ...m }),
    onLost: (reason) => emit('lost', { reason }),
    log: (line) => emit('log', { line }),
  });
  emit('start', { gateway });
  pm.start();
  const stop = async () => {
    await pm.stop();
    emit('stopped', { stats: pm.stats });
  };
  process.on('SIGUSR1', () => void stop());
  process.once('SIGTERM', () => void stop().then(() => process.exit(0)));
});
