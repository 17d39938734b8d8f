// DRBD 9 "v09" on-disk constants (drbd-headers drbd_meta_data.h, drbd-utils drbdmeta.c).
// These are format facts, not tunables: changing one breaks compatibility with DRBD's tools.

/** Superblock magic at byte 60 (DRBD_MD_MAGIC_09). */
export const MD_MAGIC_V09 = 0x8374026d;
/** Activity-log transaction magic ("actlog==" base64-decoded). */
export const AL_MAGIC = 0x69cb65a2;

export const SUPERBLOCK_BYTES = 4096;
/** Peer slots on disk, whatever max-peers is (DRBD_PEERS_MAX). */
export const PEER_SLOTS = 32;
export const HISTORY_UUIDS = 32;
/** Largest max-peers drbdmeta accepts (DRBD_PEERS_MAX - 1). */
export const MAX_PEERS_MAX = 31;
/** The highest node id (DRBD_NODE_ID_MAX - 1). */
export const NODE_ID_MAX = 31;

/** The "just created" current UUID: no data generation yet. */
export const UUID_JUST_CREATED = 4n;

/** Superblock flags (enum mdf_flag). */
export const MDF = {
  CONSISTENT: 1 << 0,
  PRIMARY_IND: 1 << 1,
  WAS_UP_TO_DATE: 1 << 4,
  CRASHED_PRIMARY: 1 << 6,
  AL_CLEAN: 1 << 7,
  AL_DISABLED: 1 << 8,
  PRIMARY_LOST_QUORUM: 1 << 9,
  HAVE_QUORUM: 1 << 10,
} as const;

/** Per-peer-slot flags (enum mdf_peer_flag). */
export const MDF_PEER = {
  CONNECTED: 1 << 0,
  OUTDATED: 1 << 1,
  FENCING: 1 << 2,
  FULL_SYNC: 1 << 3,
  DEVICE_SEEN: 1 << 4,
  NODE_EXISTS: 1 << 16,
} as const;

/** The AL and the fixed external layout start one 4 KiB block after the superblock. */
export const MD_AL_OFFSET_SECTORS = 8;
/** Indexed external metadata reserves 128 MiB per index (MD_RESERVED_SECT_07). */
export const MD_EXTERNAL_SLOT_SECTORS = 128 * 2048;
/** Default AL ring: 1 stripe of 8 x 4 KiB transactions (32 KiB). */
export const AL_STRIPES_DEFAULT = 1;
export const AL_STRIPE_SIZE_4K_DEFAULT = 8;

export const AL_TRANSACTION_BYTES = 4096;
export const AL_UPDATES_PER_TRANSACTION = 64;
export const AL_CONTEXT_PER_TRANSACTION = 919;
export const AL_TR_UPDATE = 0;
export const AL_TR_INITIALIZED = 0xffff;
/** One AL extent covers 4 MiB of data (AL_EXTENT_SHIFT 22). */
export const AL_EXTENT_SHIFT = 22;
/** "No extent" in AL slots and updates (LC_FREE). */
export const AL_FREE = 0xffffffff;

/** The bitmap is written in 4 KiB pages; every offset inside the metadata is 4 KiB aligned. */
export const MD_BLOCK_BYTES = 4096;
/** Bytes of data one bitmap bit covers; v09 allows 4 KiB..1 MiB, Tandem supports 4 KiB. */
export const BM_BYTES_PER_BIT = 4096;
