// Property tests of the handshake and the request decoder, in process: 10,000 generated inputs
// each, cut at random points (the handshake also with TLS required on every export, and on
// some: nothing but STARTTLS/ABORT is served before TLS, no TLS-only export is named, entered
// or described before it, STARTTLS twice is NBD_REP_ERR_INVALID) (requests also against a backend behind an AdmissionGate of one,
// so the connection stops and resumes reading). Properties: nothing throws; output is well-formed; feeding bytes
// split or whole gives the same result; every well-formed request gets exactly one reply with
// an error the spec allows; in-flight work drains to zero (no leak).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ByteQueue } from '../../src/nbd/byte-queue.js';
import { NbdConnection, type NbdWire } from '../../src/nbd/connection.js';
import { Handshake, type ExportDirectory, type TlsMode } from '../../src/nbd/handshake.js';
import * as P from '../../src/nbd/protocol.js';
import { storeBackend } from '../../src/nbd/store-backend.js';
import { AdmissionGate } from '../../src/nbd/admission.js';
import type { NbdExportBackend } from '../../src/nbd/types.js';
import { BufferStore } from './support/buffer-store.js';
import {
  handshakeBytes,
  requestStream,
  split,
  splitPoints,
  tlsHandshakeBytes,
} from './support/gen.js';
import { parseReplies, preface } from './support/replies.js';

const RUNS = 10_000;
const MIB = 1024 * 1024;

/** A backend behind an AdmissionGate of one request: the connection must stop and resume. */
function gated(inner: NbdExportBackend): NbdExportBackend {
  const gate = new AdmissionGate(1, 1024);
  return {
    ...inner,
    admission: gate,
    read: (o, l) => gate.run(() => inner.read(o, l)),
    write: (o, d, f) => gate.run(() => inner.write(o, d, f)),
    flush: () => gate.run(() => inner.flush()),
    trim: (o, l, f) => gate.run(() => inner.trim(o, l, f)),
    writeZeroes: (o, l, z) => gate.run(() => inner.writeZeroes(o, l, z)),
    cache: (o, l) => gate.run(() => inner.cache(o, l)),
    blockStatus: (o, l) => gate.run(() => inner.blockStatus(o, l)),
  };
}

/** r0, ro and gated; `tlsOnly` names the exports that need TLS. */
function directory(tlsOnly: readonly string[] = []): ExportDirectory {
  const m = new Map([
    ['r0', storeBackend(new BufferStore(MIB))],
    ['ro', storeBackend(new BufferStore(MIB), { readOnly: true })],
    ['gated', gated(storeBackend(new BufferStore(MIB)))],
  ]);
  return {
    lookup: (n) => m.get(n),
    names: () => [...m.keys()],
    tlsOnly: (n) => tlsOnly.includes(n),
  };
}

interface HandshakeRun {
  sent: Buffer[];
  outcome: string;
  /** Index in `sent` of the STARTTLS ACK (what follows went inside TLS), or -1. */
  tlsAt: number;
}

/**
 * Feeds the pieces to a Handshake. When STARTTLS is acknowledged the "TLS session" comes up at
 * once and the bytes after it stand for what the client sent inside TLS (the connection, not
 * the handshake, is what refuses plaintext queued behind STARTTLS; see tls.test.ts).
 */
function runHandshake(dir: ExportDirectory, pieces: Buffer[], mode: TlsMode = 'off'): HandshakeRun {
  const q = new ByteQueue();
  const sent: Buffer[] = [];
  let outcome = 'waiting';
  let tlsAt = -1;
  const hs: Handshake = new Handshake(
    q,
    dir,
    {
      send: (b) => {
        assert.equal(outcome, 'waiting', 'nothing is sent after the handshake ended');
        sent.push(Buffer.from(b));
      },
      close: (reason) => {
        assert.equal(outcome, 'waiting');
        outcome = `close:${reason}`;
      },
      transmit: (p) => {
        assert.equal(outcome, 'waiting');
        outcome = `transmit:${p.exportName}:${p.transmissionFlags}:${p.structuredReplies}:${p.baseAllocation}`;
      },
      startTls: () => {
        assert.notEqual(mode, 'off', 'no STARTTLS without TLS');
        assert.equal(tlsAt, -1, 'STARTTLS is acknowledged once');
        tlsAt = sent.length - 1;
        hs.tlsReady();
      },
    },
    mode,
  );
  for (const piece of pieces) {
    q.push(piece);
    hs.pump();
  }
  assert.equal(hs.finished, outcome !== 'waiting');
  return { sent, outcome, tlsAt };
}

/** The option replies in `sent` (the EXPORT_NAME answer has no option-reply header). */
function optionReplies(
  sent: Buffer[],
): { i: number; option: number; type: number; data: Buffer }[] {
  const out = [];
  for (const [i, b] of sent.entries()) {
    if (b.length < 20 || b.readBigUInt64BE(0) !== P.NBD_MAGIC_OPTION_REPLY) continue;
    out.push({ i, option: b.readUInt32BE(8), type: b.readUInt32BE(12), data: b.subarray(20) });
  }
  return out;
}

test(`handshake: ${RUNS} generated inputs, split anywhere, never throw and answer well-formed`, () => {
  const dir = directory();
  fc.assert(
    fc.property(handshakeBytes, splitPoints(), (bytes, cuts) => {
      const whole = runHandshake(dir, [bytes]);
      const pieces = runHandshake(dir, split(bytes, cuts));
      assert.deepEqual(
        Buffer.concat(pieces.sent),
        Buffer.concat(whole.sent),
        'split or whole, same replies',
      );
      assert.equal(pieces.outcome, whole.outcome);
      for (const [i, b] of whole.sent.entries()) {
        const last = i === whole.sent.length - 1;
        if (b.length >= 20 && b.readBigUInt64BE(0) === P.NBD_MAGIC_OPTION_REPLY) {
          assert.equal(b.length, 20 + b.readUInt32BE(16), 'option reply length matches');
          const type = b.readUInt32BE(12);
          assert.ok(type < 5 || (type >= 0x80000001 && type <= 0x80000009), `reply type ${type}`);
        } else {
          // Only the EXPORT_NAME answer has no option-reply header, and it ends the handshake.
          assert.ok(
            last && whole.outcome.startsWith('transmit:'),
            'raw bytes only for EXPORT_NAME',
          );
          assert.ok(b.length === 10 || b.length === 134);
        }
      }
    }),
    { numRuns: RUNS },
  );
});

/** Whole or split, the same replies and outcome; returns the whole run. */
function sameSplitOrWhole(
  dir: ExportDirectory,
  bytes: Buffer,
  cuts: number[],
  mode: TlsMode,
): HandshakeRun {
  const whole = runHandshake(dir, [bytes], mode);
  const pieces = runHandshake(dir, split(bytes, cuts), mode);
  assert.deepEqual(Buffer.concat(pieces.sent), Buffer.concat(whole.sent));
  assert.equal(pieces.outcome, whole.outcome);
  assert.equal(pieces.tlsAt, whole.tlsAt);
  return whole;
}

test(`handshake, TLS required on every export (FORCEDTLS): ${RUNS} generated inputs`, () => {
  const dir = directory(['r0', 'ro', 'gated']);
  let reachedTls = 0;
  fc.assert(
    fc.property(tlsHandshakeBytes, splitPoints(), (bytes, cuts) => {
      const run = sameSplitOrWhole(dir, bytes, cuts, 'forced');
      const tlsAt = run.tlsAt;
      if (tlsAt >= 0) reachedTls++;
      for (const r of optionReplies(run.sent)) {
        const before = tlsAt < 0 || r.i < tlsAt;
        if (r.i === tlsAt) {
          assert.equal(r.option, P.NBD_OPT_STARTTLS);
          assert.equal(r.type, P.NBD_REP_ACK);
        } else if (before && r.option !== P.NBD_OPT_STARTTLS && r.option !== P.NBD_OPT_ABORT) {
          assert.equal(r.type, P.NBD_REP_ERR_TLS_REQD, `option ${r.option} before TLS`);
        } else if (!before) {
          assert.notEqual(r.type, P.NBD_REP_ERR_TLS_REQD, 'never TLS_REQD inside TLS');
          if (r.option === P.NBD_OPT_STARTTLS)
            assert.ok(
              r.type === P.NBD_REP_ERR_INVALID || r.type === P.NBD_REP_ERR_TOO_BIG,
              'STARTTLS inside TLS is invalid',
            );
        }
      }
      if (run.outcome.startsWith('transmit:')) assert.ok(tlsAt >= 0, 'no export before TLS');
    }),
    { numRuns: RUNS },
  );
  assert.ok(reachedTls > RUNS / 10, `TLS came up in ${reachedTls} runs: the generator reaches it`);
});

test(`handshake, TLS required on one export (SELECTIVETLS): ${RUNS} generated inputs`, () => {
  const dir = directory(['r0']);
  // NBD_REP_SERVER and NBD_INFO_NAME are the replies that carry an export's name.
  const namesR0 = (type: number, b: Buffer): boolean =>
    (type === P.NBD_REP_SERVER && b.subarray(4, 4 + b.readUInt32BE(0)).toString() === 'r0') ||
    (type === P.NBD_REP_INFO &&
      b.readUInt16BE(0) === P.NBD_INFO_NAME &&
      b.subarray(2).toString() === 'r0');
  fc.assert(
    fc.property(tlsHandshakeBytes, splitPoints(), (bytes, cuts) => {
      const run = sameSplitOrWhole(dir, bytes, cuts, 'selective');
      const tlsAt = run.tlsAt;
      for (const r of optionReplies(run.sent)) {
        const before = tlsAt < 0 || r.i < tlsAt;
        if (!before && r.i !== tlsAt) {
          assert.notEqual(r.type, P.NBD_REP_ERR_TLS_REQD, 'never TLS_REQD inside TLS');
        }
        if (before) assert.ok(!namesR0(r.type, r.data), 'r0 is not named before TLS');
      }
      if (run.outcome.startsWith('transmit:r0:')) assert.ok(tlsAt >= 0, 'r0 only over TLS');
    }),
    { numRuns: RUNS },
  );
});

class FakeWire implements NbdWire {
  out: Buffer[] = [];
  ended = false;
  writableNeedDrain = false;
  write(b: Buffer): boolean {
    assert.ok(!this.ended, 'no write after end');
    this.out.push(Buffer.from(b));
    return true;
  }
  cork(): void {}
  uncork(): void {}
  pause(): void {}
  resume(): void {}
  end(): void {
    this.ended = true;
  }
  destroy(): void {
    this.ended = true;
  }
}

const ALLOWED_ERRNOS = new Set([
  0,
  P.NBD_EPERM,
  P.NBD_EINVAL,
  P.NBD_ENOSPC,
  P.NBD_EOVERFLOW,
  P.NBD_ENOTSUP,
]);
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

test(`request decoder: ${RUNS} generated request streams, split anywhere`, async () => {
  const dir = directory();
  await fc.assert(
    fc.asyncProperty(
      requestStream(),
      splitPoints(),
      fc.boolean(),
      fc.constantFrom('r0', 'ro', 'gated'),
      async (reqs, cuts, structured, name) => {
        const wire = new FakeWire();
        let closedReason = '';
        const conn = new NbdConnection(wire, dir, {
          closed: (r) => (closedReason = r),
          entered: () => undefined,
          protocolError: () => undefined,
          ending: () => undefined,
          defer: (fn) => setImmediate(fn),
        });
        const allGood = reqs.every((r) => r.wellFormed);
        const disc = P.encodeRequest({
          flags: 0,
          type: P.NBD_CMD_DISC,
          handleHi: 0,
          handleLo: 0,
          offsetBytes: 0,
          lengthBytes: 0,
        });
        const stream = Buffer.concat([
          preface(structured, name),
          ...reqs.map((r) => r.bytes),
          ...(allGood ? [disc] : []),
        ]);
        for (const piece of split(stream, cuts)) conn.onData(piece);
        // Behind the gate, requests go one at a time: let them (bounded, so a stall fails).
        for (let i = 0; i < 4 || (conn.requestsInFlight > 0 && i < 4 * reqs.length + 8); i++)
          await settle();
        assert.equal(conn.requestsInFlight, 0, 'in-flight work drains');
        if (allGood) {
          assert.ok(wire.ended, 'DISC ends the connection once every request is answered');
          const reads = new Map(
            reqs.filter((r) => r.type === P.NBD_CMD_READ).map((r) => [r.handle, r.lengthBytes]),
          );
          const replies = parseReplies(Buffer.concat(wire.out), structured, reads);
          assert.equal(replies.size, reqs.length, 'one reply per request');
          for (const r of reqs) {
            const got = replies.get(r.handle);
            assert.ok(got !== undefined && got.length === 1, `request ${r.handle} answered once`);
            const [errno, data] = got[0] ?? [0, 0];
            assert.ok(ALLOWED_ERRNOS.has(errno), `errno ${errno} allowed`);
            if (r.type === P.NBD_CMD_READ && errno === 0) assert.equal(data, r.lengthBytes);
            if (
              name === 'ro' &&
              (r.type === P.NBD_CMD_WRITE ||
                r.type === P.NBD_CMD_TRIM ||
                r.type === P.NBD_CMD_WRITE_ZEROES)
            ) {
              assert.equal(errno, P.NBD_EPERM, 'writes to a read-only export get EPERM');
            }
            if (r.type > P.NBD_CMD_BLOCK_STATUS)
              assert.equal(errno, P.NBD_EINVAL, 'unknown command: EINVAL');
          }
        }
        conn.onClose();
        assert.notEqual(closedReason, '');
        conn.onData(Buffer.alloc(100)); // data after close is ignored, not a crash
      },
    ),
    { numRuns: RUNS },
  );
});
