// The control socket: request/reply, errors that reach the user, bad lines answered instead of
// crashing, mode 0600, and events streams that `wait-connect` can wait on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ControlServer, type ControlHandler } from '../../src/daemon/control-server.js';
import type { ControlRequest, TandemEvent } from '../../src/daemon/control-protocol.js';
import { StateError } from '../../src/util/errors.js';
import { request } from '../../src/cli/control-client.js';
import { EXIT } from '../../src/cli/context.js';

const run = promisify(execFile);

class FakeDaemon implements ControlHandler {
  readonly listeners = new Set<(e: TandemEvent) => void>();
  readonly seen: ControlRequest[] = [];
  connection = 'Connecting';
  handle(req: ControlRequest): Promise<unknown> {
    this.seen.push(req);
    if (req.op === 'primary' && req.flags?.['force'] !== true) {
      return Promise.reject(
        new StateError(`${req.resource}: cannot become Primary: disk is Inconsistent`),
      );
    }
    return Promise.resolve(req.op === 'status' ? [{ name: 'r0', up: true }] : null);
  }
  snapshot(): TandemEvent[] {
    return [
      {
        kind: 'exists',
        object: 'resource',
        resource: 'r0',
        props: { role: 'Secondary' },
        timeMs: 0,
      },
      {
        kind: 'exists',
        object: 'connection',
        resource: 'r0',
        peer: 'bob',
        props: { connection: this.connection },
        timeMs: 0,
      },
    ];
  }
  subscribe(l: (e: TandemEvent) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
  emit(e: TandemEvent): void {
    for (const l of this.listeners) l(e);
  }
}

async function withServer(fn: (path: string, d: FakeDaemon) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'tandem-ctl-'));
  const path = join(dir, 'n.sock');
  const d = new FakeDaemon();
  const server = await ControlServer.listen(path, d);
  try {
    await fn(path, d);
  } finally {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
}

test('requests get replies; daemon errors reach the caller with their message', async () => {
  await withServer(async (path, d) => {
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.deepEqual(await request(path, 'status'), [{ name: 'r0', up: true }]);
    await assert.rejects(request(path, 'primary', { resource: 'r0' }), /disk is Inconsistent/);
    await request(path, 'primary', { resource: 'r0', flags: { force: true } });
    assert.deepEqual(d.seen.at(-1)?.flags, { force: true });
  });
});

test('a malformed line is answered with an error and the server keeps serving', async () => {
  await withServer(async (path) => {
    const reply = await new Promise<string>((resolve, reject) => {
      const s = connect(path);
      let buf = '';
      s.on('data', (c) => {
        buf += c.toString();
        if (buf.includes('\n')) {
          s.destroy();
          resolve(buf);
        }
      });
      s.on('error', reject);
      s.write('{"id": 1, "op": "format-disk"}\n');
    });
    assert.match(reply, /unknown operation/);
    assert.deepEqual(await request(path, 'status'), [{ name: 'r0', up: true }]);
  });
});

test('tandem wait-connect returns once the events stream says Connected', async () => {
  await withServer(async (path, d) => {
    const waiting = run('node', [
      'dist/src/cli/main.js',
      '--control',
      path,
      'wait-connect',
      'r0',
      '--timeout',
      '20',
    ]);
    // Once the CLI subscribed, the change it waits for is emitted.
    while (d.listeners.size === 0) await new Promise((r) => setImmediate(r));
    d.emit({
      kind: 'change',
      object: 'connection',
      resource: 'r0',
      peer: 'bob',
      props: { connection: 'Connected' },
      timeMs: 1,
    });
    await waiting;
  });
});

test('tandem wait-connect fails for an unknown resource and when the daemon is absent', async () => {
  await withServer(async (path) => {
    await assert.rejects(
      run('node', [
        'dist/src/cli/main.js',
        '--control',
        path,
        'wait-connect',
        'nope',
        '--timeout',
        '5',
      ]),
      /no such resource/,
    );
  });
  await assert.rejects(
    run('node', ['dist/src/cli/main.js', '--control', '/nonexistent/x.sock', 'status']),
    /no tandemd is listening/,
  );
});

test('tandem wait-connect gives up after --timeout and exits (its events stream ends too)', async () => {
  await withServer(async (path) => {
    // The connection stays Connecting: the CLI must time out, not hang on the open stream.
    const err = await run(
      'node',
      ['dist/src/cli/main.js', '--control', path, 'wait-connect', 'r0', '--timeout', '1'],
      { timeout: 20_000 },
    ).then(
      () => assert.fail('wait-connect returned'),
      (e: unknown) => e as { code?: unknown; killed?: boolean; stderr?: string },
    );
    assert.equal(err.killed, false, 'exited by itself');
    assert.equal(err.code, EXIT.timeout);
    assert.match(err.stderr ?? '', /not connected after 1s/);
  });
});
