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
/** Requests one NBD connection may have in flight; the server stops reading beyond this. */
export const NBD_CONN_REQUESTS_IN_FLIGHT_MAX = 128;
/** Payload bytes (write data and read replies) one NBD connection may hold at once. */
export const NBD_CONN_IN_FLIGHT_BYTES_MAX = 64 * MIB;
/** Bytes of one handshake option's data; larger options are skipped with ERR_TOO_BIG. */
export const NBD_OPTION_BYTES_MAX = 64 * KIB;
/** Options one connection may send before it must enter transmission or be closed. */
export const NBD_OPTIONS_PER_CONN_MAX = 1024;
/** Time a client has from connect to the end of the handshake. */
export const NBD_HANDSHAKE_TIMEOUT_MS = 30_000;
/** Connections one NBD server accepts at once (all exports together); more are closed. */
export const NBD_CONNECTIONS_MAX = 256;
/** Time close() gives connections to finish in-flight requests before they are dropped. */
export const NBD_CLOSE_TIMEOUT_MS = 5_000;
/** Export names and meta context queries (the spec's string limit). */
export const NBD_STRING_BYTES_MAX = 4096;
/** Extent descriptors in one BLOCK_STATUS reply. */
export const NBD_BLOCK_STATUS_EXTENTS_MAX = 4096;
assert(
  NBD_CONN_IN_FLIGHT_BYTES_MAX >= NBD_PAYLOAD_BYTES_MAX,
  'one full-size request fits in flight',
);
assert(NBD_OPTION_BYTES_MAX >= 2 * NBD_STRING_BYTES_MAX + 16, 'an option holds a name and a query');

assert(BITMAP_BLOCK_BYTES % SECTOR_BYTES === 0, 'bitmap block is whole sectors');
assert(NBD_PAYLOAD_BYTES_MAX % BITMAP_BLOCK_BYTES === 0, 'NBD payload max is whole bitmap blocks');

// --- daemon control socket -----------------------------------------------------------------
/** Longest request or reply line on the control socket. */
export const CONTROL_LINE_BYTES_MAX = 1 * MIB;
/** Clients connected to the control socket at once (events streams included). */
export const CONTROL_CLIENTS_MAX = 64;
/** Events buffered for one slow `events` client before it is disconnected. */
export const CONTROL_EVENTS_QUEUED_MAX = 10_000;
