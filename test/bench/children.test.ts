// Children is what makes the harness leave nothing behind: a stopped child takes whatever it
// spawned with it, killAll works synchronously, and failures carry the child's own output.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Children, type ChildHandle } from '../../bench/children.js';

/** Running, and not a zombie waiting for whoever reaps orphans here. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

async function gone(pid: number, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (!alive(pid)) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return !alive(pid);
}

async function startWithGrandchild(
  c: Children,
  ignoreTerm: boolean,
): Promise<{ handle: ChildHandle; grandchild: number }> {
  let onLine: (l: string) => void = () => {};
  const line = new Promise<string>((resolve) => (onLine = resolve));
  const trap = ignoreTerm ? "trap '' TERM; " : '';
  const handle = await c.start('sh', 'sh', ['-c', `${trap}sleep 60 & echo $!; wait`], {
    onStdoutLine: (l) => onLine(l),
  });
  return { handle, grandchild: Number(await line) };
}

test('stopAll() ends each child and everything in its process group', async () => {
  const c = new Children();
  const { handle, grandchild } = await startWithGrandchild(c, false);
  assert.ok(alive(grandchild));
  await c.stopAll();
  assert.ok(await gone(grandchild, 5000), 'grandchild survived');
  assert.notEqual(handle.exitInfo(), null);
  assert.deepEqual(c.pids(), []);
});

test('stop() falls back to SIGKILL when the child ignores SIGTERM', async () => {
  const c = new Children();
  const { handle, grandchild } = await startWithGrandchild(c, true);
  const e = await handle.stop(200);
  assert.equal(e.signal, 'SIGKILL');
  assert.ok(await gone(grandchild, 5000));
});

test('killAll() is synchronous and reaches the whole group', async () => {
  const c = new Children();
  const { handle, grandchild } = await startWithGrandchild(c, true);
  c.killAll();
  assert.equal((await handle.exited).signal, 'SIGKILL');
  assert.ok(await gone(grandchild, 5000));
});

test('run() rejects with the exit code and the output of a failing command', async () => {
  const c = new Children();
  await assert.rejects(
    c.run('failer', 'sh', ['-c', 'echo broken disk >&2; exit 3'], 10_000),
    /code 3: broken disk/,
  );
  await assert.rejects(c.run('sleeper', 'sleep', ['30'], 200), /did not finish within 200 ms/);
  await assert.rejects(
    c.start('nothing', '/nonexistent/tandem-bench-cmd', []),
    /cannot start nothing/,
  );
  const ok = await c.run('echo', 'sh', ['-c', 'echo hello'], 10_000);
  assert.match(ok.output(), /hello/);
});
