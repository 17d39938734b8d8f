// Request validation shared by every BlockStore: whole sectors, inside the store, safe integers.
// A request that fails here can never succeed, so it is an InvalidRequestError, not a disk error.
import { SECTOR_BYTES } from '../limits.js';
import { InvalidRequestError } from '../util/errors.js';

export function checkRange(
  storeName: string,
  sizeBytes: number,
  offsetBytes: number,
  lengthBytes: number,
): void {
  if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0) {
    throw new InvalidRequestError(`${storeName}: offset ${offsetBytes} is not a byte offset`);
  }
  if (!Number.isSafeInteger(lengthBytes) || lengthBytes < 0) {
    throw new InvalidRequestError(`${storeName}: length ${lengthBytes} is not a byte length`);
  }
  if (offsetBytes % SECTOR_BYTES !== 0 || lengthBytes % SECTOR_BYTES !== 0) {
    throw new InvalidRequestError(
      `${storeName}: offset ${offsetBytes} and length ${lengthBytes} must be multiples of ${SECTOR_BYTES} bytes`,
    );
  }
  if (offsetBytes + lengthBytes > sizeBytes) {
    throw new InvalidRequestError(
      `${storeName}: range ${offsetBytes}+${lengthBytes} ends beyond the store's ${sizeBytes} bytes`,
    );
  }
}

export function totalLength(data: Uint8Array | readonly Uint8Array[]): number {
  if (data instanceof Uint8Array) return data.byteLength;
  let n = 0;
  for (const d of data) n += d.byteLength;
  return n;
}

export function chunks(data: Uint8Array | readonly Uint8Array[]): readonly Uint8Array[] {
  return data instanceof Uint8Array ? [data] : data;
}

export function checkOpen(storeName: string, closed: boolean): void {
  if (closed) throw new InvalidRequestError(`${storeName}: store is closed`);
}

/** Runs a synchronous body as a promise, so validation errors reject instead of throwing. */
export function settle<T>(body: () => T): Promise<T> {
  try {
    return Promise.resolve(body());
  } catch (e) {
    return Promise.reject(e instanceof Error ? e : new Error(String(e)));
  }
}
