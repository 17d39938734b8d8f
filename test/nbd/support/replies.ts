// Builds the handshake a fuzzed client sends before its requests, and splits the server's
// output back into replies so properties can count them.
import assert from 'node:assert/strict';
import * as P from '../../../src/nbd/protocol.js';

export function preface(structured: boolean, name: string): Buffer {
  const flags = Buffer.alloc(4);
  flags.writeUInt32BE(P.NBD_FLAG_C_FIXED_NEWSTYLE | P.NBD_FLAG_C_NO_ZEROES, 0);
  if (!structured)
    return Buffer.concat([flags, P.encodeOption(P.NBD_OPT_EXPORT_NAME, Buffer.from(name))]);
  const one = Buffer.alloc(4);
  one.writeUInt32BE(1, 0);
  const meta = Buffer.concat([P.encodeString32(name), one, P.encodeString32('base:allocation')]);
  const go = Buffer.concat([P.encodeString32(name), Buffer.alloc(2)]);
  return Buffer.concat([
    flags,
    P.encodeOption(P.NBD_OPT_STRUCTURED_REPLY),
    P.encodeOption(P.NBD_OPT_SET_META_CONTEXT, meta),
    P.encodeOption(P.NBD_OPT_GO, go),
  ]);
}

/** Splits server output into transmission replies: handle -> [errno, data bytes] list. */
export function parseReplies(
  out: Buffer,
  structured: boolean,
  reads: Map<number, number>,
): Map<number, [number, number][]> {
  let pos = 0;
  if (structured) {
    // Skip option replies up to GO's ACK.
    for (;;) {
      const opt = out.readUInt32BE(pos + 8);
      const type = out.readUInt32BE(pos + 12);
      pos += 20 + out.readUInt32BE(pos + 16);
      if (opt === P.NBD_OPT_GO && type === P.NBD_REP_ACK) break;
    }
  } else {
    pos = 10;
  }
  const replies = new Map<number, [number, number][]>();
  const add = (h: number, v: [number, number]): void => {
    replies.set(h, [...(replies.get(h) ?? []), v]);
  };
  while (pos < out.length) {
    const magic = out.readUInt32BE(pos);
    const handle = out.readUInt32BE(pos + 12);
    assert.equal(out.readUInt32BE(pos + 8), 0xabc, 'handle echoed');
    if (!structured) {
      assert.equal(magic, P.NBD_MAGIC_SIMPLE_REPLY);
      const errno = out.readUInt32BE(pos + 4);
      const data = errno === 0 ? (reads.get(handle) ?? 0) : 0;
      add(handle, [errno, data]);
      pos += 16 + data;
    } else {
      assert.equal(magic, P.NBD_MAGIC_STRUCTURED_REPLY);
      assert.equal(
        out.readUInt16BE(pos + 4),
        P.NBD_REPLY_FLAG_DONE,
        'one chunk per reply, marked DONE',
      );
      const type = out.readUInt16BE(pos + 6);
      const len = out.readUInt32BE(pos + 16);
      const errno = type === P.NBD_REPLY_TYPE_ERROR ? out.readUInt32BE(pos + 20) : 0;
      add(handle, [errno, type === P.NBD_REPLY_TYPE_OFFSET_DATA ? len - 8 : 0]);
      pos += 20 + len;
    }
  }
  assert.equal(pos, out.length, 'replies end on a frame boundary');
  return replies;
}
