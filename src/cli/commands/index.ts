// Every `tandem` subcommand registers itself here, one line per module.
import type { Command } from 'commander';
import { registerAdjust, registerShow } from './adjust.js';
import { registerAdmin } from './admin.js';
import { registerDemo } from './demo.js';
import { registerDoctor } from './doctor.js';
import { registerDump } from './dump.js';
import { registerMetadata } from './metadata.js';
import { registerResize } from './resize.js';

export function registerCommands(program: Command): void {
  registerAdjust(program);
  registerShow(program);
  registerAdmin(program);
  registerDemo(program);
  registerDoctor(program);
  registerDump(program);
  registerMetadata(program);
  registerResize(program);
}
