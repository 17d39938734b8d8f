// NBD servers shared by the resources of one daemon: one server per listening address, each
// resource an export on it (several resources may share `nbd://127.0.0.1:PORT/`). A listener
// has one set of TLS files: `nbds://` exports sharing it must name the same ones (plain `nbd://`
// exports may share it too, the server then runs the spec's SELECTIVETLS mode).
import { rm } from 'node:fs/promises';
import { NbdServer, type NbdListener } from '../nbd/server.js';
import type { NbdExportBackend, NbdListenerSpec, NbdServerEvent } from '../nbd/types.js';
import type { Logger } from '../platform/log.js';
import type { TlsFiles } from '../config/index.js';
import { ConfigError } from '../util/errors.js';
import { loadTlsCredentials } from './tls-files.js';

interface Hosted {
  readonly server: NbdServer;
  readonly listener: NbdListener;
  /** conn id -> export name, for "who holds this export open". */
  readonly sessions: Map<number, string>;
  /** The TLS files the server's credentials came from, and its exports that require TLS. */
  tls: { readonly key: string; loading: boolean; readonly loaded: Promise<void> } | undefined;
  readonly tlsExports: Set<string>;
}

function tlsKeyOf(f: TlsFiles): string {
  return `tls-certificate ${f.certificate}, tls-privkey ${f.privkey}, tls-ca ${f.ca}`;
}

function keyOf(spec: NbdListenerSpec): string {
  return spec.kind === 'tcp' ? `tcp:${spec.host}:${spec.port}` : `unix:${spec.path}`;
}

export class NbdHub {
  private readonly hosted = new Map<string, Hosted>();
  private readonly starting = new Map<string, Promise<Hosted>>();

  constructor(private readonly log: Logger) {}

  /** Adds an export; with `tls` (an nbds:// device) it is served only after STARTTLS. */
  async addExport(
    spec: NbdListenerSpec,
    name: string,
    backend: NbdExportBackend,
    tls: TlsFiles | null = null,
  ): Promise<string> {
    const h = await this.host(spec);
    if (tls !== null) await this.useTls(h, tls);
    h.server.addExport(name, backend, { tlsRequired: tls !== null });
    if (tls !== null) h.tlsExports.add(name);
    return h.listener.address;
  }

  /**
   * Starts the listener and loads its TLS files ahead of `addExport`, so that a missing or bad
   * file fails `up` before the disk is opened rather than after.
   */
  async prepare(spec: NbdListenerSpec, tls: TlsFiles | null): Promise<void> {
    const h = await this.host(spec);
    if (tls !== null) await this.useTls(h, tls);
  }

  removeExport(spec: NbdListenerSpec, name: string): void {
    const h = this.hosted.get(keyOf(spec));
    h?.server.removeExport(name);
    h?.tlsExports.delete(name);
  }

  /**
   * Loads the PEM files into the listener's server. They are read again whenever no TLS export
   * is left on it (so `down` and `up` pick up a renewed certificate); while one is, another
   * export may only name the same files.
   */
  private async useTls(h: Hosted, files: TlsFiles): Promise<void> {
    const key = tlsKeyOf(files);
    const inUse = h.tls !== undefined && (h.tlsExports.size > 0 || h.tls.loading);
    if (inUse && h.tls?.key !== key) {
      throw new ConfigError(
        `NBD listener ${h.listener.address} already serves TLS with ${h.tls?.key}; ` +
          `exports on one listener share its TLS files, this one names ${key}`,
      );
    }
    if (!inUse) {
      const tls = {
        key,
        loading: true,
        loaded: (async () => {
          // The same loader and checks as replication TLS: errors name the option and file.
          await Promise.resolve();
          const { credentials, warnings } = loadTlsCredentials(files);
          for (const w of warnings) this.log.warn({ address: h.listener.address }, `NBD TLS: ${w}`);
          h.server.setTlsCredentials({
            certificate: credentials.certPem,
            privateKey: credentials.keyPem,
            ca: credentials.caPem,
          });
          this.log.info({ address: h.listener.address }, `NBD TLS with ${key}`);
        })(),
      };
      h.tls = tls;
      tls.loaded.then(
        () => (tls.loading = false),
        () => {
          if (h.tls === tls) h.tls = undefined;
        },
      );
    }
    await h.tls?.loaded;
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
      else if (e.type === 'tls')
        this.log.info({ conn: e.conn }, `NBD client: ${e.protocol}, certificate ${e.client}`);
    };
    const server = new NbdServer({ onEvent });
    // A daemon that was killed leaves its socket file behind; the path is ours to reuse.
    if (spec.kind === 'unix') await rm(spec.path, { force: true });
    const listener = await server.listen(spec);
    this.log.info({ address: listener.address }, 'NBD server listening');
    const h: Hosted = { server, listener, sessions, tls: undefined, tlsExports: new Set() };
    this.hosted.set(keyOf(spec), h);
    return h;
  }
}
