// The CLI frame: every command has help, and failures exit non-zero with one line on stderr.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);
const cli = 'dist/src/cli/main.js';

test('tandem --help lists the commands and the global options', async () => {
  const { stdout } = await run('node', [cli, '--help']);
  assert.match(stdout, /--config/);
  assert.match(stdout, /--node/);
  assert.match(stdout, /demo/);
});

test('an unknown command fails with a non-zero exit code', async () => {
  await assert.rejects(run('node', [cli, 'no-such-command']), (e: { code?: number }) => {
    assert.notEqual(e.code, 0);
    return true;
  });
});
