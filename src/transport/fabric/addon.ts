// Loads the native libfabric binding (native/, built on npm install when libfabric-dev is
// present) and types it. A missing addon or provider is an operating error whose message says
// exactly what to install; nothing here throws at import time.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { Result } from '../../util/result.js';
import { err, ok } from '../../util/result.js';

export interface FabricInfo {
  readonly provider: string;
  readonly fabric: string;
  readonly domain: string;
  readonly caps: string;
}

export interface NativeConnectionOptions {
  readonly provider?: string;
  readonly host?: string;
  readonly port?: string;
  readonly bufferBytes: number;
  readonly recvBuffers: number;
  readonly sendBuffers: number;
  readonly zcopyThreshold: number;
  readonly recvPollUs: number;
  /** 'manual': the addon drives the provider by polling its queues (`fabric-progress`). */
  readonly progress: 'auto' | 'manual';
}

export interface NativeConnectionStats {
  readonly zeroCopyBytes: number;
  readonly copiedBytes: number;
  readonly sentMessages: number;
  readonly recvMessages: number;
  readonly recvBytes: number;
  readonly registrations: number;
  readonly registrationCacheHits: number;
  readonly busyPolls: number;
  /** Whether the addon drives the provider's progress by polling ('manual'). */
  readonly progress: 'auto' | 'manual';
  readonly sendBuffersFree: number;
}

/**
 * Events of a connection: 'connected' (the peer's connection data), 'recv' (one message, a copy
 * out of a receive buffer that is already reposted), 'sent' (the token given to send; its
 * Buffers are released), 'shutdown' (the peer disconnected), 'error' (message, code, where:
 * 'send' | 'receive' | 'queue'; the connection is closed).
 */
export type NativeConnectionEvent =
  | ['connected', Buffer]
  | ['recv', Buffer]
  | ['sent', number]
  | ['shutdown']
  | ['error', string, string, string];

export interface NativeConnection {
  readonly maxConnData: number;
  readonly bufferBytes: number;
  readonly provider: string;
  /**
   * Sends header + payload[offset, offset+length) as one message. Payloads at or above the
   * zero-copy threshold are sent from `payload` itself (registered; kept referenced until
   * 'sent'); smaller ones are copied. false: no send slot free or the queue is full, retry after
   * a 'sent' event. Throws when not connected or when the message exceeds bufferBytes.
   */
  send(
    header: Buffer,
    payload: Buffer | null,
    offset: number,
    length: number,
    token: number,
  ): boolean;
  close(): void;
  stats(): NativeConnectionStats;
}

export type NativeListenerEvent = ['connreq', number, Buffer];

export interface NativeListener {
  readonly port: number;
  readonly provider: string;
  readonly maxConnData: number;
  accept(
    id: number,
    opts: NativeConnectionOptions,
    connData: Buffer,
    onEvent: (...e: NativeConnectionEvent) => void,
  ): NativeConnection;
  reject(id: number): void;
  close(): void;
}

/**
 * The addon build this code needs (native/src/addon.cc exports it); an older build in
 * native/build, left from before a pull, is refused with "rebuild".
 */
export const FABRIC_BINDING_VERSION = 2;

export interface FabricAddon {
  /** Absent in builds older than binding version 2. */
  readonly bindingVersion?: number;
  version(): string;
  getinfo(o: { provider?: string; host?: string; port?: string; source?: boolean }): FabricInfo[];
  connect(
    opts: NativeConnectionOptions & { host: string; port: string },
    connData: Buffer,
    onEvent: (...e: NativeConnectionEvent) => void,
  ): NativeConnection;
  listen(
    opts: { provider?: string; host: string; port: string },
    onEvent: (...e: NativeListenerEvent) => void,
  ): NativeListener;
}

export const ADDON_PATH = fileURLToPath(
  new URL('../../../../native/build/Release/tandem_fabric.node', import.meta.url),
);

let cached: Result<FabricAddon, string> | null = null;

/** Loads the addon once; the error names what to install. */
export function loadFabricAddon(path = ADDON_PATH): Result<FabricAddon, string> {
  if (cached !== null && path === ADDON_PATH) return cached;
  let r: Result<FabricAddon, string>;
  if (!existsSync(path)) {
    r = err(
      `the fabric transport's native addon is not built (${path}): ` +
        'install libfabric-dev (apt-get install libfabric-dev), then run npm install (or npm rebuild)',
    );
  } else {
    try {
      const require = createRequire(import.meta.url);
      const addon = require(path) as FabricAddon;
      const built = addon.bindingVersion ?? 1;
      r =
        built === FABRIC_BINDING_VERSION
          ? ok(addon)
          : err(
              `the fabric transport's native addon (${path}) is binding version ${built}, this ` +
                `code needs ${FABRIC_BINDING_VERSION}: rebuild it with npm rebuild (or npm ci)`,
            );
    } catch (e) {
      r = err(
        `the fabric transport's native addon failed to load (${(e as Error).message}): ` +
          'install libfabric1 (apt-get install libfabric-dev) and rebuild with npm rebuild',
      );
    }
  }
  if (path === ADDON_PATH) cached = r;
  return r;
}

/** Package that brings a provider, for "install X" messages. */
export function providerPackage(provider: string): string {
  switch (provider) {
    case 'verbs':
      return 'rdma-core ibverbs-providers librdmacm1 (and an RDMA device: an HCA, or rxe: rdma link add rxe0 type rxe netdev IF)';
    default:
      return 'libfabric1';
  }
}
