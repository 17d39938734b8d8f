// The NBD layer's contract: what an export's backend offers the server, and how listeners are
// described. The server knows nothing of what stores the data; the daemon implements
// NbdExportBackend over the replication engine, `storeBackend` over a plain BlockStore.
// This file imports nothing at runtime.

/** One run of the allocation map, as NBD base:allocation reports it. */
export interface NbdExtent {
  readonly lengthBytes: number;
  /** The range is not backed by storage (NBD_STATE_HOLE). */
  readonly hole: boolean;
  /** The range reads as zeroes (NBD_STATE_ZERO). */
  readonly zero: boolean;
}

/** Block size constraints sent with NBD_INFO_BLOCK_SIZE; every request must honour `minimum`. */
export interface NbdBlockSizes {
  /** Offsets and lengths must be multiples of this (a power of two, 1..65536). */
  readonly minimumBytes: number;
  /** Requests of this size and alignment perform best. */
  readonly preferredBytes: number;
  /** Largest READ/WRITE payload (at most NBD_PAYLOAD_BYTES_MAX). */
  readonly maximumBytes: number;
}

/** Which optional operations the backend honours; these become the transmission flags. */
export interface NbdCapabilities {
  /** flush() makes every completed write durable (NBD_FLAG_SEND_FLUSH). */
  readonly flush: boolean;
  /** Writes with fua are durable on completion (NBD_FLAG_SEND_FUA). */
  readonly fua: boolean;
  readonly trim: boolean;
  readonly writeZeroes: boolean;
  /** writeZeroes with fastZero fails fast with NBD_ENOTSUP instead of writing slowly. */
  readonly fastZero: boolean;
  readonly cache: boolean;
  /**
   * Every connection sees one shared state and flush covers writes completed on any
   * connection (NBD_FLAG_CAN_MULTI_CONN).
   */
  readonly multiConn: boolean;
  /** blockStatus() reports real allocation; otherwise the server reports all data. */
  readonly blockStatus: boolean;
}

export interface NbdWriteZeroesOptions {
  readonly fua: boolean;
  /** The range must stay allocated (NBD_CMD_FLAG_NO_HOLE). */
  readonly noHole: boolean;
  /** Fail with NbdCommandError(NBD_ENOTSUP) rather than zero slowly (NBD_CMD_FLAG_FAST_ZERO). */
  readonly fastZero: boolean;
}

/**
 * Backpressure from a backend with a bounded queue to every connection of its export: while
 * `saturated()` holds, the server reads no new request on any of them; `onRoom(fn)` calls fn
 * once, when room returns. A request read before saturation is still submitted (the backend
 * holds it, in order), so a backend sees at most one request per connection beyond its bound.
 */
export interface NbdAdmission {
  saturated(): boolean;
  onRoom(fn: () => void): void;
}

/**
 * What an export offers. The server validates every request (range, alignment, flags,
 * read-only) before calling in, so a backend sees only well-formed, in-range requests.
 * Errors: throw NbdCommandError to pick the NBD error; InvalidRequestError maps to EINVAL,
 * DiskIoError to EIO (ENOSPC when its errno is ENOSPC/EDQUOT/EFBIG), anything else to EIO.
 */
export interface NbdExportBackend {
  readonly sizeBytes: number;
  readonly readOnly: boolean;
  readonly blockSizes: NbdBlockSizes;
  readonly capabilities: NbdCapabilities;
  /** Shown by NBD_OPT_LIST and NBD_INFO_DESCRIPTION. */
  readonly description?: string;
  /**
   * Why the export cannot be opened right now (e.g. a Secondary, as DRBD refuses to open one),
   * or undefined when it can. NBD_OPT_GO answers NBD_REP_ERR_UNKNOWN with this text.
   */
  unavailable?(): string | undefined;
  /** Backpressure, for a backend that cannot take every request the connections allow. */
  readonly admission?: NbdAdmission;

  /**
   * `into` (exactly lengthBytes) is the connection's reply buffer: read into it and return it
   * when you can (the connection reuses it once the socket has written it), or return another
   * buffer. Never write into `into` after the promise settles.
   */
  read(offsetBytes: number, lengthBytes: number, into?: Buffer): Promise<Buffer>;
  /** `data` is the payload as received (zero-copy slices); its total length is the length. */
  write(offsetBytes: number, data: readonly Buffer[], fua: boolean): Promise<void>;
  flush(): Promise<void>;
  trim(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void>;
  writeZeroes(offsetBytes: number, lengthBytes: number, opts: NbdWriteZeroesOptions): Promise<void>;
  /** Prefetch hint (NBD_CMD_CACHE). */
  cache(offsetBytes: number, lengthBytes: number): Promise<void>;
  /** Consecutive extents starting at offset, covering at most lengthBytes (at least one). */
  blockStatus(offsetBytes: number, lengthBytes: number): Promise<readonly NbdExtent[]>;
}

/** Where an NBD server listens. TCP defaults to loopback in the URI parser. */
export type NbdListenerSpec =
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number }
  | { readonly kind: 'unix'; readonly path: string };

/** A parsed `nbd[s]://HOST:PORT/NAME` or `nbd[s]+unix:///NAME?socket=PATH` device URI. */
export interface NbdUri {
  readonly listener: NbdListenerSpec;
  readonly exportName: string;
  /** `nbds`: the export requires TLS. */
  readonly tls: boolean;
}

/** One line of the server's event stream (for logs and for tests to wait on). */
export type NbdServerEvent =
  | { readonly type: 'listening'; readonly address: string }
  | { readonly type: 'connect'; readonly conn: number; readonly remote: string }
  | { readonly type: 'export'; readonly conn: number; readonly exportName: string }
  | { readonly type: 'close'; readonly conn: number; readonly reason: string }
  | { readonly type: 'protocol-error'; readonly conn: number; readonly message: string }
  /** STARTTLS succeeded: `protocol` as TLS names it, `client` the certificate's subject CN. */
  | {
      readonly type: 'tls';
      readonly conn: number;
      readonly protocol: string;
      readonly client: string;
    };
