// fabric_bw, the native libfabric msg/rma bandwidth tool bench:transport compares the fabric
// transport with: it builds, measures a positive byte count in both modes over the tcp provider on
// loopback (and the count is the receiver's / acknowledged one), refuses bad arguments and a
// mismatched peer with a clear message and a non-zero exit, and gives up on a missing client.
// No timing is asserted.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { FABRIC_HEADER, buildFabricBw } from '../../bench/native/build.js';
import { parseFabricBwLine, runFabricBw, runFabricBwRaw } from '../../bench/native/fabric-bw.js';
import { inCi, requirePeers } from '../support/peers.js';

const RUN_TIMEOUT_MS = 30_000;

/** The built binary, or null when this machine cannot build it (a failure in CI). */
function binary(t: TestContext): string | null {
  if (!requirePeers(t, 'gcc', 'gcc')) return null;
  if (!existsSync(FABRIC_HEADER)) {
    const message = `no ${FABRIC_HEADER}: apt-get install libfabric-dev`;
    if (inCi) throw new Error(`${message} (CI=true: a missing peer is a failure)`);
    t.skip(message);
    return null;
  }
  const r = buildFabricBw();
  if (!r.ok) throw new Error(r.error);
  return r.binary;
}

for (const [mode, comp] of [
  ['msg', 'fd'],
  ['rma', 'fd'],
  ['msg', 'spin'],
  ['rma', 'wait'],
] as const) {
  test(`fabric_bw ${mode} -c ${comp} over the tcp provider on loopback reports bytes, exit 0`, async (t) => {
    const bin = binary(t);
    if (bin === null) return;
    const r = await runFabricBw(bin, {
      mode,
      provider: 'tcp',
      sizeBytes: 65536,
      window: 16,
      seconds: 0.3,
      comp,
    });
    assert.equal(r.kind, 'measured', JSON.stringify(r));
    if (r.kind !== 'measured') return;
    assert.equal(r.mode, mode);
    assert.equal(r.provider, 'tcp');
    assert.equal(r.sizeBytes, 65536);
    assert.ok(r.messages > 0, `messages ${r.messages}`);
    assert.equal(r.bytes, r.messages * 65536);
    assert.ok(r.bytesPerSec > 0);
    assert.equal(r.countedBy, mode === 'msg' ? 'receiver' : 'sender');
  });
}

test('fabric_bw refuses bad arguments with a clear message and exit 2', async (t) => {
  const bin = binary(t);
  if (bin === null) return;
  const cases: [string[], RegExp][] = [
    [[], /missing role/],
    [['peer'], /unknown role 'peer'/],
    [['client', '-P', '5', '-s', '0'], /-s 0: expected an integer in \[1, /],
    [['client', '-P', '5', '-m', 'atomic'], /-m atomic: expected msg or rma/],
    [['client', '-P', '5', '-d', 'soon'], /-d soon: expected a number/],
    [['client', '-s', '4096'], /client needs -P PORT/],
    [['server', '-P', '70000'], /-P 70000: expected an integer in \[0, 65535\]/],
    [['server', '-x', '1'], /unknown option -x/],
    [['server', '-p', 'tcp"x'], /-p tcp"x: expected a provider name/],
    [['server', '-c', 'yield'], /-c yield: expected spin, wait or fd/],
  ];
  for (const [args, want] of cases) {
    const r = await runFabricBwRaw(bin, args, RUN_TIMEOUT_MS);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, want);
    assert.equal(r.stdout, '');
  }
});

test('fabric_bw: a provider libfabric lacks is a named fi_getinfo error, exit 1', async (t) => {
  const bin = binary(t);
  if (bin === null) return;
  const r = await runFabricBwRaw(bin, ['server', '-p', 'no-such-provider'], RUN_TIMEOUT_MS);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /fi_getinfo\(provider no-such-provider, FI_EP_MSG.*\): /);
});

test('fabric_bw server rejects a client of the other mode; both say why and exit 1', async (t) => {
  const bin = binary(t);
  if (bin === null) return;
  // runFabricBw never pairs two modes: drive both sides by hand.
  let client: ReturnType<typeof runFabricBwRaw> | undefined;
  const server = await runFabricBwRaw(bin, ['server', '-m', 'rma'], RUN_TIMEOUT_MS, (line) => {
    const l = parseFabricBwLine(line);
    if (l.kind === 'listening')
      client = runFabricBwRaw(bin, ['client', '-m', 'msg', '-P', String(l.port)], RUN_TIMEOUT_MS);
  });
  assert.ok(client !== undefined, `server never listened: ${server.stderr}`);
  const c = await client;
  assert.equal(server.code, 1);
  assert.match(server.stderr, /rejected the client: client runs mode 1, server rma/);
  assert.equal(c.code, 1);
  assert.match(c.stderr, /refused or rejected by the server/);
});

test('fabric_bw server with no client times out with a message, exit 1', async (t) => {
  const bin = binary(t);
  if (bin === null) return;
  const r = await runFabricBwRaw(bin, ['server', '-T', '0.2'], RUN_TIMEOUT_MS);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /timed out waiting for a connection request/);
  assert.equal(parseFabricBwLine(r.stdout.split('\n')[0] ?? '').kind, 'listening');
});

test('parseFabricBwLine accepts the tool lines and rejects anything else', () => {
  assert.deepEqual(
    parseFabricBwLine('{"listening":{"address":"127.0.0.1","port":4242,"provider":"tcp"}}'),
    { kind: 'listening', port: 4242 },
  );
  const ok =
    '{"side":"client","mode":"rma","provider":"tcp","sizeBytes":4096,"window":64,"seconds":1.5,' +
    '"messages":10,"bytes":40960,"bytesPerSec":27306.7,"countedBy":"sender"}';
  assert.deepEqual(parseFabricBwLine(ok), {
    kind: 'measured',
    mode: 'rma',
    provider: 'tcp',
    sizeBytes: 4096,
    window: 64,
    seconds: 1.5,
    messages: 10,
    bytes: 40960,
    bytesPerSec: 27306.7,
    countedBy: 'sender',
  });
  assert.deepEqual(parseFabricBwLine('{"mode":"rma","unsupported":"no FI_RMA"}'), {
    kind: 'unsupported',
    mode: 'rma',
    reason: 'no FI_RMA',
  });
  for (const bad of [
    '',
    'fabric_bw: oops',
    '[]',
    '{"listening":{"port":0}}',
    '{"listening":{"port":"80"}}',
    '{"mode":"atomic"}',
    ok.replace('"sender"', '"nobody"'),
    ok.replace('"bytes":40960', '"bytes":-1'),
    ok.replace('"seconds":1.5', '"seconds":"1.5"'),
  ])
    assert.equal(parseFabricBwLine(bad).kind, 'invalid', bad);
});
