// Splits a byte stream into newline-terminated lines with a hard bound on line length, so a
// peer that never sends a newline cannot make us buffer without limit.
import { StringDecoder } from 'node:string_decoder';

export class LineReader {
  private readonly decoder = new StringDecoder('utf8');
  private pending = '';

  constructor(
    private readonly maxLineBytes: number,
    private readonly onLine: (line: string) => void,
    private readonly onOverflow: () => void,
  ) {}

  push(chunk: Buffer): void {
    this.pending += this.decoder.write(chunk);
    let nl: number;
    while ((nl = this.pending.indexOf('\n')) >= 0) {
      const line = this.pending.slice(0, nl);
      this.pending = this.pending.slice(nl + 1);
      if (line.length > 0) this.onLine(line);
    }
    if (this.pending.length > this.maxLineBytes) {
      this.pending = '';
      this.onOverflow();
    }
  }
}
