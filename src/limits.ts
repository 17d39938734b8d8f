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

// --- transport ---------------------------------------------------------------------------
/** Largest message payload a transport carries (one NBD payload plus room for its header). */
export const TRANSPORT_MESSAGE_PAYLOAD_BYTES_MAX = NBD_PAYLOAD_BYTES_MAX + 64 * KIB;
/** Default per-stream queue level at which send() reports over-high-water. */
export const TRANSPORT_STREAM_HIGH_WATER_BYTES = 4 * MIB;
/** Hard bound of bytes queued (in flight, not yet on the network) per stream; above is a bug. */
export const TRANSPORT_STREAM_QUEUE_BYTES_MAX = 2 * TRANSPORT_MESSAGE_PAYLOAD_BYTES_MAX + 16 * MIB;
/** Frame header on the wire: magic u16, type u16, payload length u32 (PROTOCOL.md). */
export const TRANSPORT_FRAME_HEADER_BYTES = 8;
/** Messages smaller than this are gathered into one write on DATA (coalescing). */
export const TCP_COALESCE_MESSAGE_BYTES_MAX = 4 * KIB;
/** Bytes the receive slab of a TCP socket holds (big reads, node-performance.md). */
export const TCP_READ_SLAB_BYTES = 4 * MIB;
/** TCP keepalive idle time before the first probe (DRBD uses 23 s). */
export const TCP_KEEPALIVE_IDLE_MS = 23_000;
/** Time a dialed socket pair has to complete the stream setup (initial frames). */
export const TCP_SETUP_TIMEOUT_MS = 5_000;
/** Accepted sockets waiting for their partner stream, per listener. */
export const TCP_PENDING_SOCKETS_MAX = 256;

// --- connection manager ------------------------------------------------------------------
/** Time a new channel has to finish the handshake (hello, auth, addresses). */
export const CM_HANDSHAKE_TIMEOUT_MS = 5_000;
/** Bytes of the random auth challenge each side sends (DRBD uses 64). */
export const CM_AUTH_CHALLENGE_BYTES = 64;
/** Longest resource name in a hello (DRBD's name limit is 128). */
export const CM_RESOURCE_NAME_BYTES_MAX = 128;
/** Addresses one node may announce in the address exchange. */
export const CM_ADDRESSES_MAX = 32;
/** Longest refusal reason text on the wire. */
export const CM_REASON_BYTES_MAX = 512;
/** Auth failures from one address within CM_AUTH_FAILURE_WINDOW_MS before it is blocked. */
export const CM_AUTH_FAILURES_MAX = 3;
export const CM_AUTH_FAILURE_WINDOW_MS = 60_000;
/** How long an address that failed auth too often is refused without a handshake. */
export const CM_AUTH_BLOCK_MS = 30_000;
/** Addresses remembered by the auth rate limiter. */
export const CM_AUTH_TRACKED_ADDRESSES_MAX = 1024;
/** Cap of the connect-int backoff. */
export const CM_CONNECT_BACKOFF_MAX_MS = 60_000;

assert(BITMAP_BLOCK_BYTES % SECTOR_BYTES === 0, 'bitmap block is whole sectors');
assert(NBD_PAYLOAD_BYTES_MAX % BITMAP_BLOCK_BYTES === 0, 'NBD payload max is whole bitmap blocks');
assert(
  TRANSPORT_STREAM_HIGH_WATER_BYTES < TRANSPORT_STREAM_QUEUE_BYTES_MAX,
  'high water below hard bound',
);

// --- daemon control socket -----------------------------------------------------------------
/** Longest request or reply line on the control socket. */
export const CONTROL_LINE_BYTES_MAX = 1 * MIB;
/** Clients connected to the control socket at once (events streams included). */
export const CONTROL_CLIENTS_MAX = 64;
/** Events buffered for one slow `events` client before it is disconnected. */
export const CONTROL_EVENTS_QUEUED_MAX = 10_000;

// --- fabric transport (libfabric) ----------------------------------------------------------
/** Size of each pre-registered receive and bounce buffer: the largest fabric message. */
export const FABRIC_BUFFER_BYTES = 64 * KIB;
export const FABRIC_BUFFER_BYTES_MIN = 4 * KIB;
export const FABRIC_BUFFER_BYTES_MAX = 4 * MIB;
/** Receive buffers kept posted for DATA (the peer's DATA credits). */
export const FABRIC_DATA_CREDITS = 64;
/** Receive buffers kept posted for CONTROL; the last one is reserved for credit updates. */
export const FABRIC_CONTROL_CREDITS = 16;
/** CONTROL credits at least: below this a credit update could answer a credit update forever. */
export const FABRIC_CONTROL_CREDITS_MIN = 4;
/** Pre-registered bounce buffers, which also bound sends in flight. */
export const FABRIC_SEND_BUFFERS = 64;
/** Upper bound of any of the buffer counts above. */
export const FABRIC_BUFFERS_MAX = 4096;
/** Payloads at or above this are sent from the caller's Buffer, registered, without a copy. */
export const FABRIC_ZCOPY_THRESHOLD_BYTES = 8 * KIB;
/** Longest busy-poll of the receive queue before sleeping (recv-poll). */
export const FABRIC_RECV_POLL_US_MAX = 1_000_000;
/** Time a fabric connect (address resolution, fi_connect, accept) has to complete. */
export const FABRIC_CONNECT_TIMEOUT_MS = 5_000;
/** Time a graceful close has to flush queued messages before it aborts. */
export const FABRIC_CLOSE_TIMEOUT_MS = 5_000;
/** Header of every fabric message (wire.ts). */
export const FABRIC_WIRE_HEADER_BYTES = 16;
/** Our part of the connection data (fi_connect/fi_accept): the transport handshake. */
export const FABRIC_CONN_DATA_BYTES = 16;

assert(
  FABRIC_BUFFER_BYTES_MIN <= FABRIC_BUFFER_BYTES && FABRIC_BUFFER_BYTES <= FABRIC_BUFFER_BYTES_MAX,
  'fabric buffer default within its bounds',
);
assert(FABRIC_CONTROL_CREDITS >= FABRIC_CONTROL_CREDITS_MIN, 'control credits above minimum');
assert(
  FABRIC_DATA_CREDITS + FABRIC_CONTROL_CREDITS <= FABRIC_BUFFERS_MAX,
  'posted receive buffers within bound',
);
assert(FABRIC_ZCOPY_THRESHOLD_BYTES < FABRIC_BUFFER_BYTES, 'zero-copy threshold below a buffer');
