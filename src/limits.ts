// Every limit in Tandem has a name, a unit and a home: here (mirrored in docs/LIMITS.md).
// Relations between limits are asserted at load, so an edit that breaks one fails at once.
// Sections below are owned by the layer named in their heading; append, do not reorder.
import { assert } from './util/assert.js';

// --- units -------------------------------------------------------------------------------
export const SECTOR_BYTES = 512;
export const KIB = 1024;
export const MIB = 1024 * KIB;
export const GIB = 1024 * MIB;

// --- storage -----------------------------------------------------------------------------
/** One bitmap bit covers this much data (DRBD's default bitmap granularity). */
export const BITMAP_BLOCK_BYTES = 4 * KIB;
/** Positional I/Os a block store keeps in flight at once; more wait in a queue. */
export const STORE_IO_IN_FLIGHT_MAX = 64;

// --- nbd ---------------------------------------------------------------------------------
/** Largest READ/WRITE payload an NBD client may send or ask for (NBD block size maximum). */
export const NBD_PAYLOAD_BYTES_MAX = 32 * MIB;

assert(BITMAP_BLOCK_BYTES % SECTOR_BYTES === 0, 'bitmap block is whole sectors');
assert(NBD_PAYLOAD_BYTES_MAX % BITMAP_BLOCK_BYTES === 0, 'NBD payload max is whole bitmap blocks');

// --- replication -------------------------------------------------------------------------
/** One activity-log extent covers this much data (DRBD: 4 MiB). */
export const AL_EXTENT_BYTES = 4 * MIB;
/** Generation UUID history entries kept in the superblock (DRBD 9 keeps 32). */
export const UUID_HISTORY_MAX = 32;
/** Largest packet body a peer may send (a 1 MiB resync reply plus its fields). */
export const WIRE_BODY_BYTES_MAX = 2 * MIB;
/** Bitmap runs in one Bitmap packet. */
export const WIRE_RANGES_MAX = 4096;
/** A resync request covers at most this much data (DRBD merges up to 1 MiB). */
export const RESYNC_REQUEST_BYTES_MAX = 1 * MIB;
/** Resync requests a target keeps in flight. */
export const RESYNC_REQUESTS_IN_FLIGHT_MAX = 64;
/** Interval of the resync controller and pacing tick, in milliseconds (DRBD: 100 ms). */
export const RESYNC_TICK_MS = 100;
/** Online-verify requests kept in flight. */
export const VERIFY_REQUESTS_IN_FLIGHT_MAX = 16;
/** Client requests an engine queues while a handshake or AL slot is pending. */
export const ENGINE_QUEUED_REQUESTS_MAX = 4096;

assert(RESYNC_REQUEST_BYTES_MAX % BITMAP_BLOCK_BYTES === 0, 'resync request is whole blocks');
assert(AL_EXTENT_BYTES % BITMAP_BLOCK_BYTES === 0, 'AL extent is whole bitmap blocks');
assert(WIRE_BODY_BYTES_MAX > RESYNC_REQUEST_BYTES_MAX, 'a resync reply fits in one packet');
