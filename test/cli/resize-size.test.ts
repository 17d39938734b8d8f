// `tandem resize --size`: sizes carry a unit (drbdadm's s, K, M, G; powers of 1024); a bare
// number is refused rather than guessed (DRBD reads it as sectors, most people as bytes).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSizeBytes } from '../../src/cli/commands/resize.js';
import { CliError, EXIT } from '../../src/cli/context.js';

test('sizes with units', () => {
  assert.equal(parseSizeBytes('2097152s'), 2097152 * 512);
  assert.equal(parseSizeBytes('64K'), 64 * 1024);
  assert.equal(parseSizeBytes('512M'), 512 * 1024 ** 2);
  assert.equal(parseSizeBytes('10G'), 10 * 1024 ** 3);
  assert.equal(parseSizeBytes(' 2g '), 2 * 1024 ** 3);
  assert.equal(parseSizeBytes('4096G'), 4 * 1024 ** 4);
});

test('a bare number, a bad unit or zero is a usage error', () => {
  for (const bad of [
    '100',
    '10X',
    '0M',
    '',
    'G',
    '-1G',
    '1.5G',
    '2T',
    '1GiB',
    '99999999999999999999G',
  ]) {
    assert.throws(
      () => parseSizeBytes(bad),
      (e: unknown) => e instanceof CliError && e.exitCode === EXIT.usage,
      bad,
    );
  }
});
