// The test-only disk faults of a real daemon (src/storage/faults.ts): on only with both
// NODE_ENV=test and TANDEM_TEST_DISK_FAULTS, every bad rule named, and exactly the operations
// a rule names fail, as many times as it says.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore } from '../../src/storage/index.js';
import {
  TEST_DISK_FAULTS_ENV,
  faultyStore,
  parseDiskFaults,
  testDiskFaults,
} from '../../src/storage/faults.js';
import { DiskIoError } from '../../src/util/errors.js';

const RULE = { resource: 'r0', op: 'write', offsetBytes: 8192, lengthBytes: 4096, count: 2 };

test('faults are on only with NODE_ENV=test and the variable both set', () => {
  const spec = JSON.stringify([RULE]);
  assert.equal(testDiskFaults({}), null);
  assert.equal(testDiskFaults({ NODE_ENV: 'test' }), null);
  assert.equal(testDiskFaults({ [TEST_DISK_FAULTS_ENV]: spec }), 'ignored');
  assert.equal(testDiskFaults({ NODE_ENV: 'production', [TEST_DISK_FAULTS_ENV]: spec }), 'ignored');
  assert.deepEqual(testDiskFaults({ NODE_ENV: 'test', [TEST_DISK_FAULTS_ENV]: spec }), [RULE]);
});

test('a bad rule is refused with what is wrong', () => {
  const bad: [string, RegExp][] = [
    ['{', /not JSON/],
    ['{}', /a JSON array/],
    ['[1]', /\[0\]: an object/],
    [JSON.stringify([{ ...RULE, resource: '' }]), /\[0\]\.resource/],
    [JSON.stringify([{ ...RULE, op: 'erase' }]), /\[0\]\.op: one of read, write, flush/],
    [JSON.stringify([RULE, { ...RULE, offsetBytes: -1 }]), /\[1\]\.offsetBytes: a non-negative/],
    [JSON.stringify([{ ...RULE, lengthBytes: 0 }]), /\[0\]\.lengthBytes: at least 1/],
    [JSON.stringify([{ ...RULE, count: 1.5 }]), /\[0\]\.count/],
  ];
  for (const [text, why] of bad) assert.throws(() => parseDiskFaults(text), why, text);
});

test('only overlapping operations of the named resource fail, count times, and reach no disk', async () => {
  const inner = new MemoryStore(64 * 1024);
  const rules = parseDiskFaults(JSON.stringify([RULE, { resource: 'r0', op: 'flush', count: 1 }]));
  assert.equal(faultyStore(inner, rules, 'r1'), inner, 'another resource is untouched');
  const s = faultyStore(inner, rules, 'r0');
  const ones = Buffer.alloc(4096, 1);
  await s.write(4096, ones); // before the range
  await s.write(12288, ones); // after it
  await assert.rejects(s.write(8192 + 512, [ones.subarray(0, 512)]), (e: unknown) => {
    assert.ok(e instanceof DiskIoError);
    assert.equal(e.errno, 'EIO');
    return true;
  });
  await assert.rejects(s.writeZeroes(0, 16384), DiskIoError);
  await s.write(8192, ones); // the count is spent
  assert.deepEqual(await s.read(8192, 4096), ones);
  await assert.rejects(s.flush(), DiskIoError);
  await s.flush();
  assert.deepEqual(await inner.read(4096, 4096), ones, 'the failed zeroes never ran');
});
