// FileStore specifics: size from the file (trailing partial sector ignored), errors for what
// cannot be opened, and a short read (file shrank under us) as a DiskIoError with the offset.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, truncate, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openFileStore } from '../../src/storage/file.js';
import { DiskIoError, InvalidRequestError } from '../../src/util/errors.js';

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'tandem-fs-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('size comes from the file, rounded down to whole sectors', () =>
  withDir(async (dir) => {
    const p = join(dir, 'odd.img');
    await writeFile(p, Buffer.alloc(10 * 512 + 100, 1));
    const s = await openFileStore(p);
    assert.equal(s.sizeBytes, 5120);
    await s.close();
  }));

test('a missing path and a directory are refused with clear errors', () =>
  withDir(async (dir) => {
    await assert.rejects(openFileStore(join(dir, 'nope')), (e: unknown) => {
      assert.ok(e instanceof DiskIoError);
      assert.equal(e.errno, 'ENOENT');
      return true;
    });
    await mkdir(join(dir, 'sub'));
    await assert.rejects(openFileStore(join(dir, 'sub')), InvalidRequestError);
  }));

test('a read past a file that shrank is a DiskIoError at that offset', () =>
  withDir(async (dir) => {
    const p = join(dir, 'shrink.img');
    await writeFile(p, Buffer.alloc(8192));
    const s = await openFileStore(p);
    await truncate(p, 4096);
    await assert.rejects(s.read(4096, 512), (e: unknown) => {
      assert.ok(e instanceof DiskIoError);
      assert.equal(e.offsetBytes, 4096);
      return true;
    });
    await s.close();
  }));

test('a read-only store refuses writes', () =>
  withDir(async (dir) => {
    const p = join(dir, 'ro.img');
    await writeFile(p, Buffer.alloc(4096));
    const s = await openFileStore(p, { readOnly: true });
    await assert.rejects(s.write(0, Buffer.alloc(512)), InvalidRequestError);
    assert.equal((await s.read(0, 512)).byteLength, 512);
    await s.close();
  }));
