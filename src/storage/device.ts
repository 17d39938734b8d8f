// Opens a resource's backing devices: the data disk and, for external metadata, the meta disk.
// Internal metadata lives at the end of the data disk, so the data region is a slice before it.
import { InvalidRequestError } from '../util/errors.js';
import { openFileStore, type FileStore, type FileStoreOptions } from './file.js';
import type { MetaPlacement } from './metadata/store.js';

export type MetaDiskSpec =
  | { readonly kind: 'internal' }
  | { readonly kind: 'external'; readonly path: string; readonly index: number }
  | { readonly kind: 'flex-external'; readonly path: string };

/**
 * Parses a meta-disk value: `internal`, `PATH` (flex-external), `PATH[N]`, `PATH:N` or
 * `PATH N` (indexed external, as drbd.conf writes `meta-disk PATH [N]`).
 */
export function parseMetaDisk(text: string): MetaDiskSpec {
  const s = text.trim();
  if (s === 'internal') return { kind: 'internal' };
  const m = /^(.+?)(?:\s*\[\s*(\d+)\s*\]|:(\d+)|\s+(\d+))$/.exec(s);
  const path = m ? (m[1] ?? '') : s;
  const indexText = m ? (m[2] ?? m[3] ?? m[4]) : undefined;
  if (!path.startsWith('/')) {
    throw new InvalidRequestError(
      `meta-disk "${text}": expected "internal" or an absolute path with an optional [INDEX]`,
    );
  }
  if (indexText === undefined) return { kind: 'flex-external', path };
  const index = Number(indexText);
  if (!Number.isSafeInteger(index)) throw new InvalidRequestError(`meta-disk "${text}": bad index`);
  return { kind: 'external', path, index };
}

export function formatMetaDisk(spec: MetaDiskSpec): string {
  switch (spec.kind) {
    case 'internal':
      return 'internal';
    case 'external':
      return `${spec.path} [${spec.index}]`;
    case 'flex-external':
      return spec.path;
  }
}

export interface BackingDevices {
  /** The whole data disk (internal metadata included at its end). */
  readonly disk: FileStore;
  /** The store holding the metadata: the disk itself when internal. */
  readonly meta: FileStore;
  readonly placement: MetaPlacement;
  close(): Promise<void>;
}

export async function openBackingDevices(
  diskPath: string,
  metaDisk: MetaDiskSpec,
  opts: Pick<
    FileStoreOptions,
    'readOnly' | 'inlineWriteMaxBytes' | 'inlineReadMaxBytes' | 'clock'
  > = {},
): Promise<BackingDevices> {
  const disk = await openFileStore(diskPath, opts);
  if (metaDisk.kind === 'internal') {
    return { disk, meta: disk, placement: { kind: 'internal' }, close: () => disk.close() };
  }
  let meta: FileStore;
  try {
    meta = await openFileStore(metaDisk.path, opts);
  } catch (e) {
    await disk.close();
    throw e;
  }
  const placement: MetaPlacement =
    metaDisk.kind === 'external'
      ? { kind: 'external', index: metaDisk.index, dataDeviceBytes: disk.sizeBytes }
      : { kind: 'flex-external', dataDeviceBytes: disk.sizeBytes };
  return {
    disk,
    meta,
    placement,
    close: async () => {
      await meta.close();
      await disk.close();
    },
  };
}
