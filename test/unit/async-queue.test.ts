import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AsyncQueue } from '../../src/util/async-queue.js';

test('items pushed before and after a wait arrive in order', async () => {
  const q = new AsyncQueue<number>();
  q.push(1);
  const two = q.next().then(async (a) => [a, await q.next()]);
  q.push(2);
  assert.deepEqual(await two, [1, 2]);
});

test('a failure rejects a pending wait and later ones, after what was queued', async () => {
  const q = new AsyncQueue<string>();
  const pending = q.next();
  q.fail(new Error('first'));
  q.fail(new Error('second'));
  await assert.rejects(pending, /first/);
  q.push('late');
  assert.equal(await q.next(), 'late');
  await assert.rejects(q.next(), /first/);
});
