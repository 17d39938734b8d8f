// NBD servers shared by the resources of one daemon: one server per listening address, each
// resource an export on it (several resources may share `nbd://127.0.0.1:PORT/`).
import { rm } from 'node:fs/promises';
import { NbdServer, type NbdListener } from '../nbd/server.js';
import type { NbdExportBackend, NbdListenerSpec, NbdServerEvent } from '../nbd/types.js';
import type { Logger } from '../platform/log.js';

interface Hosted {
  readonly server: NbdServer;
  readonly listener: NbdListener;
  /** conn id -> export name, for "who holds this export open". */
  readonly sessions: Map<number, string>;
}

function keyOf(spec: NbdListenerSpec): string {
  return spec.kind === 'tcp' ? `tcp:${spec.host}:${spec.port}` : `unix:${spec.path}`;
}

export class NbdHub {
  private readonly hosted = new Map<string, Hosted>();
  private readonly starting = new Map<string, Promise<Hosted>>();

  constructor(private readonly log: Logger) {}

  async addExport(spec: NbdListenerSpec, name: string, backend: NbdExportBackend): Promise<string> {
    const h = await this.host(spec);
    h.server.addExport(name, backend);
    return h.listener.address;
  }

  removeExport(spec: NbdListenerSpec, name: string): void {
    this.hosted.get(keyOf(spec))?.server.removeExport(name);
  }

  /** NBD connections that have entered this export and are still open. */
  openCount(spec: NbdListenerSpec, name: string): number {
    const h = this.hosted.get(keyOf(spec));
    if (h === undefined) return 0;
    let n = 0;
    for (const e of h.sessions.values()) if (e === name) n++;
    return n;
  }

  async close(): Promise<void> {
    const all = [...this.hosted.values()];
    this.hosted.clear();
    await Promise.all(
      all.map(async (h) => {
        // The server first: it ends every connection (bounded by its close timeout). Closing
        // the listener first would wait for clients to hang up on their own, maybe forever.
        await h.server.close();
        await h.listener.close();
      }),
    );
  }

  private host(spec: NbdListenerSpec): Promise<Hosted> {
    const key = keyOf(spec);
    const have = this.hosted.get(key);
    if (have !== undefined) return Promise.resolve(have);
    let p = this.starting.get(key);
    if (p === undefined) {
      p = this.start(spec).finally(() => this.starting.delete(key));
      this.starting.set(key, p);
    }
    return p;
  }

  private async start(spec: NbdListenerSpec): Promise<Hosted> {
    const sessions = new Map<number, string>();
    const onEvent = (e: NbdServerEvent): void => {
      if (e.type === 'export') sessions.set(e.conn, e.exportName);
      else if (e.type === 'close') sessions.delete(e.conn);
      else if (e.type === 'protocol-error')
        this.log.warn({ conn: e.conn }, `NBD client: ${e.message}`);
    };
    const server = new NbdServer({ onEvent });
    // A daemon that was killed leaves its socket file behind; the path is ours to reuse.
    if (spec.kind === 'unix') await rm(spec.path, { force: true });
    const listener = await server.listen(spec);
    this.log.info({ address: listener.address }, 'NBD server listening');
    const h = { server, listener, sessions };
    this.hosted.set(keyOf(spec), h);
    return h;
  }
}
