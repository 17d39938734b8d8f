// The control socket's input, ten thousand times: request lines (random text, random JSON,
// mutated valid requests) and the line splitter under random chunking. Properties: decodeRequest
// never throws and accepts only well-formed requests (integer id, known op, non-empty resource,
// scalar flags); the splitter yields exactly the newline-separated lines however the bytes are
// cut, and a line over the bound (whole or cut) ends the stream: its tail is not a request.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CONTROL_OPS, decodeRequest } from '../../src/daemon/control-protocol.js';
import { LineReader } from '../../src/util/line-reader.js';

const RUNS = 10_000;

const validRequest = fc.record(
  {
    id: fc.nat(),
    op: fc.constantFrom(...CONTROL_OPS),
    resource: fc.string({ minLength: 1, maxLength: 12 }),
    flags: fc.dictionary(
      fc.string({ maxLength: 8 }),
      fc.oneof(fc.boolean(), fc.integer(), fc.string({ maxLength: 8 })),
      { maxKeys: 3 },
    ),
  },
  { requiredKeys: ['id', 'op'] },
);

const line = fc.oneof(
  fc.string({ maxLength: 200 }),
  fc.json({ maxDepth: 3 }),
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify({ id: 1, op: 'status', flags: v })),
  fc
    .tuple(validRequest, fc.array(fc.tuple(fc.nat(), fc.char()), { maxLength: 3 }))
    .map(([r, edits]) => {
      const chars = [...JSON.stringify(r)];
      for (const [pos, c] of edits) chars[pos % chars.length] = c;
      return chars.join('');
    }),
);

test(`control requests: ${RUNS} lines decode to a valid request or an error`, () => {
  fc.assert(
    fc.property(line, (l) => {
      const d = decodeRequest(l);
      if (!d.ok) return assert.ok(d.error.length > 0);
      const r = d.value;
      assert.ok(Number.isSafeInteger(r.id));
      assert.ok((CONTROL_OPS as readonly string[]).includes(r.op));
      if (r.resource !== undefined) assert.ok(r.resource.length > 0);
      for (const v of Object.values(r.flags ?? {}))
        assert.ok(['boolean', 'number', 'string'].includes(typeof v));
    }),
    { numRuns: RUNS },
  );
});

test(`line splitter: ${RUNS} streams cut anywhere give the same lines`, () => {
  const MAX = 64;
  fc.assert(
    fc.property(
      fc.array(fc.string({ maxLength: 90, unit: 'grapheme' }), { maxLength: 8 }),
      fc.array(fc.nat(), { maxLength: 10 }),
      (lines, cuts) => {
        const bytes = Buffer.from(lines.map((l) => `${l.replaceAll('\n', '')}\n`).join(''), 'utf8');
        const got: string[] = [];
        let overflowed = 0;
        const r = new LineReader(
          MAX,
          (l) => got.push(l),
          () => overflowed++,
        );
        const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
        let at = 0;
        for (const p of [...points, bytes.length]) {
          r.push(bytes.subarray(at, p));
          at = p;
        }
        // The expected lines: those before the first one longer than MAX (none after it).
        const want: string[] = [];
        let over = false;
        for (const l of lines.map((x) => x.replaceAll('\n', ''))) {
          if (l.length > MAX) {
            over = true;
            break;
          }
          if (l.length > 0) want.push(l);
        }
        assert.deepEqual(got, want);
        assert.equal(overflowed, over ? 1 : 0);
      },
    ),
    { numRuns: RUNS },
  );
});

// Found by the splitter fuzz above: after an overflow the reader started afresh mid-line, so
// the tail of an over-long line reached the daemon as a request of its own.
test('the tail of an over-long control line is never a request', () => {
  const got: string[] = [];
  const r = new LineReader(
    16,
    (l) => got.push(l),
    () => undefined,
  );
  r.push(Buffer.from('x'.repeat(20)));
  r.push(Buffer.from('{"id":1,"op":"down"}\n'));
  r.push(Buffer.from('{"id":2,"op":"down"}\n'));
  assert.deepEqual(got, []);
});
