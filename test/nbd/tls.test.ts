// NBD over TLS (NBD_OPT_STARTTLS, x509 with the client's certificate checked). At the protocol
// level with Node's TLS client: before STARTTLS only STARTTLS/ABORT are served
// (NBD_REP_ERR_TLS_REQD, EXPORT_NAME closes), STARTTLS twice is NBD_REP_ERR_INVALID, plaintext
// state and plaintext bytes behind STARTTLS do not survive it, bad client certificates end the
// session. Then real clients: nbdinfo and nbdcopy with nbds:// URIs and qemu-io with tls-creds
// write and read back a pattern; plaintext, foreign-CA and certificate-less clients are refused.
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import * as P from '../../src/nbd/protocol.js';
import { NbdServer, type NbdListener, type NbdTlsCredentials } from '../../src/nbd/server.js';
import { storeBackend } from '../../src/nbd/store-backend.js';
import type { NbdServerEvent } from '../../src/nbd/types.js';
import { ConfigError } from '../../src/util/errors.js';
import { makeTestPki, type TestPki } from '../support/openssl-pki.js';
import { havePeer, requirePeers } from '../support/peers.js';
import { BufferStore } from './support/buffer-store.js';
import { run, runOk } from './support/exec.js';
import { rawSocket } from './support/raw.js';

const MIB = 1024 * 1024;

let root: string;
let pki: TestPki | undefined;
let creds: NbdTlsCredentials;
/** Every export needs TLS: FORCEDTLS. */
let forced: NbdServer;
let forcedTcp: NbdListener;
/** "secure" needs TLS, "plain" does not: SELECTIVETLS. */
let selective: NbdServer;
let selectiveTcp: NbdListener;
const events: NbdServerEvent[] = [];

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'tandem-nbd-tls-'));
  if (!havePeer('openssl')) return;
  pki = await makeTestPki(root);
  creds = await pki.serverCredentials();
  forced = new NbdServer({ tls: creds, onEvent: (e) => events.push(e) });
  forced.addExport('secure', storeBackend(new BufferStore(64 * MIB)), { tlsRequired: true });
  forced.addExport('other', storeBackend(new BufferStore(1 * MIB)), { tlsRequired: true });
  forcedTcp = await forced.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 });
  selective = new NbdServer({ tls: creds, onEvent: (e) => events.push(e) });
  selective.addExport('secure', storeBackend(new BufferStore(1 * MIB)), { tlsRequired: true });
  selective.addExport('plain', storeBackend(new BufferStore(1 * MIB)));
  selectiveTcp = await selective.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 });
});

after(async () => {
  await forced?.close();
  await selective?.close();
  await rm(root, { recursive: true, force: true });
});

function havePki(t: TestContext): TestPki | undefined {
  if (!requirePeers(t, 'openssl', 'openssl')) return undefined;
  assert.ok(pki !== undefined);
  return pki;
}

// --- a minimal client over a raw socket, then over TLS ------------------------------------

/** Buffers everything a socket delivers so replies can be read piece by piece. */
class Incoming<S extends Socket = Socket> {
  private buf = Buffer.alloc(0);
  private closed = false;
  private wake: (() => void) | undefined;

  constructor(readonly s: S) {
    s.on('data', (b: Buffer) => {
      this.buf = Buffer.concat([this.buf, b]);
      this.wake?.();
    });
    s.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
  }

  async read(n: number): Promise<Buffer> {
    const deadline = Date.now() + 10_000;
    while (this.buf.length < n) {
      if (this.closed) throw new Error(`closed after ${this.buf.length} of ${n} bytes`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${n} bytes`);
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 100);
      });
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Everything until the peer closes. */
  async rest(): Promise<Buffer> {
    const deadline = Date.now() + 10_000;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('the server did not close');
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 100);
      });
    }
    return this.buf;
  }
}

/** Connects, reads the greeting and sends fixed-newstyle client flags. */
async function greeted(l: NbdListener): Promise<Incoming> {
  const s = await rawSocket({ kind: 'tcp', host: '127.0.0.1', port: l.port });
  s.on('error', () => undefined);
  const c = new Incoming(s);
  const g = await c.read(18);
  assert.equal(g.readBigUInt64BE(8), P.NBD_MAGIC_OPTS);
  const f = Buffer.alloc(4);
  f.writeUInt32BE(P.NBD_FLAG_C_FIXED_NEWSTYLE | P.NBD_FLAG_C_NO_ZEROES, 0);
  s.write(f);
  return c;
}

interface Reply {
  option: number;
  type: number;
  data: Buffer;
}

async function reply(c: Incoming): Promise<Reply> {
  const h = await c.read(20);
  assert.equal(h.readBigUInt64BE(0), P.NBD_MAGIC_OPTION_REPLY);
  const len = h.readUInt32BE(16);
  const data = len > 0 ? await c.read(len) : Buffer.alloc(0);
  return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data };
}

/** Sends an option and collects its replies up to the final one (ACK or an error). */
async function option(c: Incoming, opt: number, data?: Buffer): Promise<Reply[]> {
  c.s.write(P.encodeOption(opt, data));
  const out: Reply[] = [];
  for (;;) {
    const r = await reply(c);
    assert.equal(r.option, opt);
    out.push(r);
    if (r.type === P.NBD_REP_ACK || r.type >= 0x80000000) return out;
  }
}

const last = (rs: Reply[]): number => rs[rs.length - 1]?.type ?? -1;

function goData(name: string): Buffer {
  return Buffer.concat([P.encodeString32(name), Buffer.alloc(2)]);
}

function metaData(name: string): Buffer {
  const one = Buffer.alloc(4);
  one.writeUInt32BE(1, 0);
  return Buffer.concat([P.encodeString32(name), one, P.encodeString32('base:allocation')]);
}

/** STARTTLS acknowledged, then the TLS handshake as a client with the files in `dir`. */
async function startTls(c: Incoming, dir: string): Promise<Incoming<TLSSocket>> {
  assert.equal(last(await option(c, P.NBD_OPT_STARTTLS)), P.NBD_REP_ACK);
  c.s.removeAllListeners('data');
  const file = async (f: string): Promise<Buffer | undefined> =>
    readFile(join(dir, f)).catch(() => undefined);
  const cert = await file('client-cert.pem');
  const key = await file('client-key.pem');
  const t = tlsConnect({
    socket: c.s,
    host: '127.0.0.1',
    ca: await readFile(join(dir, 'ca-cert.pem')),
    ...(cert !== undefined && key !== undefined ? { cert, key } : {}),
  });
  t.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    t.once('secureConnect', resolve);
    t.once('error', reject);
    t.once('close', () => reject(new Error('closed during the TLS handshake')));
  });
  return new Incoming(t);
}

/** Waits for a server event matching `pred` (events arrive asynchronously). */
async function eventMatching(pred: (e: NbdServerEvent) => boolean): Promise<NbdServerEvent> {
  for (let i = 0; i < 200; i++) {
    const e = events.find(pred);
    if (e !== undefined) return e;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('no such server event');
}

describe('TLS required on every export (FORCEDTLS)', () => {
  test('before STARTTLS: GO, INFO, LIST, STRUCTURED_REPLY, META get NBD_REP_ERR_TLS_REQD', async (t) => {
    if (havePki(t) === undefined) return;
    const s = await greeted(forcedTcp);
    assert.equal(last(await option(s, P.NBD_OPT_GO, goData('secure'))), P.NBD_REP_ERR_TLS_REQD);
    assert.equal(last(await option(s, P.NBD_OPT_INFO, goData('secure'))), P.NBD_REP_ERR_TLS_REQD);
    // LIST answers with the error alone: no NBD_REP_SERVER names an export in plaintext.
    const list = await option(s, P.NBD_OPT_LIST);
    assert.deepEqual(
      list.map((r) => r.type),
      [P.NBD_REP_ERR_TLS_REQD],
    );
    assert.equal(last(await option(s, P.NBD_OPT_STRUCTURED_REPLY)), P.NBD_REP_ERR_TLS_REQD);
    assert.equal(
      last(await option(s, P.NBD_OPT_SET_META_CONTEXT, metaData('secure'))),
      P.NBD_REP_ERR_TLS_REQD,
    );
    assert.equal(last(await option(s, 4242)), P.NBD_REP_ERR_TLS_REQD);
    assert.equal(last(await option(s, P.NBD_OPT_ABORT)), P.NBD_REP_ACK);
    s.s.destroy();
  });

  test('EXPORT_NAME before STARTTLS closes the connection without entering', async (t) => {
    if (havePki(t) === undefined) return;
    const s = await greeted(forcedTcp);
    s.s.write(P.encodeOption(P.NBD_OPT_EXPORT_NAME, Buffer.from('secure')));
    const rest = await s.rest();
    assert.equal(rest.length, 0, 'no export size and flags were sent');
    await eventMatching(
      (e) => e.type === 'protocol-error' && e.message.includes('EXPORT_NAME before STARTTLS'),
    );
  });

  test('STARTTLS, a client certificate, then GO, write and read; STARTTLS again is INVALID', async (t) => {
    const p = havePki(t);
    if (p === undefined) return;
    const raw = await greeted(forcedTcp);
    const s = await startTls(raw, p.dir);
    assert.equal(s.s.getProtocol()?.startsWith('TLSv1.'), true);
    await eventMatching((e) => e.type === 'tls' && e.client === 'tandem-client');
    assert.equal(last(await option(s, P.NBD_OPT_STARTTLS)), P.NBD_REP_ERR_INVALID);
    const names = (await option(s, P.NBD_OPT_LIST))
      .filter((r) => r.type === P.NBD_REP_SERVER)
      .map((r) => r.data.subarray(4, 4 + r.data.readUInt32BE(0)).toString());
    assert.deepEqual(names.sort(), ['other', 'secure']);
    assert.equal(last(await option(s, P.NBD_OPT_GO, goData('secure'))), P.NBD_REP_ACK);
    // Transmission with simple replies: write 64 KiB at 1 MiB, read it back.
    const data = randomBytes(64 * 1024);
    const req = (type: number, handle: number, len: number): Buffer =>
      P.encodeRequest({
        flags: 0,
        type,
        handleHi: 0,
        handleLo: handle,
        offsetBytes: MIB,
        lengthBytes: len,
      });
    s.s.write(Buffer.concat([req(P.NBD_CMD_WRITE, 1, data.length), data]));
    const w = await s.read(16);
    assert.equal(w.readUInt32BE(0), P.NBD_MAGIC_SIMPLE_REPLY);
    assert.equal(w.readUInt32BE(4), 0, 'write succeeded');
    s.s.write(req(P.NBD_CMD_READ, 2, data.length));
    const r = await s.read(16 + data.length);
    assert.equal(r.readUInt32BE(4), 0, 'read succeeded');
    assert.equal(r.readUInt32BE(12), 2);
    assert.ok(r.subarray(16).equals(data), 'read back what was written, through TLS');
    s.s.write(req(P.NBD_CMD_DISC, 3, 0));
    await s.rest();
  });

  test('plaintext pipelined behind STARTTLS is refused, never read as options', async (t) => {
    if (havePki(t) === undefined) return;
    const s = await greeted(forcedTcp);
    // A man in the middle appends a plaintext GO to the client's STARTTLS.
    s.s.write(
      Buffer.concat([
        P.encodeOption(P.NBD_OPT_STARTTLS),
        P.encodeOption(P.NBD_OPT_GO, goData('secure')),
      ]),
    );
    const rest = await s.rest();
    assert.equal(rest.length, 20, 'only the STARTTLS reply, then the close');
    assert.equal(rest.readUInt32BE(12), P.NBD_REP_ACK);
    await eventMatching(
      (e) => e.type === 'protocol-error' && e.message.includes('after NBD_OPT_STARTTLS'),
    );
  });

  test('a client certificate from another CA is refused', async (t) => {
    const p = havePki(t);
    if (p === undefined) return;
    const raw = await greeted(forcedTcp);
    // TLS 1.3 lets the client finish before the server has judged its certificate: the
    // refusal shows as the session ending instead of an answer.
    const s = await startTls(raw, p.rogueDir).catch(() => undefined);
    if (s !== undefined) {
      s.s.write(P.encodeOption(P.NBD_OPT_GO, goData('secure')));
      assert.equal((await s.rest()).length, 0, 'no reply over a refused session');
    }
    await eventMatching(
      (e) => e.type === 'protocol-error' && e.message.includes('client certificate refused'),
    );
  });

  test('a client without a certificate is refused', async (t) => {
    const p = havePki(t);
    if (p === undefined) return;
    const raw = await greeted(forcedTcp);
    const s = await startTls(raw, p.noCertDir).catch((e: Error) => e);
    if (!(s instanceof Error)) {
      s.s.write(P.encodeOption(P.NBD_OPT_GO, goData('secure')));
      assert.equal((await s.rest()).length, 0, 'no reply over a refused session');
    }
    await eventMatching(
      (e) => e.type === 'protocol-error' && /did not return a certificate/.test(e.message),
    );
  });
});

describe('TLS required on some exports (SELECTIVETLS)', () => {
  test('plaintext serves "plain"; "secure" is unlisted and TLS_REQD until STARTTLS', async (t) => {
    const p = havePki(t);
    if (p === undefined) return;
    const s = await greeted(selectiveTcp);
    const names = (await option(s, P.NBD_OPT_LIST))
      .filter((r) => r.type === P.NBD_REP_SERVER)
      .map((r) => r.data.subarray(4, 4 + r.data.readUInt32BE(0)).toString());
    assert.deepEqual(names, ['plain']);
    assert.equal(last(await option(s, P.NBD_OPT_INFO, goData('secure'))), P.NBD_REP_ERR_TLS_REQD);
    assert.equal(last(await option(s, P.NBD_OPT_INFO, goData('plain'))), P.NBD_REP_ACK);
    assert.equal(last(await option(s, P.NBD_OPT_ABORT)), P.NBD_REP_ACK);
    s.s.destroy();
  });

  test('state negotiated before STARTTLS does not survive it', async (t) => {
    const p = havePki(t);
    if (p === undefined) return;
    const raw = await greeted(selectiveTcp);
    assert.equal(last(await option(raw, P.NBD_OPT_STRUCTURED_REPLY)), P.NBD_REP_ACK);
    const s = await startTls(raw, p.dir);
    assert.equal(last(await option(s, P.NBD_OPT_GO, goData('secure'))), P.NBD_REP_ACK);
    // Structured replies were asked for in plaintext only: a READ gets a simple reply.
    s.s.write(
      P.encodeRequest({
        flags: 0,
        type: P.NBD_CMD_READ,
        handleHi: 0,
        handleLo: 7,
        offsetBytes: 0,
        lengthBytes: 512,
      }),
    );
    const r = await s.read(16 + 512);
    assert.equal(r.readUInt32BE(0), P.NBD_MAGIC_SIMPLE_REPLY);
    s.s.destroy();
  });
});

describe('lifecycle', () => {
  test('a client that never starts its TLS handshake is dropped at the handshake timeout', async (t) => {
    if (havePki(t) === undefined) return;
    const seen: NbdServerEvent[] = [];
    const server = new NbdServer({
      tls: creds,
      handshakeTimeoutMs: 300,
      onEvent: (e) => seen.push(e),
    });
    server.addExport('s', storeBackend(new BufferStore(MIB)), { tlsRequired: true });
    const l = await server.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 });
    try {
      const s = await greeted(l);
      assert.equal(last(await option(s, P.NBD_OPT_STARTTLS)), P.NBD_REP_ACK);
      assert.equal((await s.rest()).length, 0, 'closed with nothing more said');
      assert.ok(
        seen.some((e) => e.type === 'protocol-error' && /handshake not done/.test(e.message)),
      );
    } finally {
      await server.close();
    }
  });

  test('close() does not wait for a TLS handshake in progress', async (t) => {
    if (havePki(t) === undefined) return;
    const server = new NbdServer({ tls: creds, closeTimeoutMs: 10_000 });
    server.addExport('s', storeBackend(new BufferStore(MIB)), { tlsRequired: true });
    const l = await server.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 });
    const s = await greeted(l);
    assert.equal(last(await option(s, P.NBD_OPT_STARTTLS)), P.NBD_REP_ACK);
    const t0 = performance.now();
    await server.close();
    assert.ok(performance.now() - t0 < 2_000, 'closed without waiting out closeTimeoutMs');
    await s.rest();
  });
});

describe('credentials', () => {
  test('without credentials STARTTLS is NBD_REP_ERR_POLICY and TLS exports are refused', async () => {
    const server = new NbdServer();
    server.addExport('x', storeBackend(new BufferStore(MIB)));
    assert.throws(
      () => server.addExport('y', storeBackend(new BufferStore(MIB)), { tlsRequired: true }),
      (e: unknown) => e instanceof ConfigError && /requires TLS/.test(e.message),
    );
    const l = await server.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 });
    const s = await greeted(l);
    assert.equal(last(await option(s, P.NBD_OPT_STARTTLS)), P.NBD_REP_ERR_POLICY);
    s.s.destroy();
    await server.close();
  });

  test('a key that does not belong to the certificate is a ConfigError', async (t) => {
    const p = havePki(t);
    if (p === undefined) return;
    const privateKey = await readFile(join(p.dir, 'client-key.pem'), 'utf8');
    assert.throws(
      () => new NbdServer({ tls: { ...creds, privateKey } }),
      (e: unknown) => e instanceof ConfigError && /NBD TLS credentials/.test(e.message),
    );
    assert.throws(
      () => new NbdServer({ tls: { ...creds, ca: 'not a certificate' } }),
      (e: unknown) => e instanceof ConfigError,
    );
  });
});

// --- real clients -----------------------------------------------------------------------

function nbds(l: NbdListener, name: string, dir: string): string {
  return `nbds://127.0.0.1:${l.port}/${name}?tls-certificates=${dir}`;
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

describe('real clients', () => {
  test('nbdinfo and nbdcopy over nbds:// write a pattern and read it back', async (t) => {
    const p = havePki(t);
    if (p === undefined || !requirePeers(t, 'libnbd-bin', 'nbdinfo', 'nbdcopy')) return;
    const uri = nbds(forcedTcp, 'secure', p.dir);
    const info = JSON.parse(await runOk('nbdinfo', ['--json', uri])) as {
      exports: { 'export-size': number }[];
    };
    assert.equal(info.exports[0]?.['export-size'], 64 * MIB);
    const pattern = randomBytes(8 * MIB);
    const inFile = join(root, 'pattern.bin');
    const outFile = join(root, 'readback.bin');
    await writeFile(inFile, pattern);
    await runOk('nbdcopy', [inFile, uri]);
    await runOk('nbdcopy', [uri, outFile]);
    const back = await readFile(outFile);
    assert.equal(back.length, 64 * MIB);
    assert.equal(sha(back.subarray(0, pattern.length)), sha(pattern), 'read back as written');
  });

  test('qemu-io with tls-creds-x509 writes and reads back a pattern', async (t) => {
    const p = havePki(t);
    if (p === undefined || !requirePeers(t, 'qemu-utils', 'qemu-io')) return;
    const out = await runOk('qemu-io', [
      '--object',
      `tls-creds-x509,id=tls0,dir=${p.dir},endpoint=client`,
      '--image-opts',
      `driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=${forcedTcp.port},export=secure,tls-creds=tls0`,
      '-c',
      'write -P 0x5a 32M 1M',
      '-c',
      'read -P 0x5a 32M 1M',
      '-c',
      'read -P 0 33M 64k',
    ]);
    assert.doesNotMatch(out, /fail|error/i, out);
    assert.equal(out.match(/^read 1048576\/1048576 bytes/gm)?.length, 1, out);
  });

  test('plaintext clients (nbd://) are refused, and told TLS is required', async (t) => {
    if (havePki(t) === undefined) return;
    if (!requirePeers(t, 'libnbd-bin', 'nbdinfo') || !requirePeers(t, 'qemu-utils', 'qemu-img'))
      return;
    const plain = `nbd://127.0.0.1:${forcedTcp.port}/secure`;
    // libnbd 1.14 reports NBD_REP_ERR_TLS_REQD as ENOTSUP; the server's text is in its debug.
    const r = await run('env', ['LIBNBD_DEBUG=1', 'nbdinfo', '--size', plain]);
    assert.notEqual(r.code, 0);
    assert.doesNotMatch(r.stdout, /^\d+$/m, 'no size was learnt');
    assert.match(r.stderr, /server error message: TLS is required/, r.stderr);
    const q = await run('qemu-img', ['info', plain]);
    assert.notEqual(q.code, 0);
    assert.match(q.stderr, /TLS negotiation required/, q.stderr);
  });

  test('nbdinfo with a certificate from another CA, or none, is refused', async (t) => {
    const p = havePki(t);
    if (p === undefined || !requirePeers(t, 'libnbd-bin', 'nbdinfo')) return;
    for (const dir of [p.rogueDir, p.noCertDir]) {
      const r = await run('nbdinfo', ['--size', nbds(forcedTcp, 'secure', dir)]);
      assert.notEqual(r.code, 0, `${dir}: ${r.stdout}`);
      assert.doesNotMatch(r.stdout, /^\d+$/m, 'no size was learnt');
    }
  });
});
