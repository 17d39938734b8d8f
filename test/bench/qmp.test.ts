// The QMP client against a scripted server on a Unix socket: greeting and capabilities, events
// interleaved with answers, QMP errors surfaced with their text, block jobs validated.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QmpClient, parseBlockJobs } from '../../bench/qmp.js';

test('QMP: handshake, events skipped, errors and returns', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qmp-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const seen: string[] = [];
  const server = createServer((s: Socket) => {
    s.write('{"QMP": {"version": {}, "capabilities": []}}\n');
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const req = JSON.parse(buf.slice(0, nl)) as { execute: string };
        buf = buf.slice(nl + 1);
        seen.push(req.execute);
        if (req.execute === 'qmp_capabilities') s.write('{"return": {}}\n');
        else if (req.execute === 'query-block-jobs')
          s.write(
            '{"event": "JOB_STATUS_CHANGE", "data": {}}\n' +
              '{"return": [{"device": "m0", "status": "ready", "ready": true, "offset": 10, "len": 10, "io-status": "ok"}]}\n',
          );
        else s.write('{"error": {"class": "GenericError", "desc": "no such device"}}\n');
      }
    });
  });
  const path = join(dir, 'qmp.sock');
  await new Promise<void>((r) => server.listen(path, r));
  t.after(() => server.close());
  const c = await QmpClient.open(path, 5000);
  t.after(() => c.close());
  const jobs = parseBlockJobs(await c.execute('query-block-jobs', {}, 5000));
  assert.deepEqual(jobs, [
    { device: 'm0', status: 'ready', ready: true, offset: 10, len: 10, ioStatus: 'ok' },
  ]);
  await assert.rejects(c.execute('blockdev-mirror', {}, 5000), /no such device/);
  assert.deepEqual(seen, ['qmp_capabilities', 'query-block-jobs', 'blockdev-mirror']);
});

test('parseBlockJobs rejects shapes it does not know', () => {
  assert.throws(() => parseBlockJobs({}), /not an array/);
  assert.throws(() => parseBlockJobs([{ device: 'm0' }]), /unexpected job/);
  assert.deepEqual(parseBlockJobs([]), []);
});
