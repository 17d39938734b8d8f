// TLS replication end to end (drbd.conf `net { tls yes; }`), with certificates made by the real
// openssl CLI: two tandemd, each with its own certificate, connect over TLS through relays that
// record every byte, run the initial sync and replicate a write; the written block's pattern
// never appears in the recorded bytes (it does on bob's disk). Then bob comes back with a
// certificate from another CA, with an expired one, without TLS, and with an unreadable key:
// each is refused with a clear reason on BOTH nodes (status lastError), and a good bob
// reconnects on the usual retry. Pins: plaintext replication, a silent or one-sided refusal,
// a plaintext fallback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { requirePeers } from '../support/peers.js';
import { CertDir, type PemFiles, type TestCa } from '../support/tls-certs.js';
import {
  MIB,
  nbdWrite,
  peerStatus,
  readDisk,
  waitConnected,
  waitInSync,
  waitUntil,
  withPair,
} from './support.js';

/** A TCP relay to a target set later, keeping every byte it forwards (both ways). */
class RecordingRelay {
  target = 0;
  port = 0;
  private seen: Buffer[] = [];
  private readonly socks = new Set<net.Socket>();
  private readonly server = net.createServer((inbound) => {
    const outbound = net.connect({ host: '127.0.0.1', port: this.target });
    for (const [from, to] of [
      [inbound, outbound],
      [outbound, inbound],
    ] as const) {
      this.socks.add(from);
      from.on('data', (b: Buffer) => {
        this.seen.push(Buffer.from(b));
        if (!to.write(b)) from.pause();
      });
      to.on('drain', () => from.resume());
      from.on('error', () => to.destroy());
      from.on('close', () => {
        this.socks.delete(from);
        to.destroy();
      });
    }
  });

  async start(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    const a = this.server.address();
    this.port = typeof a === 'object' && a !== null ? a.port : 0;
    return this;
  }

  bytes(): Buffer {
    this.seen = [Buffer.concat(this.seen)];
    return this.seen[0] ?? Buffer.alloc(0);
  }

  async stop(): Promise<void> {
    for (const s of this.socks) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

const PORT_OF = (node: string): RegExp =>
  new RegExp(`(on ${node} \\{\\n\\s+node-id \\d+;\\n\\s+address ipv4 127\\.0\\.0\\.1:)(\\d+);`);

function tlsLines(leaf: PemFiles | null, ca: TestCa): string {
  if (leaf === null) return '';
  return [
    '    tls yes;',
    `    tls-certificate ${leaf.certificate};`,
    `    tls-privkey ${leaf.privkey};`,
    `    tls-ca ${ca.certificate};`,
  ].join('\n');
}

/** A node's own configuration: its TLS files, and its peer reached through `relay`. */
function nodeConfig(text: string, peer: string, relay: RecordingRelay, tls: string): string {
  const m = PORT_OF(peer).exec(text);
  assert.ok(m, `the generated configuration has ${peer}'s address`);
  relay.target = Number(m[2]);
  return text
    .replace(PORT_OF(peer), `$1${relay.port};`)
    .replace('    protocol C;\n', `    protocol C;\n    connect-int 1;\n${tls}\n`);
}

async function lastError(c: LocalCluster, node: string, re: RegExp, what: string): Promise<string> {
  let seen = '';
  await waitUntil(
    async () => {
      seen = (await peerStatus(c, node)).lastError ?? '';
      return re.test(seen);
    },
    `${node}: last error ${what} (last seen: ${seen})`,
    30_000,
  );
  return seen;
}

test('TLS: a pair replicates encrypted; other CA, expired, plaintext and a bad key are refused on both sides', async (t) => {
  if (!requirePeers(t, 'openssl', 'openssl')) return;
  const certs = await CertDir.create();
  const toBob = await new RecordingRelay().start();
  const toAlice = await new RecordingRelay().start();
  try {
    const ca = await certs.ca('tandem-ca');
    const other = await certs.ca('other-ca');
    const [alice, bob, mallory, expired] = await Promise.all([
      certs.leaf(ca, 'alice'),
      certs.leaf(ca, 'bob'),
      certs.leaf(other, 'bob'),
      certs.leaf(ca, 'bob', { expired: true }),
    ]);
    let shared = '';
    const configFor = (node: string, text: string): string => {
      shared = text;
      return node === 'alice'
        ? nodeConfig(text, 'bob', toBob, tlsLines(alice, ca))
        : nodeConfig(text, 'alice', toAlice, tlsLines(bob, ca));
    };
    await withPair({ diskBytes: 16 * MIB, configFor }, async (c) => {
      for (const n of ['alice', 'bob']) {
        const p = await peerStatus(c, n);
        assert.match(p.tls ?? '', /^TLSv1\.3 /, `${n} shows its TLS session`);
      }
      // Initial sync, then one write, all over TLS through the relays.
      await c.tandem('alice', 'primary', '--force', c.resource);
      await waitInSync(c, 'alice');
      await waitInSync(c, 'bob');
      const marker = Buffer.from(`tandem-tls-${randomBytes(12).toString('hex')}`);
      const block = Buffer.alloc(64 * 1024);
      for (let off = 0; off < block.length; off += marker.length) marker.copy(block, off);
      const at = 4 * MIB;
      await nbdWrite(c, 'alice', [[at, block]]);
      assert.ok((await readDisk(c, 'bob', at, block.length)).equals(block), 'bob holds the write');
      const wire = Buffer.concat([toBob.bytes(), toAlice.bytes()]);
      t.diagnostic(`the relays carried ${wire.length} bytes`);
      assert.ok(wire.length > 16 * MIB, 'the initial sync went through the relays');
      assert.ok(!wire.includes(marker), 'the written pattern never crossed the wire in clear');
      assert.ok(!wire.includes(Buffer.from('tandem-tls-')), 'nor any part of it');
      const bobWith = async (tls: string, up = true): Promise<void> => {
        await c.stop('bob');
        await writeFile(c.node('bob').configPath, nodeConfig(shared, 'alice', toAlice, tls));
        await c.start('bob');
        if (up) await c.tandem('bob', 'up', c.resource);
      };
      const cases: [string, string, RegExp, RegExp][] = [
        [
          'a certificate from another CA',
          tlsLines(mallory, ca),
          /the peer's certificate is refused: the certificate is not signed by a CA in tls-ca/,
          /the peer rejected this node's certificate: the certificate is not signed by a CA in tls-ca/,
        ],
        [
          'an expired certificate',
          tlsLines(expired, ca),
          /the peer's certificate is refused: the certificate has expired/,
          /the peer rejected this node's certificate: the certificate has expired/,
        ],
        [
          'no TLS',
          '',
          /connects without TLS but this node requires it|the peer does not speak TLS/,
          /the peer requires TLS \(net \{ tls yes; \} there\) and this node has tls no/,
        ],
      ];
      for (const [what, tls, atAlice, atBob] of cases) {
        await bobWith(tls);
        t.diagnostic(`${what}: alice says: ${await lastError(c, 'alice', atAlice, what)}`);
        t.diagnostic(`${what}: bob says: ${await lastError(c, 'bob', atBob, what)}`);
        assert.notEqual((await peerStatus(c, 'alice')).connection, 'Connected');
      }

      // A key file that cannot be read: tandemd names it and does not start.
      await c.stop('bob');
      const missing = `${bob.privkey}.missing`;
      await writeFile(
        c.node('bob').configPath,
        nodeConfig(shared, 'alice', toAlice, tlsLines({ ...bob, privkey: missing }, ca)),
      );
      await assert.rejects(c.start('bob'), (e: Error) => {
        assert.match(e.message, new RegExp(`tls-privkey ${missing}: cannot read it`));
        return true;
      });

      // The right certificate again: the retry connects and bob catches up.
      await bobWith(tlsLines(bob, ca));
      await waitConnected(c, 'bob');
      await waitConnected(c, 'alice');
      await waitInSync(c, 'bob');
      assert.equal((await peerStatus(c, 'alice')).lastError, undefined);
    });
  } finally {
    await toBob.stop();
    await toAlice.stop();
    await certs.destroy();
  }
});
