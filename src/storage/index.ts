// The storage layer's public surface: block stores and DRBD v09 metadata.
export type { BlockStore, Extent, WriteOptions, ZeroOptions } from './types.js';
export {
  MemoryStore,
  type CrashSelector,
  type FaultInjector,
  type MemoryStoreOptions,
  type StoreOp,
} from './memory.js';
export { FileStore, openFileStore, type FileStoreOptions } from './file.js';
export { sliceStore } from './slice.js';
