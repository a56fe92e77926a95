/**
 * Lighthouse side: recent lookups, remembered so that both sides are introduced (again) the
 * moment the peer they named registers (sans-I/O; the engine feeds it `now`).
 *
 * A member that asks for a peer which has no session with the lighthouse (not up yet, or its
 * registration is still in flight — both laptops waking up at once), or whose session is left
 * from before it went down, would otherwise hear nothing useful until its own handshake retry
 * (REKEY_TIMEOUT, 5 s). The lighthouse keeps the question for INTRODUCTION_TTL and, when a session
 * with the peer completes, answers it then: CANDIDATES to the asker and a punch request to the
 * peer, exactly as if the lookup had arrived just now.
 *
 * Bounded: at most MAX_ASKERS_PER_TARGET askers per peer and MAX_TARGETS peers (oldest forgotten
 * first); only peers in the lighthouse's own config are ever remembered (the engine checks).
 */

/** How long an unanswered lookup is kept. */
export const INTRODUCTION_TTL = 30_000;
export const MAX_ASKERS_PER_TARGET = 8;
export const MAX_TARGETS = 1024;

export class PendingIntroductions {
  /** target key id → asker key id → when it last asked (insertion order = age). */
  private readonly byTarget = new Map<string, Map<string, number>>();

  /** `asker` asked for `target`, which could not be answered now. */
  remember(target: string, asker: string, now: number): void {
    let askers = this.byTarget.get(target);
    if (!askers) {
      if (this.byTarget.size >= MAX_TARGETS) this.byTarget.delete(this.byTarget.keys().next().value!);
      askers = new Map();
      this.byTarget.set(target, askers);
    }
    askers.delete(asker); // re-insert: the newest last
    if (askers.size >= MAX_ASKERS_PER_TARGET) askers.delete(askers.keys().next().value!);
    askers.set(asker, now);
  }

  /** `target` registered: the askers still waiting for it (each returned once), newest last. */
  take(target: string, now: number): string[] {
    const askers = this.byTarget.get(target);
    if (!askers) return [];
    this.byTarget.delete(target);
    const out: string[] = [];
    for (const [asker, at] of askers) if (now - at <= INTRODUCTION_TTL) out.push(asker);
    return out;
  }

  /** Forget everything about a peer that left the config (as asker or target). */
  forget(keyId: string): void {
    this.byTarget.delete(keyId);
    for (const askers of this.byTarget.values()) askers.delete(keyId);
  }

  get size(): number {
    return this.byTarget.size;
  }
}
