/**
 * DNS over TCP framing (RFC 1035 §4.2.2, RFC 7766 §8): each message is preceded by its length as
 * two bytes, big-endian. A stream may deliver a message in pieces or several in one chunk.
 */

/** The largest message a client may send us over TCP (a query is a few hundred bytes at most). */
export const MAX_TCP_QUERY = 4096;

/** A message with its length prefix. */
export function frame(msg: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(msg.length + 2);
  out.writeUInt16BE(msg.length, 0);
  out.set(msg, 2);
  return out;
}

/** Reassembles the messages of one TCP stream. */
export class TcpDeframer {
  private buf: Buffer = Buffer.alloc(0);

  /** `max`: the largest message taken (a query: MAX_TCP_QUERY; an upstream's answer: 65535). */
  constructor(private readonly max = MAX_TCP_QUERY) {}

  /**
   * The complete messages `chunk` finishes (often none), or null if the stream is not DNS we take
   * (an empty or oversized message): the caller closes the connection.
   */
  push(chunk: Uint8Array): Buffer[] | null {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : Buffer.from(chunk);
    const out: Buffer[] = [];
    while (this.buf.length >= 2) {
      const n = this.buf.readUInt16BE(0);
      if (n === 0 || n > this.max) return null;
      if (this.buf.length < 2 + n) break;
      out.push(this.buf.subarray(2, 2 + n));
      this.buf = this.buf.subarray(2 + n);
    }
    return out;
  }

  /** Bytes held of a message not complete yet. */
  get held(): number {
    return this.buf.length;
  }
}
