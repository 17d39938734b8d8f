#!/usr/bin/env node
// Entry point of the `tandem` binary; the program itself lives in program.ts so tests can drive it.
import { main } from './program.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`tandem: internal error: ${String(e)}\n`);
    process.exitCode = 70;
  },
);
