/**
 * systemd's readiness protocol (sd_notify(3)) for a `Type=notify` unit: systemd names a Unix
 * datagram socket in $NOTIFY_SOCKET and waits for READY=1 there before it calls the unit started;
 * RELOADING=1 … READY=1 brackets a reload, and STOPPING=1 says the shutdown has begun.
 *
 *   keymesh up                                   systemd
 *   interface up, UAPI and control sockets  ──▶  READY=1            (active)
 *   reload (ExecReload, SIGHUP)             ──▶  RELOADING=1 …      (reloading)
 *                                           ──▶  READY=1            (active)
 *   SIGTERM                                 ──▶  STOPPING=1         (deactivating)
 *
 * Node has no datagram Unix sockets, so the addon sends each message (native/notify.c). Without
 * $NOTIFY_SOCKET (not run by systemd) every call does nothing. A message that cannot be sent is
 * logged and the node goes on: it is systemd's bookkeeping, not the tunnel.
 */
import { unixDatagramSend } from './native.js';

export class SystemdNotifier {
  private constructor(
    private readonly socket: string,
    private readonly log: (line: string) => void,
  ) {}

  /**
   * The notifier $NOTIFY_SOCKET asks for, or null. The variable is removed from the environment
   * (as sd_notify's unset_environment does), so hooks and other children cannot speak for us.
   */
  static fromEnv(log: (line: string) => void, env: NodeJS.ProcessEnv = process.env): SystemdNotifier | null {
    const socket = env.NOTIFY_SOCKET;
    delete env.NOTIFY_SOCKET;
    if (!socket) return null;
    return new SystemdNotifier(socket, log);
  }

  /** The interface is up (or a reload is done); `status` is what `systemctl status` shows. */
  ready(status?: string): void {
    this.send(['READY=1', ...(status ? [`STATUS=${oneLine(status)}`] : [])]);
  }

  /** A reload has begun; systemd ≥ 253 wants the monotonic clock of that moment with it. */
  reloading(): void {
    // process.hrtime is libuv's uv_hrtime: CLOCK_MONOTONIC on Linux, as MONOTONIC_USEC means.
    this.send(['RELOADING=1', `MONOTONIC_USEC=${process.hrtime.bigint() / 1000n}`]);
  }

  stopping(): void {
    this.send(['STOPPING=1']);
  }

  private send(lines: string[]): void {
    try {
      unixDatagramSend(this.socket, new TextEncoder().encode(lines.join('\n') + '\n'));
    } catch (e) {
      this.log(`cannot tell systemd ${lines[0]} through ${this.socket}: ${(e as Error).message}`);
    }
  }
}

/** A STATUS= value is one line. */
function oneLine(s: string): string {
  return s.replace(/[\r\n]+/g, ' ');
}
