// Serves a plain BlockStore as an NBD export (standalone mode: a resource without peers).
// FLUSH covers every connection because all of them share this one store, so the export is
// honestly CAN_MULTI_CONN. FAST_ZERO is honoured when zeroing may punch a hole (cheap in every
// store); with NO_HOLE it would mean writing zeroes, so that combination fails with ENOTSUP.
import { NBD_PAYLOAD_BYTES_MAX, SECTOR_BYTES } from '../limits.js';
import { NbdCommandError } from '../util/errors.js';
import type { BlockStore } from '../storage/types.js';
import { NBD_ENOTSUP } from './protocol.js';
import type { NbdExportBackend, NbdExtent, NbdWriteZeroesOptions } from './types.js';

export interface StoreBackendOptions {
  /** Refuse writes (NBD_FLAG_READ_ONLY). @default false */
  readonly readOnly?: boolean;
  /** Shown by NBD_OPT_LIST. */
  readonly description?: string;
  /** @default 4096 */
  readonly preferredBlockBytes?: number;
  /** @default NBD_PAYLOAD_BYTES_MAX */
  readonly maximumBlockBytes?: number;
}

export function storeBackend(store: BlockStore, opts: StoreBackendOptions = {}): NbdExportBackend {
  return {
    sizeBytes: store.sizeBytes,
    readOnly: opts.readOnly ?? false,
    ...(opts.description !== undefined ? { description: opts.description } : {}),
    // The store works in whole sectors, so that is the smallest request we accept.
    blockSizes: {
      minimumBytes: SECTOR_BYTES,
      preferredBytes: opts.preferredBlockBytes ?? 4096,
      maximumBytes: opts.maximumBlockBytes ?? NBD_PAYLOAD_BYTES_MAX,
    },
    capabilities: {
      flush: true,
      fua: true,
      trim: true,
      writeZeroes: true,
      fastZero: true,
      cache: true,
      multiConn: true,
      blockStatus: true,
    },
    read: (off, len, into) => store.read(off, len, into),
    write: (off, data, fua) => store.write(off, data, { fua }),
    flush: () => store.flush(),
    async trim(off, len, fua) {
      await store.discard(off, len);
      if (fua) await store.flush();
    },
    writeZeroes(off, len, o: NbdWriteZeroesOptions) {
      if (o.fastZero && o.noHole) {
        return Promise.reject(
          new NbdCommandError('zeroing without punching a hole is not fast here', NBD_ENOTSUP),
        );
      }
      return store.writeZeroes(off, len, { fua: o.fua, noHole: o.noHole });
    },
    // CACHE is advisory; the store's reads go through the page cache anyway.
    cache: () => Promise.resolve(),
    async blockStatus(off, len): Promise<NbdExtent[]> {
      const out: NbdExtent[] = [];
      let at = off;
      for (const e of await store.extents(off, len)) {
        // Extents must be consecutive from `off`; stop at the first gap or overlap.
        if (e.offsetBytes > at || e.offsetBytes + e.lengthBytes <= at) break;
        const end = Math.min(e.offsetBytes + e.lengthBytes, off + len);
        out.push({ lengthBytes: end - at, hole: e.hole, zero: e.zero });
        at = end;
        if (at >= off + len) break;
      }
      return out;
    },
  };
}
