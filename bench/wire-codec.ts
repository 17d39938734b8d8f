// bench:codec — ns per encode+decode of the hot peer packets, generic table-driven codec vs the
// hand-written one (src/replication/wire.ts): a 4 KiB Data (two slices, as an NBD socket hands
// them over) and a WriteAck. A few seconds of one core; numbers on a shared VM are noisy and
// nothing here asserts speed. BENCH_CODEC_MS: milliseconds per measurement (default 500).
import {
  decodePacket,
  decodePacketGeneric,
  encodePacket,
  encodePacketGeneric,
} from '../src/replication/wire.js';
import type { Packet } from '../src/replication/types.js';

const MS = Number(process.env['BENCH_CODEC_MS'] ?? 500);
if (!Number.isFinite(MS) || MS <= 0) throw new Error(`BENCH_CODEC_MS must be > 0, got ${MS}`);

const payload = Buffer.alloc(4096, 0x5a);
const samples: Record<string, Packet> = {
  'Data 4 KiB': {
    kind: 'Data',
    seq: 123_456,
    epoch: 789,
    op: 'write',
    offsetBytes: 1 << 30,
    lengthBytes: 4096,
    data: [payload.subarray(0, 1448), payload.subarray(1448)],
    fua: false,
    ack: 'write',
    peerSeq: 42,
  },
  WriteAck: { kind: 'WriteAck', seq: 123_456 },
};

type Codec = {
  readonly enc: (p: Packet) => Buffer[];
  readonly dec: typeof decodePacket;
};
const codecs: Record<string, Codec> = {
  generic: { enc: encodePacketGeneric, dec: decodePacketGeneric },
  fast: { enc: encodePacket, dec: decodePacket },
};

let sink = 0;

/** ns per encode + decode; the transport hands the receiver one frame, so decode sees one. */
function measure(c: Codec, p: Packet): number {
  const frame = Buffer.concat(c.enc(p));
  const once = (): void => {
    const parts = c.enc(p);
    const d = c.dec(frame);
    sink += parts.length + (d.ok ? 1 : 0);
  };
  for (let i = 0; i < 50_000; i++) once(); // warm up to the optimizing tier
  let n = 0;
  const start = process.hrtime.bigint();
  const until = start + BigInt(MS) * 1_000_000n;
  let now = start;
  while (now < until) {
    for (let i = 0; i < 1000; i++) once();
    n += 1000;
    now = process.hrtime.bigint();
  }
  return Number(now - start) / n;
}

console.log('hot-packet codec, ns per encode+decode (median of 5)');
console.log('packet        generic     fast  speedup');
for (const [name, p] of Object.entries(samples)) {
  // Alternated, so a busy machine slows both alike.
  const runs: Record<string, number[]> = { generic: [], fast: [] };
  for (let r = 0; r < 5; r++)
    for (const [cname, c] of Object.entries(codecs)) runs[cname]?.push(measure(c, p));
  const median = (l: number[] | undefined): number => l?.sort((a, b) => a - b)[2] ?? NaN;
  const g = median(runs['generic']);
  const f = median(runs['fast']);
  console.log(
    `${name.padEnd(12)} ${g.toFixed(0).padStart(8)} ${f.toFixed(0).padStart(8)} ${(g / f).toFixed(1).padStart(7)}x`,
  );
}
if (sink === 0) console.log('(nothing decoded)');
