// Typed operating errors with stable codes: bad input, dead peers, failing disks.
// Every error a user can see carries a code they can search for and a message they can act on.
import type { Errno } from './errno.js';

export abstract class TandemError extends Error {
  abstract readonly code: string;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A configuration file or command-line value is wrong. */
export class ConfigError extends TandemError {
  readonly code = 'TANDEM_ERR_CONFIG';
}

/** A request that can never succeed as asked (out of range, misaligned, too large). */
export class InvalidRequestError extends TandemError {
  readonly code = 'TANDEM_ERR_INVALID_REQUEST';
}

/** The backing device failed an I/O; carries the offset and the errno. */
export class DiskIoError extends TandemError {
  readonly code = 'TANDEM_ERR_DISK_IO';
  constructor(
    message: string,
    readonly offsetBytes: number,
    readonly errno: Errno,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** On-disk metadata is missing, corrupt or of another format. */
export class MetadataError extends TandemError {
  readonly code = 'TANDEM_ERR_METADATA';
}

/** Bytes from a peer or a client that do not follow the protocol. */
export class ProtocolError extends TandemError {
  readonly code = 'TANDEM_ERR_PROTOCOL';
}

/** A peer failed authentication (wrong secret, reflected challenge). */
export class PeerAuthError extends TandemError {
  readonly code = 'TANDEM_ERR_PEER_AUTH';
}

/** A connection ended or could not be made. */
export class ConnectionError extends TandemError {
  readonly code = 'TANDEM_ERR_CONNECTION';
}

/** An operation was refused in the current state (e.g. promote an Inconsistent disk). */
export class StateError extends TandemError {
  readonly code = 'TANDEM_ERR_STATE';
  constructor(
    message: string,
    /** The engine's refusal code (AdminRefusal), for scripts: stable where the text is not. */
    readonly refusal?: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** An NBD command failed with a protocol error number (NBD_EINVAL, NBD_ENOSPC, ...). */
export class NbdCommandError extends TandemError {
  readonly code = 'TANDEM_ERR_NBD_COMMAND';
  constructor(
    message: string,
    /** The NBD error value sent or received on the wire (e.g. 22 for EINVAL). */
    readonly nbdErrno: number,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** The fabric transport cannot run here: addon not built, libfabric or the provider missing. */
export class FabricUnavailableError extends TandemError {
  readonly code = 'TANDEM_ERR_FABRIC_UNAVAILABLE';
}
