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
export {
  openBackingDevices,
  parseMetaDisk,
  formatMetaDisk,
  type BackingDevices,
  type MetaDiskSpec,
} from './device.js';
export * from './metadata/format.js';
export {
  encodeSuperblock,
  decodeSuperblock,
  uuidHex,
  emptyPeerSlot,
  type Superblock,
  type PeerSlot,
} from './metadata/superblock.js';
export {
  computeLayout,
  bitmapBytes,
  resizedLayout,
  type MetadataLayout,
  type ResizedLayout,
  type MetaDiskKind,
} from './metadata/layout.js';
export { Bitmap, bitsTouching, bitsCovered } from './metadata/bitmap.js';
export {
  ActivityLog,
  encodeAlTransaction,
  decodeAlTransaction,
  replayActivityLog,
  initializedAlBlock,
  type AlAdmission,
  type AlTransaction,
  type AlTransactionPlan,
} from './metadata/al.js';
export {
  MetadataStore,
  extentsOf,
  superblockOffset,
  type CreateOptions,
  type OpenOptions,
  type MetaPlacement,
  type AlApplyResult,
} from './metadata/store.js';
export {
  withPersistedMeta,
  persistedMetaOf,
  setRanges,
  type PersistedMeta,
  type PersistedFlags,
  type BitRange,
} from './metadata/engine-view.js';
export { detectSignature, type Signature } from './signatures.js';
export { formatDumpText, dumpJson, formatGi, formatShowGi } from './metadata/dump.js';
