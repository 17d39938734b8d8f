// The CLI side of the control socket: one request and its reply, or a stream of events.
import { connect, type Socket } from 'node:net';
import { CONTROL_LINE_BYTES_MAX } from '../limits.js';
import { LineReader } from '../util/line-reader.js';
import type { ControlOp, ControlReply, TandemEvent } from '../daemon/control-protocol.js';
import { encodeLine } from '../daemon/control-protocol.js';
import { CliError, EXIT, exitCodeOf } from './context.js';

export interface RequestInit {
  readonly resource?: string;
  readonly flags?: Readonly<Record<string, boolean | number | string>>;
}

function open(controlPath: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(controlPath);
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', (e: NodeJS.ErrnoException) => {
      const why =
        e.code === 'ENOENT' || e.code === 'ECONNREFUSED'
          ? `no tandemd is listening on ${controlPath}; start it with \`tandemd --config FILE --node NAME\``
          : `cannot reach tandemd at ${controlPath}: ${e.message}`;
      reject(new CliError(why, EXIT.noDaemon));
    });
  });
}

/** Sends one request and resolves with its result; a daemon-side error becomes a CliError. */
export async function request(
  controlPath: string,
  op: ControlOp,
  init: RequestInit = {},
): Promise<unknown> {
  const s = await open(controlPath);
  return new Promise((resolve, reject) => {
    const reader = new LineReader(
      CONTROL_LINE_BYTES_MAX,
      (line) => {
        s.end();
        let r: ControlReply;
        try {
          r = JSON.parse(line) as ControlReply;
        } catch {
          return reject(new CliError('tandemd sent a reply that is not JSON'));
        }
        if (r.ok) resolve(r.result);
        else reject(new CliError(r.error.message, exitCodeOf(r.error.code), r.error.refusal));
      },
      () => reject(new CliError('reply from tandemd too long')),
    );
    s.on('data', (c: Buffer) => reader.push(c));
    s.on('close', () =>
      reject(new CliError('tandemd closed the control connection without a reply')),
    );
    s.write(encodeLine({ id: 1, op, ...init }));
  });
}

/**
 * Streams events until `onEvent` returns true (done) or the daemon goes away. With `now`, the
 * current state arrives first as `exists` events, ended by a helper event with props.end.
 */
export async function streamEvents(
  controlPath: string,
  now: boolean,
  onEvent: (e: TandemEvent) => boolean | undefined,
  signal?: AbortSignal,
): Promise<void> {
  const s = await open(controlPath);
  return new Promise((resolve, reject) => {
    let done = false;
    // Aborting ends the stream quietly: the caller stopped caring, nothing went wrong.
    const onAbort = (): void => {
      if (done) return;
      done = true;
      s.destroy();
      resolve();
    };
    if (signal?.aborted === true) onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    s.once('close', () => signal?.removeEventListener('abort', onAbort));
    const reader = new LineReader(
      CONTROL_LINE_BYTES_MAX,
      (line) => {
        if (done) return;
        const msg = JSON.parse(line) as {
          event?: TandemEvent;
          ok?: boolean;
          error?: { message: string };
        };
        if (msg.event === undefined) {
          done = true;
          s.destroy();
          reject(new CliError(msg.error?.message ?? 'unexpected reply on the events stream'));
          return;
        }
        let finished: boolean | undefined;
        try {
          finished = onEvent(msg.event);
        } catch (e) {
          done = true;
          s.destroy();
          reject(e instanceof Error ? e : new Error(String(e)));
          return;
        }
        if (finished === true) {
          done = true;
          s.destroy();
          resolve();
        }
      },
      () => reject(new CliError('event line from tandemd too long')),
    );
    s.on('data', (c: Buffer) => reader.push(c));
    s.on('close', () => {
      if (!done) reject(new CliError('tandemd closed the events stream', EXIT.noDaemon));
    });
    s.write(encodeLine({ id: 1, op: 'events', flags: { now } }));
  });
}
