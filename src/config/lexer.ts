// drbd.conf tokens: words, quoted strings, `{`, `}`, `;`, with `#` comments to end of line.
// Never throws: a bad character or an unterminated string becomes a located diagnostic.
import type { ConfigDiagnostic, SourceLocation } from './types.js';

export type TokenKind = 'word' | 'string' | '{' | '}' | ';' | 'eof';

export interface Token {
  readonly kind: TokenKind;
  /** The word, or the string's content with escapes resolved. */
  readonly text: string;
  readonly location: SourceLocation;
}

const isSpace = (c: string): boolean =>
  c === ' ' || c === '\t' || c === '\r' || c === '\n' || c === '\f' || c === '\v';
const isDelimiter = (c: string): boolean =>
  isSpace(c) || c === '{' || c === '}' || c === ';' || c === '"' || c === '#';

export function tokenize(text: string, file: string, diagnostics: ConfigDiagnostic[]): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  let line = 1;
  let lineStart = 0;
  const here = (at: number): SourceLocation => ({ file, line, column: at - lineStart + 1 });

  while (i < text.length) {
    const c = text[i] ?? '';
    if (c === '\n') {
      i++;
      line++;
      lineStart = i;
      continue;
    }
    if (isSpace(c)) {
      i++;
      continue;
    }
    if (c === '#') {
      while (i < text.length && text[i] !== '\n') i++;
      continue;
    }
    if (c === '{' || c === '}' || c === ';') {
      tokens.push({ kind: c, text: c, location: here(i) });
      i++;
      continue;
    }
    if (c === '"') {
      const start = here(i);
      const open = i;
      i++;
      let value = '';
      let closed = false;
      while (i < text.length) {
        const d = text[i] ?? '';
        if (d === '"') {
          closed = true;
          i++;
          break;
        }
        if (d === '\n') break; // drbd.conf strings do not span lines
        if (d === '\\' && i + 1 < text.length && text[i + 1] !== '\n') {
          value += text[i + 1] ?? '';
          i += 2;
          continue;
        }
        value += d;
        i++;
      }
      if (!closed) {
        // Resume after the first ';' of the would-be string, so one missing quote is one error.
        const semi = text.indexOf(';', open);
        if (semi >= 0 && semi < i) {
          value = text.slice(open + 1, semi);
          i = semi;
        }
        diagnostics.push({
          severity: 'error',
          location: start,
          message: 'unterminated string',
          expected: "a closing '\"' on the same line",
        });
      }
      tokens.push({ kind: 'string', text: value, location: start });
      continue;
    }
    const start = i;
    while (i < text.length && !isDelimiter(text[i] ?? ' ')) i++;
    const word = text.slice(start, i);
    if (hasControl(word)) {
      diagnostics.push({
        severity: 'error',
        location: here(start),
        message: `control character in '${printable(word)}'`,
      });
    }
    tokens.push({ kind: 'word', text: word, location: here(start) });
  }
  tokens.push({ kind: 'eof', text: '', location: here(i) });
  return tokens;
}

/** A token's text made safe to put in a one-line message. */
export function printable(s: string): string {
  const cut = s.length > 60 ? `${s.slice(0, 57)}...` : s;
  let out = '';
  for (const ch of cut) {
    const code = ch.charCodeAt(0);
    out += code < 0x20 || code === 0x7f ? `\\x${code.toString(16).padStart(2, '0')}` : ch;
  }
  return out;
}

function hasControl(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}
