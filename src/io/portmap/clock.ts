/**
 * The port mapping clients' clock seam (the unit tests drive them on a virtual one) and the one
 * timer each keeps: the next retransmission, renewal or retry — arming it replaces what was set.
 */
export interface PortMapClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The process's timers, unref'd: port mapping never keeps the process alive. */
export const processClock: PortMapClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** One timer at a time; a callback whose owner has stopped (`live` false) is not run. */
export class OneTimer {
  private handle: unknown = null;

  constructor(
    private readonly clock: PortMapClock,
    private readonly live: () => boolean,
  ) {}

  arm(fn: () => void, ms: number): void {
    this.cancel();
    this.handle = this.clock.setTimeout(() => {
      this.handle = null;
      if (this.live()) fn();
    }, ms);
  }

  cancel(): void {
    if (this.handle !== null) this.clock.clearTimeout(this.handle);
    this.handle = null;
  }
}
