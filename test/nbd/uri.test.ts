// Device URIs round-trip between the config grammar, listener specs and what clients are given.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatNbdUri, parseNbdUri } from '../../src/nbd/uri.js';

test('nbd[s]:// and nbd[s]+unix:// parse to listener specs and format back', () => {
  const cases = [
    [
      'nbd://127.0.0.1:10900/r0',
      { listener: { kind: 'tcp', host: '127.0.0.1', port: 10900 }, exportName: 'r0', tls: false },
    ],
    [
      'nbds://127.0.0.1:10900/r0',
      { listener: { kind: 'tcp', host: '127.0.0.1', port: 10900 }, exportName: 'r0', tls: true },
    ],
    [
      'nbd://[::1]:10901/my%20vol',
      { listener: { kind: 'tcp', host: '::1', port: 10901 }, exportName: 'my vol', tls: false },
    ],
    [
      'nbd+unix:///r0?socket=/run/tandem/r0.sock',
      { listener: { kind: 'unix', path: '/run/tandem/r0.sock' }, exportName: 'r0', tls: false },
    ],
    [
      'nbds+unix:///r0?socket=/run/tandem/r0.sock',
      { listener: { kind: 'unix', path: '/run/tandem/r0.sock' }, exportName: 'r0', tls: true },
    ],
  ] as const;
  for (const [text, want] of cases) {
    const r = parseNbdUri(text);
    assert.ok(r.ok, text);
    assert.deepEqual(r.value, want);
    const again = parseNbdUri(formatNbdUri(r.value.listener, r.value.exportName, r.value.tls));
    assert.ok(again.ok);
    assert.deepEqual(again.value, want);
  }
});

test('bad URIs are refused with a reason, never thrown', () => {
  for (const bad of [
    'http://x/r0',
    'nbd://host:99999/r0',
    'nbd+unix:///r0',
    'nbd+unix:///r0?sock=/x',
    'nbd://[zz]/r0',
    '',
    'nbd://h/%zz',
    'nbds+unix:///r0',
    'nbdss://h/r0',
  ]) {
    const r = parseNbdUri(bad);
    assert.equal(r.ok, false, bad);
    if (!r.ok) assert.ok(r.error.length > 0);
  }
});
