// How V8 collects garbage in a process that moves I/O through Buffers. tandemd's live heap is
// small (8-20 MB) while every request allocates Buffers (socket reads, payloads) that are
// external memory. After any full GC V8 sets the old generation's limit only ~12 MB above the
// live heap, and external memory allocated since that GC counts against it: at a few hundred
// MB/s the slack is gone within milliseconds, so V8 marks and compacts the whole heap again,
// about every 100 ms, for as long as the I/O runs (docs/PERFORMANCE.md). With a growing factor
// of 6 the slack is large enough that a cheap scavenge (V8 starts one under external-memory
// pressure) frees the short-lived Buffers first. Cost: tens of MB more heap before a full GC.
import { setFlagsFromString } from 'node:v8';
import { HEAP_GROWING_PERCENT } from '../limits.js';

let tuned = false;

/**
 * Applies the heap growing factor for I/O-heavy processes (tandemd, the standalone export).
 * Read by V8 each time it sets a new limit, so it holds from the next GC on; call it once, early.
 */
export function tuneHeapForIo(): void {
  if (tuned) return;
  tuned = true;
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
}
