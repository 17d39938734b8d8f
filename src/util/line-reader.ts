// Splits a byte stream into newline-terminated lines with a hard bound on line length, so a
// peer that never sends a newline cannot make us buffer without limit. A line over the bound
// (seen whole or not) ends the reader: nothing after it is delivered, since where the next
// line starts is no longer known (the tail of the long line must not pass for a request).
import { StringDecoder } from 'node:string_decoder';

export class LineReader {
  private readonly decoder = new StringDecoder('utf8');
  private pending = '';
  private overflowed = false;

  constructor(
    /** The longest line accepted, in UTF-16 code units of the decoded text. */
    private readonly maxLineBytes: number,
    private readonly onLine: (line: string) => void,
    private readonly onOverflow: () => void,
  ) {}

  push(chunk: Buffer): void {
    if (this.overflowed) return;
    this.pending += this.decoder.write(chunk);
    let nl: number;
    while ((nl = this.pending.indexOf('\n')) >= 0) {
      if (nl > this.maxLineBytes) return this.overflow();
      const line = this.pending.slice(0, nl);
      this.pending = this.pending.slice(nl + 1);
      if (line.length > 0) this.onLine(line);
      if (this.overflowed) return;
    }
    if (this.pending.length > this.maxLineBytes) this.overflow();
  }

  private overflow(): void {
    this.overflowed = true;
    this.pending = '';
    this.onOverflow();
  }
}
