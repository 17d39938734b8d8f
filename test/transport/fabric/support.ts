// Shared by the fabric transport tests: whether the addon and a libfabric provider are here.
import { loadFabricAddon } from '../../../src/transport/fabric/addon.js';

/** null when `provider` can listen on `host`; otherwise what is missing and how to install it. */
export function fabricAvailable(provider: string, host = '127.0.0.1'): string | null {
  const addon = loadFabricAddon();
  if (!addon.ok) return addon.error;
  if (addon.value.getinfo({ provider, host, port: '0', source: true }).length === 0) {
    return `libfabric provider ${provider} missing: apt-get install libfabric1`;
  }
  return null;
}
