// Test-only disk faults for a real daemon. The end-to-end tests need a backing file whose writes
// to one range fail (on-io-error pass_on) on a machine without device-mapper; the simulator and
// the scenario harness have their own crash-prone disks. A daemon wraps its data region in
// `faultyStore` only when *both* NODE_ENV=test and TANDEM_TEST_DISK_FAULTS are set
// (`testDiskFaults`), and then says so at error level; either one alone does nothing, so no
// production environment turns it on by accident.
import type { BlockStore, WriteOptions, ZeroOptions } from './types.js';
import { ConfigError, DiskIoError } from '../util/errors.js';

/** The environment variable naming the faults (a JSON array of DiskFaultRule). */
export const TEST_DISK_FAULTS_ENV = 'TANDEM_TEST_DISK_FAULTS';

export type FaultOp = 'read' | 'write' | 'flush';

/**
 * The next `count` operations `op` of `resource`'s data region that touch
 * [offsetBytes, offsetBytes + lengthBytes) fail with EIO without reaching the disk (a flush
 * touches every range). Writes, write-zeroes and trims are all `write`.
 */
export interface DiskFaultRule {
  readonly resource: string;
  readonly op: FaultOp;
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  /** Failures left; counts down. */
  count: number;
}

const OPS: readonly FaultOp[] = ['read', 'write', 'flush'];

function field(o: Record<string, unknown>, i: number, key: string): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
    throw new ConfigError(
      `${TEST_DISK_FAULTS_ENV}[${i}].${key}: a non-negative integer, got ${JSON.stringify(v)}`,
    );
  return v;
}

/** Parses and checks the variable's value; every problem is named. */
export function parseDiskFaults(text: string): DiskFaultRule[] {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${TEST_DISK_FAULTS_ENV}: not JSON (${(e as Error).message})`);
  }
  if (!Array.isArray(v)) throw new ConfigError(`${TEST_DISK_FAULTS_ENV}: a JSON array of rules`);
  return v.map((r: unknown, i): DiskFaultRule => {
    if (typeof r !== 'object' || r === null || Array.isArray(r))
      throw new ConfigError(`${TEST_DISK_FAULTS_ENV}[${i}]: an object`);
    const o = r as Record<string, unknown>;
    const resource = o['resource'];
    if (typeof resource !== 'string' || resource === '')
      throw new ConfigError(`${TEST_DISK_FAULTS_ENV}[${i}].resource: a resource name`);
    const op = o['op'];
    if (typeof op !== 'string' || !(OPS as readonly string[]).includes(op))
      throw new ConfigError(`${TEST_DISK_FAULTS_ENV}[${i}].op: one of ${OPS.join(', ')}`);
    const lengthBytes = op === 'flush' ? 0 : field(o, i, 'lengthBytes');
    if (op !== 'flush' && lengthBytes === 0)
      throw new ConfigError(`${TEST_DISK_FAULTS_ENV}[${i}].lengthBytes: at least 1`);
    return {
      resource,
      op: op as FaultOp,
      offsetBytes: op === 'flush' ? 0 : field(o, i, 'offsetBytes'),
      lengthBytes,
      count: field(o, i, 'count'),
    };
  });
}

/**
 * The faults this process runs with: null unless NODE_ENV is `test` and the variable is set
 * (`ignored` when only the variable is: the daemon warns that it did nothing).
 */
export function testDiskFaults(
  env: Readonly<Record<string, string | undefined>>,
): DiskFaultRule[] | 'ignored' | null {
  const text = env[TEST_DISK_FAULTS_ENV];
  if (text === undefined || text === '') return null;
  if (env['NODE_ENV'] !== 'test') return 'ignored';
  return parseDiskFaults(text);
}

/** `inner` with the rules of `resource` applied (the same store when none is for it). */
export function faultyStore(
  inner: BlockStore,
  rules: readonly DiskFaultRule[],
  resource: string,
): BlockStore {
  const mine = rules.filter((r) => r.resource === resource);
  if (mine.length === 0) return inner;
  const fails = (op: FaultOp, offsetBytes: number, lengthBytes: number): DiskIoError | null => {
    for (const r of mine) {
      if (r.op !== op || r.count <= 0) continue;
      if (
        op !== 'flush' &&
        (offsetBytes >= r.offsetBytes + r.lengthBytes || r.offsetBytes >= offsetBytes + lengthBytes)
      )
        continue;
      r.count--;
      return new DiskIoError(`${inner.name}: injected test fault (${op})`, offsetBytes, 'EIO');
    }
    return null;
  };
  const length = (data: Uint8Array | readonly Uint8Array[]): number =>
    data instanceof Uint8Array ? data.length : data.reduce((n, d) => n + d.length, 0);
  return {
    get sizeBytes() {
      return inner.sizeBytes;
    },
    name: inner.name,
    read(offsetBytes: number, lengthBytes: number) {
      const e = fails('read', offsetBytes, lengthBytes);
      return e === null ? inner.read(offsetBytes, lengthBytes) : Promise.reject(e);
    },
    write(offsetBytes: number, data: Uint8Array | readonly Uint8Array[], opts?: WriteOptions) {
      const e = fails('write', offsetBytes, length(data));
      return e === null ? inner.write(offsetBytes, data, opts) : Promise.reject(e);
    },
    flush() {
      const e = fails('flush', 0, 0);
      return e === null ? inner.flush() : Promise.reject(e);
    },
    discard(offsetBytes: number, lengthBytes: number) {
      const e = fails('write', offsetBytes, lengthBytes);
      return e === null ? inner.discard(offsetBytes, lengthBytes) : Promise.reject(e);
    },
    writeZeroes(offsetBytes: number, lengthBytes: number, opts?: ZeroOptions) {
      const e = fails('write', offsetBytes, lengthBytes);
      return e === null ? inner.writeZeroes(offsetBytes, lengthBytes, opts) : Promise.reject(e);
    },
    extents: (offsetBytes: number, lengthBytes: number) => inner.extents(offsetBytes, lengthBytes),
    close: () => inner.close(),
  };
}

/** The wrapper LocalDisk.open takes, or undefined without rules (the store is untouched). */
export function faultsFor(
  rules: readonly DiskFaultRule[] | undefined,
  resource: string,
): ((s: BlockStore) => BlockStore) | undefined {
  if (rules === undefined || !rules.some((r) => r.resource === resource)) return undefined;
  return (s) => faultyStore(s, rules, resource);
}
