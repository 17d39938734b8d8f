// Runs the parser property in a worker thread so the test can terminate it on a hang
// (a synchronous infinite loop cannot be interrupted from the same thread).
import { parentPort, workerData } from 'node:worker_threads';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { ConfigFileError, parseConfigText } from '../../src/config/index.js';
import { dumpConfigText } from '../../src/config/dump.js';

interface Job {
  readonly corpusDir: string;
  readonly runs: number;
  readonly seed: number;
}

const TOKENS = [
  '{',
  '}',
  ';',
  '"',
  '#',
  '\n',
  ' ',
  '[',
  ']',
  ':',
  'resource',
  'on',
  'volume',
  'connection',
  'path',
  'host',
  'net',
  'disk',
  'include',
  'floating',
  'connection-mesh',
  'hosts',
  'device',
  'minor',
  'address',
  'ipv6',
  'sdp',
  'node-id',
  'meta-disk',
  'internal',
  'protocol',
  'C',
  'yes',
  'no',
  '0',
  '-1',
  '99999999999999999999',
  '10M',
  '7G',
  '127.0.0.1:7000',
  '[::1]:7000',
  '300.1.1.1:1',
  '"nbd://h:1/x"',
  '"nbd+unix:///x?socket=/s"',
  '\\',
  '\u0000',
  '\u00e9',
];

type Mutation =
  | { kind: 'delete'; at: number; len: number }
  | { kind: 'insert'; at: number; text: string }
  | { kind: 'duplicate'; at: number; len: number; to: number }
  | { kind: 'truncate'; at: number };

function apply(text: string, m: Mutation): string {
  const at = text.length === 0 ? 0 : m.at % (text.length + 1);
  switch (m.kind) {
    case 'delete':
      return text.slice(0, at) + text.slice(at + m.len);
    case 'insert':
      return text.slice(0, at) + m.text + text.slice(at);
    case 'duplicate': {
      const piece = text.slice(at, at + m.len);
      const to = text.length === 0 ? 0 : m.to % (text.length + 1);
      return text.slice(0, to) + piece + text.slice(to);
    }
    case 'truncate':
      return text.slice(0, at);
  }
}

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({
    kind: fc.constant('delete' as const),
    at: fc.nat(),
    len: fc.integer({ min: 1, max: 24 }),
  }),
  fc.record({
    kind: fc.constant('insert' as const),
    at: fc.nat(),
    text: fc.oneof(
      fc.constantFrom(...TOKENS),
      fc.string({ maxLength: 6 }),
      fc.fullUnicodeString({ maxLength: 3 }),
    ),
  }),
  fc.record({
    kind: fc.constant('duplicate' as const),
    at: fc.nat(),
    len: fc.integer({ min: 1, max: 80 }),
    to: fc.nat(),
  }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
);

function check(text: string): void {
  let loaded;
  try {
    loaded = parseConfigText(text, 'fuzz.res');
  } catch (e) {
    if (!(e instanceof ConfigFileError)) throw new Error(`not a ConfigError: ${String(e)}`);
    const errors = e.diagnostics.filter((d) => d.severity === 'error');
    if (errors.length === 0) throw new Error('ConfigFileError without an error diagnostic');
    for (const d of errors) {
      if (d.location.file !== 'fuzz.res' || !(d.location.line >= 1) || !(d.location.column >= 1)) {
        throw new Error(`unlocated error: ${JSON.stringify(d)}`);
      }
    }
    return;
  }
  // What parses must dump to text that parses again.
  parseConfigText(dumpConfigText(loaded.config), 'fuzz-dump.res');
}

const job = workerData as Job;
const corpus = readdirSync(job.corpusDir)
  .filter((f) => f.endsWith('.res'))
  .sort()
  .map((f) => readFileSync(join(job.corpusDir, f), 'utf8'));

let report: { ok: true; runs: number } | { ok: false; error: string };
try {
  fc.assert(
    fc.property(
      fc.nat({ max: corpus.length - 1 }),
      fc.array(mutation, { minLength: 1, maxLength: 4 }),
      (i, muts) => {
        check(muts.reduce(apply, corpus[i] ?? ''));
      },
    ),
    { numRuns: job.runs, seed: job.seed },
  );
  report = { ok: true, runs: job.runs };
} catch (e) {
  report = { ok: false, error: e instanceof Error ? e.message : String(e) };
}
parentPort?.postMessage(report);
