// drbd.conf's generic structure: statements `KEYWORD ARG... ;` and sections `KEYWORD ARG... { ... }`.
// Meaning (which keywords, how many arguments) is checked later, against the schema, so that one
// pass can report every error. Never throws; nesting is bounded by CONFIG_NESTING_MAX.
import { CONFIG_NESTING_MAX } from '../limits.js';
import { printable, tokenize, type Token } from './lexer.js';
import type { ConfigDiagnostic, SourceLocation } from './types.js';

export interface Statement {
  readonly keyword: Token;
  readonly args: readonly Token[];
  /** The statements inside `{ }`, or null for a `;`-terminated statement. */
  readonly body: readonly Statement[] | null;
  /** Where the statement ended (`;` or `}`), for messages about what follows it. */
  readonly end: SourceLocation;
}

export function parseStatements(
  text: string,
  file: string,
  diagnostics: ConfigDiagnostic[],
): Statement[] {
  const tokens = tokenize(text, file, diagnostics);
  const p = new Parser(tokens, diagnostics);
  return p.block(null);
}

class Parser {
  private i = 0;
  constructor(
    private readonly tokens: Token[],
    private readonly diagnostics: ConfigDiagnostic[],
  ) {}

  private peek(): Token {
    // tokenize always ends with an eof token and the parser never moves past it.
    return this.tokens[Math.min(this.i, this.tokens.length - 1)] as Token;
  }

  private next(): Token {
    const t = this.peek();
    if (t.kind !== 'eof') this.i++;
    return t;
  }

  private error(location: SourceLocation, message: string, expected?: string): void {
    this.diagnostics.push({
      severity: 'error',
      location,
      message,
      ...(expected === undefined ? {} : { expected }),
    });
  }

  /** Statements until the `}` closing `opener` (or end of file at top level). */
  block(opener: Statement['keyword'] | null, depth = 0): Statement[] {
    const out: Statement[] = [];
    for (;;) {
      const t = this.peek();
      if (t.kind === 'eof') {
        if (opener !== null) {
          this.error(
            t.location,
            `section '${printable(opener.text)}' opened at line ${opener.location.line}, column ${opener.location.column} is not closed at the end of the file`,
            "'}'",
          );
        }
        return out;
      }
      if (t.kind === '}') {
        this.next();
        if (opener !== null) return out;
        this.error(t.location, "unexpected '}' with no open section", 'a keyword');
        continue;
      }
      if (t.kind === ';') {
        this.next();
        this.error(t.location, "unexpected ';'", 'a keyword');
        continue;
      }
      if (t.kind === '{') {
        this.next();
        this.error(t.location, "unexpected '{' without a section keyword", 'a keyword');
        this.skipBlock(depth + 1);
        continue;
      }
      if (t.kind === 'string') {
        this.next();
        this.error(t.location, `unexpected string "${printable(t.text)}"`, 'a keyword');
        continue;
      }
      const st = this.statement(depth);
      if (st !== null) out.push(st);
    }
  }

  private statement(depth: number): Statement | null {
    const keyword = this.next();
    const args: Token[] = [];
    for (;;) {
      const t = this.peek();
      if (t.kind === 'word' || t.kind === 'string') {
        args.push(this.next());
        continue;
      }
      if (t.kind === ';') {
        this.next();
        return { keyword, args, body: null, end: t.location };
      }
      if (t.kind === '{') {
        this.next();
        if (depth + 1 > CONFIG_NESTING_MAX) {
          this.error(t.location, `sections nested deeper than ${CONFIG_NESTING_MAX}`);
          this.skipBlock(depth + 1);
          return null;
        }
        const body = this.block(keyword, depth + 1);
        return { keyword, args, body, end: this.tokens[this.i - 1]?.location ?? t.location };
      }
      // '}' or end of file: the statement was never terminated.
      const last = args[args.length - 1] ?? keyword;
      this.error(
        t.location,
        `missing ';' after '${printable(last.text)}' (statement '${printable(keyword.text)}' at line ${keyword.location.line})`,
        "';'",
      );
      return { keyword, args, body: null, end: t.location };
    }
  }

  /** Skips a `{ ... }` whose opener is already consumed, tolerating nested braces, without recursion. */
  private skipBlock(_depth: number): void {
    let open = 1;
    while (open > 0) {
      const t = this.next();
      if (t.kind === 'eof') return;
      if (t.kind === '{') open++;
      if (t.kind === '}') open--;
    }
  }
}
