#!/usr/bin/env node
// Reproduces the pause of libfabric 1.17's `sockets` provider in its own progress (PROGRESS=auto,
// the default here; the transport itself runs sockets in manual progress, docs/TRANSPORTS.md,
// "The sockets provider"): fabric channel pairs on 127.0.0.1, both sides sending 2000 interleaved messages
// right after connecting, round after round. When nothing arrives for 2.5 s (PAUSE_MS) it prints both
// channels' counters and, with DUMP=1, attaches gdb to itself to print the provider's progress
// engines and completion queues (needs a libfabric built with symbols: LD_LIBRARY_PATH=...).
// Run a few at once, under CPU load, after `npm run build`. Not a test: it asserts nothing.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fabricTransport } from '../dist/src/transport/fabric/index.js';
import { systemClock } from '../dist/src/platform/clock.js';

const provider = process.env.PROVIDER ?? 'sockets';
// PROGRESS=auto|manual (fabric-progress); manual is what the transport uses for sockets.
const progress = process.env.PROGRESS ?? 'auto';
const ep = (port) => ({ transport: 'fabric', family: 'ipv4', address: '127.0.0.1', port });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const GDB_SCRIPT = `
import gdb
def cq(c, name):
    c = c.dereference(); rb = c['cq_rbfd']['rb']
    print("   %s cq ring rcnt=%d wcnt=%d fdrcnt=%d fdwcnt=%d" % (name, int(rb['rcnt']), int(rb['wcnt']),
          int(c['cq_rbfd']['fdrcnt']), int(c['cq_rbfd']['fdwcnt'])))
def each(head, typ, field):
    off = int(gdb.parse_and_eval("(unsigned long)&((%s*)0)->%s" % (typ, field)))
    e = head['next']
    while e != head.address:
        yield gdb.Value(int(e) - off).cast(gdb.lookup_type(typ).pointer()); e = e['next']
seen = set()
for th in gdb.selected_inferior().threads():
    th.switch(); f = gdb.newest_frame()
    while f is not None:
        if f.name() == 'sock_pe_progress_thread':
            pe = f.read_var('pe')
            if int(pe) not in seen:
                seen.add(int(pe))
                print("PE %x signal wcnt=%d rcnt=%d free=%d in=%s" % (int(pe), int(pe['wcnt']), int(pe['rcnt']),
                      int(pe['num_free_entries']), gdb.newest_frame().name()))
                for tx in each(pe['tx_list'], 'struct sock_tx_ctx', 'pe_entry'):
                    print("  tx ring rcnt=%d wcnt=%d entries=%s" % (int(tx['rb']['rcnt']), int(tx['rb']['wcnt']),
                          tx['pe_entry_list']['next'] != tx['pe_entry_list'].address))
                    cq(tx['comp']['send_cq'], 'send')
                for rx in each(pe['rx_list'], 'struct sock_rx_ctx', 'pe_entry'):
                    print("  rx buffered=%s entries=%s" % (rx['rx_buffered_list']['next'] != rx['rx_buffered_list'].address,
                          rx['pe_entry_list']['next'] != rx['pe_entry_list'].address))
                    cq(rx['comp']['recv_cq'], 'recv')
            break
        f = f.older()
`;

function dump(name, ch) {
  const s = ch.stats();
  console.log(
    name,
    JSON.stringify({
      native: ch.conn.stats(),
      credits: s.credits,
      data: s.data,
      control: s.control,
    }),
  );
}

// KEEP=1 leaves every round's connections open (no teardown while later rounds run).
const kept = [];
for (let round = 0; round < Number(process.env.ROUNDS ?? 400); round++) {
  if (round % 10 === 0) console.error(`round ${round}`);
  const ta = fabricTransport({ provider, progress })({ clock: systemClock });
  const tb = fabricTransport({ provider, progress })({ clock: systemClock });
  let accept;
  const accepted = new Promise((r) => (accept = r));
  const l = await tb.listen(ep(0), (ch) => accept(ch));
  const a = await ta.connect({ peer: l.endpoint }, { signal: AbortSignal.timeout(10_000) });
  const b = await accepted;
  let got = 0;
  a.setReceiver(() => got++);
  b.setReceiver(() => got++);
  for (let i = 0; i < 2000; i++) {
    a.send(i % 3 === 0 ? 'control' : 'data', 7, [Buffer.alloc(4), Buffer.alloc(i % 97)]);
    b.send(i % 2 === 0 ? 'control' : 'data', 8, [Buffer.alloc(4)]);
  }
  let last = -1;
  let since = performance.now();
  while (got < 4000) {
    await sleep(20);
    if (got !== last) [last, since] = [got, performance.now()];
    if (performance.now() - since < Number(process.env.PAUSE_MS ?? 2500)) continue;
    console.log(`pause in round ${round}: ${got} of 4000 messages arrived (pid ${process.pid})`);
    dump('a', a);
    dump('b', b);
    if (process.env.DUMP === '1') {
      const py = join(tmpdir(), `sockets-pause-${process.pid}.py`);
      writeFileSync(py, GDB_SCRIPT);
      console.log(
        execFileSync('gdb', ['-p', String(process.pid), '-batch', '-x', py], { encoding: 'utf8' }),
      );
    }
    process.exit(3);
  }
  if (process.env.KEEP === '1') {
    kept.push([a, b, l, ta, tb]);
    continue;
  }
  a.destroy();
  b.destroy();
  await l.close();
  await ta.close();
  await tb.close();
}
console.log('no pause');
