// The configuration layer's public surface: load/parse drbd.conf-syntax files into the model.
export type * from './types.js';
export {
  loadConfig,
  parseConfigText,
  hostForNode,
  findHost,
  requireHostForNode,
  findResource,
  resourcesForNode,
} from './load.js';
export { dumpConfigText, dumpConfigJson } from './dump.js';
export { ConfigFileError, formatDiagnostic } from './diagnostics.js';
export { formatAddress, parseAddress, parseNbdUri, type ConfigFs } from './interpret.js';
export {
  SECTION_OPTIONS,
  GLOBAL_OPTIONS,
  optionSchema,
  parseNumericValue,
  type OptionKind,
  type OptionSchema,
} from './options.js';
export {
  TLS_FILE_OPTIONS,
  tlsEnabled,
  tlsFilesOf,
  type TlsFiles,
  type TlsFileOption,
} from './tls.js';
