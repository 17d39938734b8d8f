// Randomness from the world: secure bytes for challenges and UUIDs, and a Random for jitter.
import { randomBytes, randomInt } from 'node:crypto';
import type { Random } from '../util/prng.js';

export const secureRandom: Random = {
  next: () => randomInt(0, 2 ** 48 - 1) / 2 ** 48,
  int: (n) => randomInt(0, n),
};

export function secureBytes(length: number): Buffer {
  return randomBytes(length);
}
