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

// --- daemon control socket -----------------------------------------------------------------
/** Longest request or reply line on the control socket. */
export const CONTROL_LINE_BYTES_MAX = 1 * MIB;
/** Clients connected to the control socket at once (events streams included). */
export const CONTROL_CLIENTS_MAX = 64;
/** Events buffered for one slow `events` client before it is disconnected. */
export const CONTROL_EVENTS_QUEUED_MAX = 10_000;
