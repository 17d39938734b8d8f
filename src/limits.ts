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
/** Size of one zero-filled write when a store zeroes a range without punching a hole. */
export const STORE_ZERO_CHUNK_BYTES = 1 * MIB;
/**
 * Writes up to this size go to the page cache synchronously on the event loop (FileStore
 * `inlineWriteMaxBytes`, as tandemd and the standalone export use it): cheaper than the
 * threadpool's two thread wake-ups per write (docs/PERFORMANCE.md).
 */
export const STORE_INLINE_WRITE_BYTES_MAX = 128 * KIB;
/** An inline write slower than this (writeback throttling, a slow device) suspends them... */
export const STORE_INLINE_WRITE_STALL_MS = 2;
/**
 * ...for this long at first (writes then take the threadpool, which never stalls the event
 * loop), doubling with every stall up to the maximum, back to the minimum after that long
 * without one: a lone preemption costs little, steady throttling keeps them off.
 */
export const STORE_INLINE_WRITE_BACKOFF_MIN_MS = 100;
export const STORE_INLINE_WRITE_BACKOFF_MS = 10_000;
assert(
  STORE_INLINE_WRITE_BACKOFF_MIN_MS <= STORE_INLINE_WRITE_BACKOFF_MS,
  'inline backoff bounds ordered',
);
/** Activity-log slots ("al-extents", 4 MiB each): DRBD's default, minimum and maximum. */
export const AL_EXTENTS_DEFAULT = 1237;
export const AL_EXTENTS_MIN = 7;
export const AL_EXTENTS_MAX = 65534;
/**
 * Reads up to this size are served synchronously on the event loop while they come from the
 * page cache (FileStore `inlineReadMaxBytes`): the threadpool round trip cost 0.55x nbdkit on
 * 64 KiB random reads here (docs/PERFORMANCE.md, "What each change bought").
 */
export const STORE_INLINE_READ_BYTES_MAX = 128 * KIB;
/** An inline read slower than this (a page-cache miss: the device was read) suspends them... */
export const STORE_INLINE_READ_STALL_MS = 1;
/** ...for this long at first, doubling per stall up to the maximum (reset after that long). */
export const STORE_INLINE_READ_BACKOFF_MIN_MS = 100;
export const STORE_INLINE_READ_BACKOFF_MAX_MS = 10_000;
assert(
  STORE_INLINE_READ_BACKOFF_MIN_MS <= STORE_INLINE_READ_BACKOFF_MAX_MS,
  'inline read backoff bounds ordered',
);

// --- process ---------------------------------------------------------------------------------
/**
 * V8's old-generation growing factor in tandemd, as 100 × (factor - 1): the limit after a full
 * GC is 6 × the live heap, so per-request Buffers are freed by scavenges instead of forcing
 * back-to-back full GCs (src/platform/heap.ts, docs/PERFORMANCE.md). 300 still left 107 full
 * GCs in 6 s of seq write; 900 cut them to 3 but cost 30 MB more RSS than 500 (6).
 */
export const HEAP_GROWING_PERCENT = 500;

// --- nbd ---------------------------------------------------------------------------------
/** Largest READ/WRITE payload an NBD client may send or ask for (NBD block size maximum). */
export const NBD_PAYLOAD_BYTES_MAX = 32 * MIB;
/** Requests one NBD connection may have in flight; the server stops reading beyond this. */
export const NBD_CONN_REQUESTS_IN_FLIGHT_MAX = 128;
/** Payload bytes (write data and read replies) one NBD connection may hold at once. */
export const NBD_CONN_IN_FLIGHT_BYTES_MAX = 64 * MIB;
/**
 * Reads up to this size go into a connection's own reply buffers, reused once the socket has
 * written them: a fresh buffer per read drove V8 into a full GC every ~100 ms (PERFORMANCE.md).
 */
export const NBD_READ_BUFFER_BYTES = 128 * KIB;
/** Reply buffers a connection keeps (4 MiB at most); reads beyond them allocate as before. */
export const NBD_READ_BUFFERS_MAX = 32;
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
/**
 * Requests that may wait for room in a full backend (AdmissionGate): all that every connection
 * may have in flight. Connections stop reading while a backend is full, so few ever wait.
 */
export const NBD_ADMISSION_WAITING_MAX = NBD_CONNECTIONS_MAX * NBD_CONN_REQUESTS_IN_FLIGHT_MAX;
assert(
  NBD_CONN_IN_FLIGHT_BYTES_MAX >= NBD_PAYLOAD_BYTES_MAX,
  'one full-size request fits in flight',
);
assert(NBD_OPTION_BYTES_MAX >= 2 * NBD_STRING_BYTES_MAX + 16, 'an option holds a name and a query');

// --- transport ---------------------------------------------------------------------------
/** Largest message payload a transport carries (one NBD payload plus room for its header). */
export const TRANSPORT_MESSAGE_PAYLOAD_BYTES_MAX = NBD_PAYLOAD_BYTES_MAX + 64 * KIB;
/** Default per-stream queue level at which send() reports over-high-water. */
export const TRANSPORT_STREAM_HIGH_WATER_BYTES = 4 * MIB;
/** Hard bound of bytes queued (in flight, not yet on the network) per stream; above is a bug. */
export const TRANSPORT_STREAM_QUEUE_BYTES_MAX = 2 * TRANSPORT_MESSAGE_PAYLOAD_BYTES_MAX + 16 * MIB;
/** Frame header on the wire: magic u16, type u16, payload length u32 (PROTOCOL.md). */
export const TRANSPORT_FRAME_HEADER_BYTES = 8;
/** DATA payloads up to this size are copied into a shared batch buffer (coalescing). */
export const TCP_COALESCE_MESSAGE_BYTES_MAX = 8 * KIB;
/** Size of one DATA batch buffer for coalesced small messages. */
export const TCP_BATCH_BYTES = 256 * KIB;
/** Bytes the receive slab of a TCP socket holds (big reads, node-performance.md). */
export const TCP_READ_SLAB_BYTES = 4 * MIB;
/** A read slab whose free tail is shorter than this is replaced by a fresh one. */
export const TCP_READ_SLAB_TAIL_MIN_BYTES = 64 * KIB;
/** TCP keepalive idle time before the first probe (DRBD uses 23 s). */
export const TCP_KEEPALIVE_IDLE_MS = 23_000;
/** Time a dialed socket pair has to complete the stream setup (initial frames). */
export const TCP_SETUP_TIMEOUT_MS = 5_000;
/** After a graceful close, how long the peer has to close its side before the sockets are destroyed (ms). */
export const TCP_CLOSE_LINGER_MS = 5_000;
/** Accepted sockets waiting for their partner stream, per listener. */
export const TCP_PENDING_SOCKETS_MAX = 256;
/** Longest reason text a STREAM_REFUSE frame carries (a TLS mismatch or certificate refusal). */
export const TCP_REFUSE_REASON_BYTES_MAX = 240;

// --- connection manager ------------------------------------------------------------------
/** Wire protocol versions this build speaks (the hello's range). */
export const CM_PROTOCOL_VERSION_MIN = 1;
export const CM_PROTOCOL_VERSION_MAX = 1;
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

// --- config ------------------------------------------------------------------------------
/** Deepest nesting of `{ }` sections in drbd.conf (DRBD needs 4: resource/connection/path/...). */
export const CONFIG_NESTING_MAX = 16;
/** Largest configuration file read, entry or included. */
export const CONFIG_FILE_BYTES_MAX = 4 * MIB;
/** Deepest chain of `include` (a file including itself is caught before this). */
export const CONFIG_INCLUDE_DEPTH_MAX = 16;
/** Files read for one configuration, entry and includes together. */
export const CONFIG_FILES_MAX = 1024;
/** Highest DRBD node-id (DRBD 9 supports 32 nodes: 0..31). */
export const CONFIG_NODE_ID_MAX = 31;
/** Highest DRBD minor number (DRBD's MINORMASK). */
export const CONFIG_MINOR_MAX = 1048575;
/** Highest volume number in a resource (DRBD: 0..65534). */
export const CONFIG_VOLUME_MAX = 65534;

// --- daemon control socket -----------------------------------------------------------------
/** Longest request or reply line on the control socket. */
export const CONTROL_LINE_BYTES_MAX = 1 * MIB;
/** Clients connected to the control socket at once (events streams included). */
export const CONTROL_CLIENTS_MAX = 64;
/** Events buffered for one slow `events` client before it is disconnected. */
export const CONTROL_EVENTS_QUEUED_MAX = 10_000;
/** Graceful shutdown (SIGTERM) waits this long for NBD requests in flight before failing them. */
export const SHUTDOWN_DRAIN_MS = 10_000;

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
/**
 * A Secondary flushes drained epochs nobody waits for (no client FLUSH, no activity-log
 * pressure on the Primary) at most this long after the first of them drained...
 */
export const RX_EPOCH_FLUSH_DELAY_MS = 50;
/** ...or once they hold this many writes, whichever comes first. */
export const RX_UNFLUSHED_WRITES_MAX = 4096;
/**
 * Client writes in flight whose stage timestamps a resource keeps (`write-stages.ts`), a power
 * of two: a write whose slot a newer one takes is left out of the breakdown (counted in
 * `dropped`), so the memory stays fixed however deep the queues are.
 */
export const WRITE_STAGES_TRACKED_MAX = 1024;
/** Buckets of a stage's latency histogram: bucket b >= 1 holds [2^(b-1), 2^b) microseconds. */
export const WRITE_STAGES_BUCKETS = 32;

assert(RESYNC_REQUEST_BYTES_MAX % BITMAP_BLOCK_BYTES === 0, 'resync request is whole blocks');
assert(AL_EXTENT_BYTES % BITMAP_BLOCK_BYTES === 0, 'AL extent is whole bitmap blocks');
assert(
  (WRITE_STAGES_TRACKED_MAX & (WRITE_STAGES_TRACKED_MAX - 1)) === 0,
  'write stages: slots are a power of two',
);
assert(WIRE_BODY_BYTES_MAX > RESYNC_REQUEST_BYTES_MAX, 'a resync reply fits in one packet');
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
// --- multipath sessions --------------------------------------------------------------------
/** Unacknowledged bytes a session keeps per stream for replay; send() says over-high-water at it. */
export const MULTIPATH_REPLAY_BUFFER_BYTES = 16 * MIB;
/** Heartbeats sent per ping-timeout on every path (62.5 ms with the default 0.5 s). */
export const MULTIPATH_HEARTBEATS_PER_PING_TIMEOUT = 8;
/**
 * Heartbeat intervals of silence after which a path carrying traffic has failed (half a
 * ping-timeout: failover well within ping-timeout); an idle standby path gets a whole ping-timeout.
 */
export const MULTIPATH_ACTIVE_PATH_SILENT_HEARTBEATS = 4;
/** Shortest heartbeat interval, whatever ping-timeout says. */
export const MULTIPATH_HEARTBEAT_INTERVAL_MIN_MS = 5;
/** A receiver acknowledges at most this long after delivering, when no CONTROL traffic carries it. */
export const MULTIPATH_ACK_DELAY_MS = 5;
/** A receiver acknowledges at once after this many unacknowledged bytes (keeps the window open). */
export const MULTIPATH_ACK_EVERY_BYTES = 1 * MIB;
/** Failures of one path within a minute above which it is held down (flap hysteresis). */
export const MULTIPATH_FLAPS_PER_MINUTE_MAX = 5;
/** How long a flapping path is held down before it is dialed again. */
export const MULTIPATH_HOLD_DOWN_MS = 60_000;
/** Delay before a failed path is dialed again (doubles per failure, up to the hold-down). */
export const MULTIPATH_REDIAL_MS = 250;
/** Cap of that doubling for a path that is not flapping (it keeps being dialed this often). */
export const MULTIPATH_REDIAL_MAX_MS = 2_000;
/** Time a path has to finish its join handshake. */
export const MULTIPATH_JOIN_TIMEOUT_MS = 5_000;
/** Longest destroy() lingers to deliver its CLOSE notice before it drops the paths. */
export const MULTIPATH_CLOSE_LINGER_MS = 1_000;
/** Paths of one session (drbd.conf allows a handful per connection). */
export const MULTIPATH_PATHS_MAX = 8;
/** Sessions one listener keeps (live, or waiting for a path to resume). */
export const MULTIPATH_SESSIONS_MAX = 1024;
/** Bytes of the random session id and of each handshake nonce. */
export const MULTIPATH_SESSION_ID_BYTES = 16;
export const MULTIPATH_NONCE_BYTES = 32;

assert(
  MULTIPATH_REPLAY_BUFFER_BYTES + TRANSPORT_MESSAGE_PAYLOAD_BYTES_MAX <=
    TRANSPORT_STREAM_QUEUE_BYTES_MAX,
  'a full replay buffer plus one message fits the stream hard bound',
);
assert(
  MULTIPATH_ACTIVE_PATH_SILENT_HEARTBEATS >= 2 &&
    MULTIPATH_ACTIVE_PATH_SILENT_HEARTBEATS < MULTIPATH_HEARTBEATS_PER_PING_TIMEOUT,
  'an active path is judged on several heartbeats, within one ping-timeout',
);
