// The same generated handshakes and request streams as fuzz.test.ts, now over real Unix
// sockets to a running server, written in random pieces (split frames) or many frames per
// write (coalesced). Properties: the server never crashes or hangs (each connection closes
// within a deadline once the client is done), well-formed streams get one reply per request,
// no connection is leaked, and a normal client is served afterwards. Also against a server that
// requires TLS on every export: whatever precedes STARTTLS gets only NBD_REP_ERR_TLS_REQD, and
// what follows its ACK (plaintext garbage to the TLS layer) ends that connection, nothing else.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import fc from 'fast-check';
import { NbdClient } from '../../src/nbd/client.js';
import * as P from '../../src/nbd/protocol.js';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NbdServer, type NbdListener } from '../../src/nbd/server.js';
import { storeBackend } from '../../src/nbd/store-backend.js';
import { makeTestPki, type TestPki } from '../support/openssl-pki.js';
import { havePeer, inCi } from '../support/peers.js';
import { BufferStore } from './support/buffer-store.js';
import { startHarness, type Harness } from './support/harness.js';
import {
  handshakeBytes,
  requestStream,
  split,
  splitPoints,
  tlsHandshakeBytes,
} from './support/gen.js';
import { parseReplies, preface } from './support/replies.js';
import { rawSocket } from './support/raw.js';

/** Inputs per property; each fast-check run sends BATCH of them on parallel connections. */
const INPUTS = Number(process.env['TANDEM_FUZZ_RUNS'] ?? 10_000);
const BATCH = 8;
const RUNS = Math.ceil(INPUTS / BATCH);
const MIB = 1024 * 1024;
let h: Harness;

before(async () => {
  h = await startHarness([
    { name: 'r0', sizeBytes: MIB },
    { name: 'ro', sizeBytes: MIB, opts: { readOnly: true } },
  ]);
});
after(async () => {
  await h.stop();
});

/** Sends the pieces (yielding between them so they leave as separate segments), ends, and
 * resolves with everything the server sent once it closed; rejects if it does not close. */
async function exchange(s: Socket, pieces: Buffer[], yieldEvery: number): Promise<Buffer> {
  const got: Buffer[] = [];
  const closed = new Promise<Buffer>((resolve, reject) => {
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error('server hung: connection not closed within 10 s'));
    }, 10_000);
    s.on('data', (b: Buffer) => got.push(b));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(t);
      resolve(Buffer.concat(got));
    });
  });
  for (const [i, p] of pieces.entries()) {
    if (s.destroyed) break;
    s.write(p);
    if (yieldEvery > 0 && i % yieldEvery === 0) await new Promise((r) => setImmediate(r));
  }
  s.end();
  return closed;
}

const batch = <T>(a: fc.Arbitrary<T>): fc.Arbitrary<T[]> =>
  fc.array(a, { minLength: BATCH, maxLength: BATCH });

test(`handshake over a socket: ${INPUTS} generated inputs, split and coalesced`, async () => {
  const one = fc.tuple(handshakeBytes, splitPoints(), fc.integer({ min: 0, max: 3 }));
  await fc.assert(
    fc.asyncProperty(batch(one), async (inputs) => {
      await Promise.all(
        inputs.map(async ([bytes, cuts, yieldEvery]) => {
          const s = await rawSocket(h.unix.spec);
          const out = await exchange(s, split(bytes, cuts), yieldEvery);
          assert.ok(out.length >= 18, 'greeting sent');
          assert.equal(out.readBigUInt64BE(0), P.NBD_MAGIC_INIT);
        }),
      );
    }),
    { numRuns: RUNS },
  );
  await h.server.whenIdle();
  assert.equal(h.server.connectionCount, 0, 'no connection leaked');
});

test(`requests over a socket: ${INPUTS} generated streams, split and coalesced`, async () => {
  const one = fc.tuple(
    requestStream(),
    splitPoints(),
    fc.integer({ min: 0, max: 3 }),
    fc.boolean(),
    fc.constantFrom('r0', 'ro'),
  );
  await fc.assert(
    fc.asyncProperty(batch(one), async (inputs) => {
      await Promise.all(
        inputs.map(async ([reqs, cuts, yieldEvery, structured, name]) => {
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
          const s = await rawSocket(h.unix.spec);
          const out = await exchange(s, split(stream, cuts), yieldEvery);
          if (allGood) {
            const reads = new Map(
              reqs.filter((r) => r.type === P.NBD_CMD_READ).map((r) => [r.handle, r.lengthBytes]),
            );
            const replies = parseReplies(out.subarray(18), structured, reads);
            assert.equal(replies.size, reqs.length, 'one reply per request');
          }
        }),
      );
    }),
    { numRuns: RUNS },
  );
  await h.server.whenIdle();
  assert.equal(h.server.connectionCount, 0, 'no connection leaked');
  const c = await NbdClient.connect({ listener: h.unix.spec, exportName: 'r0' });
  const d = Buffer.alloc(4096, 7);
  await c.write(0, d);
  assert.deepEqual(await c.read(0, 4096), d);
  await c.disconnect();
});

/** TLS handshakes cost a TLS server and a failed TLS session each: fewer inputs. */
const TLS_INPUTS = Math.ceil(INPUTS / 5);

test(
  `TLS required: ${TLS_INPUTS} generated handshakes over a socket, split and coalesced`,
  { skip: !havePeer('openssl') && !inCi ? 'openssl missing (apt-get install openssl)' : false },
  async () => {
    const root = await mkdtemp(join(tmpdir(), 'tandem-nbd-tls-fuzz-'));
    let server: NbdServer | undefined;
    try {
      const pki: TestPki = await makeTestPki(root);
      server = new NbdServer({ tls: await pki.serverCredentials() });
      server.addExport('r0', storeBackend(new BufferStore(MIB)), { tlsRequired: true });
      server.addExport('ro', storeBackend(new BufferStore(MIB)), { tlsRequired: true });
      const l: NbdListener = await server.listen({ kind: 'unix', path: join(root, 'tls.sock') });
      const one = fc.tuple(tlsHandshakeBytes, splitPoints(), fc.integer({ min: 0, max: 3 }));
      await fc.assert(
        fc.asyncProperty(batch(one), async (inputs) => {
          await Promise.all(
            inputs.map(async ([bytes, cuts, yieldEvery]) => {
              const s = await rawSocket(l.spec);
              const out = await exchange(s, split(bytes, cuts), yieldEvery);
              assert.equal(out.readBigUInt64BE(0), P.NBD_MAGIC_INIT);
              // Option replies in plaintext, up to STARTTLS's ACK (TLS records may follow).
              for (let pos = 18; pos + 20 <= out.length;) {
                assert.equal(out.readBigUInt64BE(pos), P.NBD_MAGIC_OPTION_REPLY);
                const option = out.readUInt32BE(pos + 8);
                const type = out.readUInt32BE(pos + 12);
                pos += 20 + out.readUInt32BE(pos + 16);
                if (option === P.NBD_OPT_STARTTLS && type === P.NBD_REP_ACK) break;
                if (option !== P.NBD_OPT_STARTTLS && option !== P.NBD_OPT_ABORT)
                  assert.equal(type, P.NBD_REP_ERR_TLS_REQD, `option ${option} before TLS`);
              }
            }),
          );
        }),
        { numRuns: Math.ceil(TLS_INPUTS / BATCH) },
      );
      await server.whenIdle();
      assert.equal(server.connectionCount, 0, 'no connection leaked');
      const pem = (f: string): Promise<string> => readFile(join(pki.dir, f), 'utf8');
      const c = await NbdClient.connect({
        listener: l.spec,
        exportName: 'r0',
        tls: {
          ca: await pem('ca-cert.pem'),
          certificate: await pem('client-cert.pem'),
          privateKey: await pem('client-key.pem'),
        },
      });
      const d = Buffer.alloc(4096, 9);
      await c.write(0, d);
      assert.deepEqual(await c.read(0, 4096), d);
      await c.disconnect();
    } finally {
      await server?.close();
      await rm(root, { recursive: true, force: true });
    }
  },
);
