// The NBD export compliance suite against the replicated backend: a real tandemd pair on
// loopback (protocol C), the suite talking to the Primary's export. "Stable" is the peer's
// backing file: what survives the loss of the Primary, which is what FUA, FLUSH and the
// multi-connection FLUSH rule promise for a replicated device.
import { open } from 'node:fs/promises';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { nbdExportSuite } from '../compliance/nbd-export.suite.js';
import { MIB, skipInitialSync, startPair, status } from './support.js';

nbdExportSuite('the replicated Resource in tandemd (protocol C, two nodes)', async () => {
  const c: LocalCluster = await startPair({ diskBytes: 64 * MIB });
  try {
    await skipInitialSync(c, 'alice');
    const sizeBytes = (await status(c, 'alice')).sizeBytes;
    return {
      listener: { kind: 'unix', path: c.node('alice').nbdSocket },
      exportName: c.resource,
      sizeBytes,
      stable: async (off, len) => {
        const fh = await open(c.node('bob').diskPath, 'r');
        try {
          const b = Buffer.alloc(len);
          await fh.read(b, 0, len, off);
          return b;
        } finally {
          await fh.close();
        }
      },
      close: () => c.destroy(),
    };
  } catch (e) {
    await c.destroy();
    throw e;
  }
});
