/**
 * The node's log: one line per event, as text (`TIME MESSAGE`, the default) or as one JSON object
 * per line for log collectors (`keymesh up --log-format json`), filtered by level
 * (`--log-level debug|info|warn|error`, default info).
 *
 *   {"time":"2026-…Z","level":"info","event":"handshake-complete","msg":"wg0: peer xTIB0mRK… handshake complete (we initiated)","fields":{"peer":"xTIB0mRK…"}}
 *
 * Callers pass the human sentence and, where they have them, a level, an event name and fields;
 * a line without them is an info-level "log" event. Whatever a caller passes, nothing shaped like
 * a key (44 characters of base64, or 64 hex digits) leaves this file whole: it is cut to the
 * 8-character prefix the log uses for public keys, so a private or preshared key that found its
 * way into a message or a field is never written out.
 *
 * May touch: the stream it is given (stdout for `keymesh up`), and the clock (the time stamp).
 */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];
export type LogFormat = 'text' | 'json';

/** What a caller may say beside the sentence. */
export interface LogMeta {
  level?: LogLevel;
  /** A stable name for the kind of event (handshake-complete, endpoint-changed, resolve-failed, …). */
  event?: string;
  fields?: Record<string, string | number | boolean | null>;
}

/** The log as every part of the runtime sees it. */
export type Log = (line: string, meta?: LogMeta) => void;

// Base64 keys (as configs and `wg` print them) and hex keys (as the UAPI carries them).
const KEY_SHAPES = /[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=|(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])/g;

/** `text` with every key-shaped run cut to its first 8 characters and "…". */
export function redactKeys(text: string): string {
  return text.replace(KEY_SHAPES, (k) => `${k.slice(0, 8)}…`);
}

/**
 * A log writing to `write` (one call per line, newline included). Lines below `level` are dropped
 * before anything is formatted.
 */
export function createLog(opts: { format?: LogFormat; level?: LogLevel; write: (line: string) => void; clock?: () => Date }): Log {
  const format = opts.format ?? 'text';
  const min = LOG_LEVELS.indexOf(opts.level ?? 'info');
  const clock = opts.clock ?? (() => new Date());
  return (line, meta) => {
    const level = meta?.level ?? 'info';
    if (LOG_LEVELS.indexOf(level) < min) return;
    const time = clock().toISOString();
    const msg = redactKeys(line);
    if (format === 'text') {
      opts.write(`${time} ${level === 'info' ? '' : `${level}: `}${msg}\n`);
      return;
    }
    const fields: Record<string, string | number | boolean | null> = {};
    for (const [k, v] of Object.entries(meta?.fields ?? {})) fields[k] = typeof v === 'string' ? redactKeys(v) : v;
    opts.write(JSON.stringify({ time, level, event: meta?.event ?? 'log', msg, fields }) + '\n');
  };
}
