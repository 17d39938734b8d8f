// The daemon's control socket: a Unix socket, mode 0600, speaking control-protocol.ts.
// Each client is independent: a bad line gets an error reply, a client that floods or stalls an
// events stream is disconnected, and nothing a client does can reach the resources directly.
import { chmod, mkdir, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import {
  CONTROL_CLIENTS_MAX,
  CONTROL_EVENTS_QUEUED_MAX,
  CONTROL_LINE_BYTES_MAX,
} from '../limits.js';
import { StateError, TandemError } from '../util/errors.js';
import { LineReader } from '../util/line-reader.js';
import {
  decodeRequest,
  encodeLine,
  type ControlErrorBody,
  type ControlReply,
  type ControlRequest,
  type TandemEvent,
} from './control-protocol.js';

export interface ControlHandler {
  /** Runs one operation; throws a TandemError whose message tells the user what to do next. */
  handle(req: ControlRequest): Promise<unknown>;
  /** Current state as `exists` events (for `events --now`). */
  snapshot(): TandemEvent[];
  /** Registers a listener for state changes; returns the function that removes it. */
  subscribe(listener: (e: TandemEvent) => void): () => void;
}

export class ControlServer {
  private readonly server: Server;
  private readonly clients = new Set<Socket>();

  private constructor(
    private readonly path: string,
    private readonly handler: ControlHandler,
  ) {
    this.server = createServer((s) => this.accept(s));
    this.server.maxConnections = CONTROL_CLIENTS_MAX;
  }

  static async listen(path: string, handler: ControlHandler): Promise<ControlServer> {
    await mkdir(dirname(path), { recursive: true, mode: 0o755 });
    // A stale socket from a killed daemon would make listen fail with EADDRINUSE.
    await rm(path, { force: true });
    const cs = new ControlServer(path, handler);
    await new Promise<void>((resolve, reject) => {
      cs.server.once('error', reject);
      cs.server.listen(path, () => {
        cs.server.off('error', reject);
        resolve();
      });
    });
    await chmod(path, 0o600);
    return cs;
  }

  async close(): Promise<void> {
    for (const c of this.clients) c.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await rm(this.path, { force: true });
  }

  private accept(socket: Socket): void {
    this.clients.add(socket);
    let unsubscribe: (() => void) | undefined;
    const reader = new LineReader(
      CONTROL_LINE_BYTES_MAX,
      (line) => this.onLine(socket, line, (u) => (unsubscribe = u)),
      () => {
        this.reply(socket, {
          id: 0,
          ok: false,
          error: { code: 'TANDEM_ERR_CONTROL', message: 'request line too long' },
        });
        socket.end();
      },
    );
    socket.on('data', (chunk: Buffer) => reader.push(chunk));
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      unsubscribe?.();
      this.clients.delete(socket);
    });
  }

  private onLine(socket: Socket, line: string, setUnsubscribe: (u: () => void) => void): void {
    const decoded = decodeRequest(line);
    if (!decoded.ok) {
      this.reply(socket, {
        id: 0,
        ok: false,
        error: { code: 'TANDEM_ERR_CONTROL', message: decoded.error },
      });
      return;
    }
    const req = decoded.value;
    if (req.op === 'events') {
      this.stream(socket, req, setUnsubscribe);
      return;
    }
    this.handler.handle(req).then(
      (result) => this.reply(socket, { id: req.id, ok: true, result: result ?? null }),
      (e: unknown) => this.reply(socket, { id: req.id, ok: false, error: errorBody(e) }),
    );
  }

  private stream(
    socket: Socket,
    req: ControlRequest,
    setUnsubscribe: (u: () => void) => void,
  ): void {
    const send = (event: TandemEvent): void => {
      if (socket.writableLength > CONTROL_EVENTS_QUEUED_MAX * 256) {
        // A client that does not read its events must not grow our memory without bound.
        socket.destroy();
        return;
      }
      socket.write(encodeLine({ id: req.id, event }));
    };
    // Subscribe before taking the snapshot so no change falls between the two.
    setUnsubscribe(this.handler.subscribe(send));
    if (req.flags?.['now'] === true) {
      for (const e of this.handler.snapshot()) send(e);
      send({ kind: 'exists', object: 'helper', resource: '-', props: { end: true }, timeMs: 0 });
    }
  }

  private reply(socket: Socket, r: ControlReply): void {
    if (!socket.destroyed) socket.write(encodeLine(r));
  }
}

function errorBody(e: unknown): ControlErrorBody {
  if (e instanceof StateError && e.refusal !== undefined)
    return { code: e.code, message: e.message, refusal: e.refusal };
  if (e instanceof TandemError) return { code: e.code, message: e.message };
  return { code: 'TANDEM_ERR_INTERNAL', message: e instanceof Error ? e.message : String(e) };
}
