// Runs drbd-utils' drbdmeta (the oracle for our v09 metadata) on plain files and parses its
// dump-md output into values the tests compare with ours.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { peerEnv } from './peers.js';

const run = promisify(execFile);

/** `drbdmeta --force 0 v09 FILE WHERE ARGS...`; WHERE is internal, flex-external or an index. */
export async function drbdmeta(file: string, where: string, ...args: string[]): Promise<string> {
  const { stdout } = await run('drbdmeta', ['--force', '0', 'v09', file, where, ...args], {
    env: peerEnv(),
    maxBuffer: 64 * 1024 * 1024,
  });
  return stdout;
}

export interface DumpPeer {
  bitmapIndex: number;
  bitmapUuid: bigint;
  bitmapDagtag: bigint;
  flags: number;
}

export interface Dump {
  maxPeers: number;
  mdSizeSect: number;
  mdOffset: number;
  alOffset: number;
  bmOffset: number;
  nodeId: number;
  currentUuid: bigint;
  flags: number;
  peers: DumpPeer[];
  history: bigint[];
  alExtents: number;
  laSizeSect: number;
  bmBytePerBit: number;
  deviceUuid: bigint;
  laPeerMaxBioSize: number;
  alStripes: number;
  alStripeSize4k: number;
  bmBytes: number;
  /** 32-bit words per bitmap slot, in order. */
  bitmaps: number[][];
  bitsSet: number;
}

function field(text: string, re: RegExp): string {
  const m = re.exec(text);
  if (!m?.[1]) throw new Error(`dump-md output lacks ${String(re)}`);
  return m[1];
}

export function parseDump(text: string): Dump {
  const num = (re: RegExp): number => Number(field(text, re));
  const big = (re: RegExp): bigint => BigInt(field(text, re));
  const peers: DumpPeer[] = [];
  for (const m of text.matchAll(/^peer\[(\d+)\] \{([^}]*)\}/gm)) {
    const body = m[2] ?? '';
    peers[Number(m[1])] = {
      bitmapIndex: Number(field(body, /bitmap-index (-?\d+);/)),
      bitmapUuid: BigInt(field(body, /bitmap-uuid (0x[0-9A-F]+);/)),
      bitmapDagtag: BigInt(field(body, /bitmap-dagtag (0x[0-9A-F]+);/)),
      flags: Number(field(body, /flags (0x[0-9A-F]+);/)),
    };
  }
  const historyBody = field(text, /^history-uuids \{([^}]*)\}/m);
  const history = [...historyBody.matchAll(/0x[0-9A-F]+/g)].map((h) => BigInt(h[0]));
  const bitmaps: number[][] = [];
  for (const m of text.matchAll(/^bitmap\[(\d+)\] \{([^}]*)\}/gm)) {
    const words: number[] = [];
    const body = (m[2] ?? '')
      .split('\n')
      .filter((l) => !l.trim().startsWith('#'))
      .join(' ');
    for (const t of body.matchAll(/(?:(\d+) times )?0x([0-9A-F]{8})([0-9A-F]{8});/g)) {
      const times = t[1] ? Number(t[1]) : 1;
      const hi = parseInt(t[2] ?? '0', 16);
      const lo = parseInt(t[3] ?? '0', 16);
      for (let i = 0; i < times; i++) words.push(lo, hi);
    }
    bitmaps[Number(m[1])] = words;
  }
  return {
    maxPeers: num(/^max-peers (\d+);/m),
    mdSizeSect: num(/^# md_size_sect (\d+)/m),
    mdOffset: num(/^# md_offset (\d+)/m),
    alOffset: num(/^# al_offset (\d+)/m),
    bmOffset: num(/^# bm_offset (\d+)/m),
    nodeId: num(/^node-id (-?\d+);/m),
    currentUuid: big(/^current-uuid (0x[0-9A-F]+);/m),
    flags: num(/^flags (0x[0-9A-F]+);/m),
    peers,
    history,
    alExtents: num(/^# al-extents (\d+);/m),
    laSizeSect: num(/^la-size-sect (\d+);/m),
    bmBytePerBit: num(/^bm-byte-per-bit (\d+);/m),
    deviceUuid: big(/^device-uuid (0x[0-9A-F]+);/m),
    laPeerMaxBioSize: num(/^la-peer-max-bio-size (\d+);/m),
    alStripes: num(/^al-stripes (\d+);/m),
    alStripeSize4k: num(/^al-stripe-size-4k (\d+);/m),
    bmBytes: num(/^# bm-bytes (\d+);/m),
    bitmaps,
    bitsSet: num(/^# bits-set (\d+);/m),
  };
}
