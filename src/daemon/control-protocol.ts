// The control protocol between `tandem` and `tandemd`: one JSON object per line over a Unix
// socket. A request names an operation; the reply carries the same id. An `events` request turns
// the connection into a stream of event lines until either side closes it.
//
// Lines are bounded (CONTROL_LINE_BYTES_MAX) and every field is validated: the socket is mode
// 0600, but a bad client must still get an error, never crash the daemon.
import { CONTROL_LINE_BYTES_MAX } from '../limits.js';
import { err, ok, type Result } from '../util/result.js';

export const CONTROL_OPS = [
  'status',
  'events',
  'up',
  'down',
  'attach',
  'detach',
  'connect',
  'disconnect',
  'primary',
  'secondary',
  'new-current-uuid',
  'invalidate',
  'invalidate-remote',
  'verify',
  'resize',
  'adjust',
  'show',
  'shutdown',
] as const;
export type ControlOp = (typeof CONTROL_OPS)[number];

export interface ControlRequest {
  readonly id: number;
  readonly op: ControlOp;
  /** The resource name, or "all". Absent for daemon-wide operations. */
  readonly resource?: string;
  /** Flags of the operation, e.g. { force: true } for primary --force. */
  readonly flags?: Readonly<Record<string, boolean | number | string>>;
}

export interface ControlErrorBody {
  readonly code: string;
  readonly message: string;
  /** With TANDEM_ERR_STATE from the engine: its refusal code (e.g. "disk-not-up-to-date"). */
  readonly refusal?: string;
}

export type ControlReply =
  | { readonly id: number; readonly ok: true; readonly result: unknown }
  | { readonly id: number; readonly ok: false; readonly error: ControlErrorBody };

export interface ControlEventLine {
  readonly id: number;
  readonly event: TandemEvent;
}

/** One state change, in the shape of `drbdsetup events2` (object, name, changed properties). */
export interface TandemEvent {
  /** exists: the current state (events --now); create/change/destroy: a transition. */
  readonly kind: 'exists' | 'create' | 'change' | 'destroy' | 'call';
  readonly object: 'resource' | 'device' | 'connection' | 'peer-device' | 'path' | 'helper';
  readonly resource: string;
  /** The peer's name (DRBD's conn-name). */
  readonly peer?: string;
  /** The peer's node id (DRBD's peer-node-id). */
  readonly peerNodeId?: number;
  readonly volume?: number;
  readonly props: Readonly<Record<string, string | number | boolean>>;
  /** Milliseconds since the daemon started (monotonic). */
  readonly timeMs: number;
}

export function encodeLine(value: unknown): string {
  return `${JSON.stringify(value)}\n`;
}

/** Parses and validates one request line from a client. */
export function decodeRequest(line: string): Result<ControlRequest, string> {
  if (line.length > CONTROL_LINE_BYTES_MAX)
    return err(`request line over ${CONTROL_LINE_BYTES_MAX} bytes`);
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return err('request is not valid JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    return err('request is not an object');
  const o = v as Record<string, unknown>;
  if (typeof o['id'] !== 'number' || !Number.isSafeInteger(o['id']))
    return err('request id must be an integer');
  const op = o['op'];
  if (typeof op !== 'string' || !(CONTROL_OPS as readonly string[]).includes(op)) {
    return err(`unknown operation ${JSON.stringify(op)}`);
  }
  const resource = o['resource'];
  if (resource !== undefined && (typeof resource !== 'string' || resource.length === 0)) {
    return err('resource must be a non-empty string');
  }
  const flags = o['flags'];
  if (flags !== undefined) {
    if (typeof flags !== 'object' || flags === null || Array.isArray(flags))
      return err('flags must be an object');
    for (const [k, fv] of Object.entries(flags)) {
      if (!['boolean', 'number', 'string'].includes(typeof fv))
        return err(`flag ${k} has a bad value`);
    }
  }
  return ok({
    id: o['id'],
    op: op as ControlOp,
    ...(resource !== undefined ? { resource } : {}),
    ...(flags !== undefined ? { flags: flags as Record<string, boolean | number | string> } : {}),
  });
}

/**
 * Renders an event the way `drbdsetup events2` prints one:
 * `change peer-device name:r0 peer-node-id:1 conn-name:bob volume:0 replication:SyncSource`.
 * Booleans print as yes/no, as DRBD's do.
 */
export function formatEvent(e: TandemEvent): string {
  const parts = [e.kind, e.object, `name:${e.resource}`];
  if (e.peerNodeId !== undefined) parts.push(`peer-node-id:${e.peerNodeId}`);
  if (e.peer !== undefined) parts.push(`conn-name:${e.peer}`);
  if (e.volume !== undefined) parts.push(`volume:${e.volume}`);
  for (const [k, v] of Object.entries(e.props))
    parts.push(`${k}:${typeof v === 'boolean' ? (v ? 'yes' : 'no') : String(v)}`);
  return parts.join(' ');
}
