// Structured logging: one JSON object per line on stderr (pino), as a systemd service expects.
// Layers take the small Logger interface, so tests and the simulator can pass a silent one.
import { pino, destination, stdTimeFunctions } from 'pino';

export interface Logger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  child(bindings: Record<string, string | number>): Logger;
}

export function createLogger(bindings: Record<string, string | number>, level = 'info'): Logger {
  return pino({ level, base: bindings, timestamp: stdTimeFunctions.isoTime }, destination(2));
}

export const silentLogger: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  child: () => silentLogger,
};
