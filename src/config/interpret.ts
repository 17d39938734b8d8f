// From parsed statements to the normalized model: keywords checked against the schema, values
// parsed and range-checked, includes expanded, inheritance applied, cross-references validated.
// Every problem becomes a located diagnostic; the function never throws on bad input.
import { isIPv6 } from 'node:net';
import { dirname, isAbsolute, resolve } from 'node:path';
import {
  CONFIG_FILE_BYTES_MAX,
  CONFIG_FILES_MAX,
  CONFIG_INCLUDE_DEPTH_MAX,
  CONFIG_MINOR_MAX,
  CONFIG_NODE_ID_MAX,
  CONFIG_VOLUME_MAX,
} from '../limits.js';
import { didYouMean } from './diagnostics.js';
import { printable, type Token } from './lexer.js';
import {
  optionNames,
  optionSchema,
  parseNumericValue,
  PEER_DEVICE_OPTIONS,
  SECTION_NAMES,
  type OptionSchema,
} from './options.js';
import { parseStatements, type Statement } from './parser.js';
import { TLS_FILE_OPTIONS, tlsEnabled, tlsKey, tlsProblems } from './tls.js';
import type {
  Address,
  AddressFamily,
  ConfigDiagnostic,
  ConnectionConfig,
  DeviceSpec,
  HostConfig,
  MetaDiskSpec,
  OptionMap,
  OptionValue,
  PathConfig,
  ResourceConfig,
  SectionName,
  Sections,
  SourceLocation,
  TandemConfig,
  VolumeConfig,
} from './types.js';

/** How the interpreter reads included files; loadConfig passes the real file system. */
export interface ConfigFs {
  /** The file's text; throws (any error) when it cannot be read. */
  readFile(path: string): string;
  /** Absolute paths matching a glob pattern (already absolute), sorted. */
  glob(pattern: string): string[];
}

type MutableOptions = Record<string, OptionValue>;
type MutableSections = Record<SectionName, MutableOptions>;

const emptySections = (): MutableSections => ({
  net: {},
  disk: {},
  options: {},
  startup: {},
  handlers: {},
});

interface RawVolume {
  device?: DeviceSpec;
  deviceAt?: SourceLocation;
  disk?: string | null;
  metaDisk?: MetaDiskSpec;
  diskOptions: MutableOptions;
  location: SourceLocation;
  /** Fields whose statement was wrong (already reported): not reported again as missing. */
  bad: Set<string>;
}

/** Volumes written at one level (resource or host): explicit `volume N`, or the implicit volume 0. */
interface RawVolumes {
  explicit: Map<number, RawVolume>;
  implicit: RawVolume | null;
}

interface RawHost {
  /** The first name of `on NAME...` (the host's name in connections), or a floating host's address. */
  name: string;
  /** Every name of `on NAME...` (DRBD 8 allowed several). */
  names: readonly string[];
  /** Per-host `options { }` (resource options). */
  options: MutableOptions;
  floating: boolean;
  nodeId: number | null;
  address: Address | null;
  volumes: RawVolumes;
  location: SourceLocation;
  /** The address statement was wrong (already reported). */
  badAddress: boolean;
  /** The node-id statement was wrong (already reported). */
  badNodeId: boolean;
}

interface RawEndpoint {
  host: string;
  address: Address | null;
  port: number | null;
  location: SourceLocation;
}

interface RawConnection {
  name: string | null;
  hosts: RawEndpoint[];
  paths: { endpoints: RawEndpoint[]; location: SourceLocation }[];
  net: MutableOptions;
  disk: MutableOptions;
  location: SourceLocation;
  /** Host statements that were wrong (already reported): counts are not checked again. */
  badEndpoints: number;
}

const RESOURCE_KEYWORDS = [
  'protocol',
  'syncer',
  'device',
  'disk',
  'meta-disk',
  'flexible-meta-disk',
  'volume',
  'on',
  'floating',
  '_this_host',
  'connection',
  'connection-mesh',
  'net',
  'options',
  'startup',
  'handlers',
  'stacked-on-top-of',
  'template-file',
  'proxy',
];
const HOST_KEYWORDS = [
  'node-id',
  'options',
  'address',
  'device',
  'disk',
  'meta-disk',
  'flexible-meta-disk',
  'volume',
  'proxy',
];
const VOLUME_KEYWORDS = ['device', 'disk', 'meta-disk', 'flexible-meta-disk'];
const TOP_KEYWORDS = ['global', 'common', 'resource', 'include', 'skip'];
const COMMON_KEYWORDS = [...SECTION_NAMES, 'syncer', 'protocol'];
/** Resource statements drbdadm parses in `common` and then drops. */
const COMMON_IGNORED = [
  'device',
  'disk',
  'meta-disk',
  'flexible-meta-disk',
  'volume',
  'connection',
  'connection-mesh',
];
/** DRBD 8.3 names drbdadm 9 still maps in `syncer { }` (`rate` maps to a name syncer rejects). */
const SYNCER_ALIASES: Readonly<Record<string, string>> = {
  rate: 'resync-rate',
  after: 'resync-after',
  'outdate-peer': 'fence-peer',
};
const SYNCER_NAMES = [
  ...(['net', 'disk', 'options'] as const).flatMap((s) => optionNames(s)),
  ...Object.keys(SYNCER_ALIASES),
];
const CONNECTION_KEYWORDS = ['host', 'path', 'net', 'disk', 'volume'];
const MESH_KEYWORDS = ['hosts', 'net'];

export function interpret(
  text: string,
  file: string,
  fs: ConfigFs | null,
  diagnostics: ConfigDiagnostic[],
): TandemConfig {
  return new Interpreter(fs, diagnostics).run(text, file);
}

class Interpreter {
  private readonly files: string[] = [];
  private readonly globalOptions: MutableOptions = {};
  private readonly common = emptySections();
  private readonly resources: ResourceConfig[] = [];
  private readonly resourceAt = new Map<string, SourceLocation>();
  private readonly seenOption = new Map<object, Map<string, SourceLocation>>();
  private readonly badAddress = new WeakSet<HostConfig>();

  constructor(
    private readonly fs: ConfigFs | null,
    private readonly diagnostics: ConfigDiagnostic[],
  ) {}

  run(text: string, file: string): TandemConfig {
    this.files.push(file);
    const statements = stripSkips(
      this.expandIncludes(parseStatements(text, file, this.diagnostics), file, 0, [file]),
    );
    let sawGlobal: SourceLocation | null = null;
    let sawCommon: SourceLocation | null = null;
    for (const st of statements) {
      const kw = st.keyword.text;
      if (kw === 'global') {
        if (!this.expectSection(st, 0)) continue;
        if (sawGlobal)
          this.error(
            st.keyword.location,
            `second 'global' section (the first is at line ${sawGlobal.line})`,
          );
        sawGlobal = st.keyword.location;
        this.optionsInto('global', st.body ?? [], this.globalOptions);
      } else if (kw === 'common') {
        if (!this.expectSection(st, 0)) continue;
        if (sawCommon)
          this.error(
            st.keyword.location,
            `second 'common' section (the first is at line ${sawCommon.line})`,
          );
        sawCommon = st.keyword.location;
        this.commonSection(st.body ?? []);
      } else if (kw === 'resource') {
        this.resource(st);
      } else if (kw.startsWith('require-drbd-module-version-')) {
        this.warning(
          st.keyword.location,
          `'${kw}' is accepted and ignored: Tandem does not use the DRBD kernel module`,
        );
      } else if (kw === 'skip') {
        // drbdadm's `skip { ... }` comments out a whole block.
        if (st.body === null) this.error(st.keyword.location, "'skip' needs a section", "'{'");
      } else {
        this.unknown(st.keyword, TOP_KEYWORDS, 'at the top level');
      }
    }
    this.checkAcrossResources();
    return {
      files: this.files,
      global: { options: this.globalOptions },
      common: this.common,
      resources: this.resources,
    };
  }

  // ---- diagnostics ----------------------------------------------------------------------

  private error(
    location: SourceLocation,
    message: string,
    expected?: string,
    suggestion?: string,
  ): void {
    this.diagnostics.push({
      severity: 'error',
      location,
      message,
      ...(expected === undefined ? {} : { expected }),
      ...(suggestion === undefined ? {} : { suggestion }),
    });
  }

  private warning(location: SourceLocation, message: string): void {
    this.diagnostics.push({ severity: 'warning', location, message });
  }

  private unknown(t: Token, allowed: readonly string[], where: string): void {
    const suggestion = didYouMean(t.text, allowed);
    let hint = '';
    for (const s of SECTION_NAMES) {
      if (optionSchema(s, t.text) && !allowed.includes(t.text))
        hint = ` ('${t.text}' is an option of the ${s} section)`;
    }
    this.error(
      t.location,
      `unknown keyword '${printable(t.text)}' ${where}${hint}`,
      `one of ${allowed.join(', ')}`,
      suggestion,
    );
  }

  /** The statement must be a section (`KEYWORD ARGS { }`) with exactly `nargs` arguments. */
  private expectSection(st: Statement, nargs: number, argWhat = 'a name'): boolean {
    if (st.body === null) {
      this.error(st.end, `'${st.keyword.text}' must be followed by a section`, "'{'");
      return false;
    }
    if (st.args.length < nargs) {
      this.error(st.keyword.location, `'${st.keyword.text}' needs ${argWhat}`, argWhat);
      return false;
    }
    const extra = st.args[nargs];
    if (extra) {
      this.error(
        extra.location,
        `unexpected '${printable(extra.text)}' after '${st.keyword.text}'`,
        "'{'",
      );
      return false;
    }
    return true;
  }

  /** The statement must be `KEYWORD ARGS;` with between min and max arguments. */
  private expectStatement(st: Statement, min: number, max: number, what: string): boolean {
    if (st.body !== null) {
      this.error(st.keyword.location, `'${st.keyword.text}' takes ${what}, not a section`, "';'");
      return false;
    }
    if (st.args.length < min) {
      this.error(st.end, `'${st.keyword.text}' needs ${what}`, what);
      return false;
    }
    const extra = st.args[max];
    if (extra) {
      const prev = st.args[max - 1] ?? st.keyword;
      this.error(
        extra.location,
        `unexpected '${printable(extra.text)}': missing ';' after '${printable(prev.text)}'?`,
        "';'",
      );
      return false;
    }
    return true;
  }

  // ---- includes ---------------------------------------------------------------------------

  private expandIncludes(
    statements: Statement[],
    file: string,
    depth: number,
    chain: string[],
  ): Statement[] {
    const out: Statement[] = [];
    for (const st of statements) {
      if (st.keyword.text !== 'include') {
        if (st.body !== null && st.body.some((s) => hasInclude(s))) {
          out.push({ ...st, body: this.expandIncludes([...st.body], file, depth, chain) });
        } else out.push(st);
        continue;
      }
      if (!this.expectStatement(st, 1, 1, 'a file name or glob pattern')) continue;
      const arg = st.args[0] as Token;
      if (this.fs === null) {
        this.error(
          arg.location,
          `'include' cannot be used here: the configuration was given as text, not read from a file`,
        );
        continue;
      }
      if (depth + 1 > CONFIG_INCLUDE_DEPTH_MAX) {
        this.error(arg.location, `includes nested deeper than ${CONFIG_INCLUDE_DEPTH_MAX}`);
        continue;
      }
      const pattern = isAbsolute(arg.text) ? arg.text : resolve(dirname(file), arg.text);
      const isGlob = /[*?[]/.test(arg.text);
      let matches: string[];
      try {
        matches = isGlob ? this.fs.glob(pattern) : [pattern];
      } catch (e) {
        this.error(
          arg.location,
          `cannot expand include pattern '${printable(arg.text)}': ${String(e)}`,
        );
        continue;
      }
      for (const path of matches) {
        // As drbdadm: a file already read (this one, an includer, or an earlier include) is
        // skipped, so `include "*.res";` may match the including file itself.
        if (this.files.includes(path)) {
          if (!isGlob)
            this.warning(
              arg.location,
              `'${printable(path)}' is already read${chain.includes(path) ? ` (it includes itself through ${chain.join(' -> ')})` : ''}: skipped, as drbdadm does`,
            );
          continue;
        }
        if (this.files.length >= CONFIG_FILES_MAX) {
          this.error(arg.location, `more than ${CONFIG_FILES_MAX} configuration files`);
          break;
        }
        let text: string;
        try {
          text = this.fs.readFile(path);
        } catch (e) {
          const code = (e as { code?: unknown }).code;
          this.error(
            arg.location,
            `cannot read included file '${printable(path)}'${typeof code === 'string' ? ` (${code})` : ''}`,
          );
          continue;
        }
        if (text.length > CONFIG_FILE_BYTES_MAX) {
          this.error(
            arg.location,
            `included file '${printable(path)}' is larger than ${CONFIG_FILE_BYTES_MAX} bytes`,
          );
          continue;
        }
        this.files.push(path);
        const inner = parseStatements(text, path, this.diagnostics);
        out.push(...this.expandIncludes(inner, path, depth + 1, [...chain, path]));
      }
    }
    return out;
  }

  // ---- option sections --------------------------------------------------------------------

  private commonSection(body: readonly Statement[]): void {
    const once = new Map<string, SourceLocation>();
    for (const st of body) {
      const kw = st.keyword.text;
      if (this.optionSection(st, this.common, once)) continue;
      if (COMMON_IGNORED.includes(kw)) {
        // drbdadm parses `common` as a resource and then inherits only its option sections.
        this.warning(
          st.keyword.location,
          `'${kw}' in 'common' is ignored: drbdadm 9 parses it there but no resource inherits it; write it in each resource`,
        );
      } else if (kw === 'on' || kw === 'floating' || kw === '_this_host') {
        this.error(st.keyword.location, `a host section ('${kw}') is not allowed in 'common'`);
      } else if (kw === 'stacked-on-top-of') {
        this.error(
          st.keyword.location,
          'stacked resources (stacked-on-top-of) are not supported by Tandem',
        );
      } else if (kw === 'proxy' || kw === 'template-file') {
        this.warning(
          st.keyword.location,
          `DRBD keyword '${kw}' is accepted but not implemented by Tandem: it has no effect`,
        );
      } else {
        this.unknown(st.keyword, COMMON_KEYWORDS, "in 'common'");
      }
    }
  }

  /**
   * The option sections of a resource or of `common`: `net`, `disk { }`, `options`, `startup`,
   * `handlers`, each at most once (as drbdadm), and the older forms drbdadm still reads into
   * them: a `protocol X;` statement (net) and DRBD 8.3's `syncer { }`, whose options go to the
   * net, disk or options section that has them now. Returns false for any other statement.
   */
  private optionSection(
    st: Statement,
    into: MutableSections,
    once: Map<string, SourceLocation>,
  ): boolean {
    const kw = st.keyword.text;
    const isSection =
      kw === 'net' ||
      kw === 'options' ||
      kw === 'startup' ||
      kw === 'handlers' ||
      kw === 'syncer' ||
      (kw === 'disk' && st.body !== null);
    if (kw === 'protocol' && st.body === null) {
      this.optionsInto('net', [st], into.net);
      return true;
    }
    if (!isSection) return false;
    if (!this.expectSection(st, 0)) return true;
    const first = once.get(kw);
    if (first) {
      this.error(
        st.keyword.location,
        `second '${kw}' section here (the first is at line ${first.line}); drbdadm allows one`,
      );
      return true;
    }
    once.set(kw, st.keyword.location);
    if (kw === 'syncer') this.syncer(st.body ?? [], into);
    else this.optionsInto(kw, st.body ?? [], into[kw]);
    return true;
  }

  /** DRBD 8.3's `syncer { }`: each option goes where drbdadm 9 puts it (net, disk or options). */
  private syncer(body: readonly Statement[], into: MutableSections): void {
    for (const st of body) {
      const written = st.keyword.text;
      const plain = written.startsWith('no-') ? written.slice(3) : written;
      const alias = SYNCER_ALIASES[plain];
      const name = alias ?? plain;
      const target = (['net', 'disk', 'options'] as const).find(
        (s) =>
          optionSchema(s, name)?.status !== 'tandem' &&
          optionSchema(s, name) !== undefined &&
          !(s === 'disk' && PEER_DEVICE_OPTIONS.includes(name)),
      );
      if (!target) {
        const home = SECTION_NAMES.find((s) => optionSchema(s, name));
        this.error(
          st.keyword.location,
          home
            ? `'${written}' cannot be written in 'syncer': drbdadm 9 rejects it there; write '${name}' in the ${home} section`
            : `unknown syncer option '${printable(written)}'`,
          home ? `'${home} { ${name} ...; }'` : 'a net, disk or options option',
          home ? undefined : didYouMean(written, SYNCER_NAMES),
        );
        continue;
      }
      const renamed = alias
        ? { ...st, keyword: { ...st.keyword, text: written === plain ? name : `no-${name}` } }
        : st;
      this.optionsInto(target, [renamed], into[target]);
    }
  }

  /** Parses `NAME VALUE;` statements of one section into `target`, checking names, values, ranges. */
  private optionsInto(
    section: SectionName | 'global',
    body: readonly Statement[],
    target: MutableOptions,
    only?: readonly string[],
  ): void {
    let seen = this.seenOption.get(target);
    if (!seen) {
      seen = new Map();
      this.seenOption.set(target, seen);
    }
    const names = only ?? optionNames(section);
    for (const written of body) {
      const st = this.noPrefix(section, written, names);
      if (st === null) continue;
      const name = st.keyword.text;
      const schema = optionSchema(section, name);
      if (!schema || !names.includes(name)) {
        const elsewhere = SECTION_NAMES.find((s) => s !== section && optionSchema(s, name));
        const suggestion = didYouMean(name, names);
        if (schema && only) {
          this.error(
            st.keyword.location,
            `'${name}' cannot be set here: only ${only.join(', ')}`,
            `one of ${only.join(', ')}`,
          );
        } else if (elsewhere) {
          this.error(
            st.keyword.location,
            `'${name}' is not a ${section} option: it belongs in the ${elsewhere} section`,
            undefined,
            suggestion,
          );
        } else {
          this.error(
            st.keyword.location,
            `unknown ${section} option '${printable(name)}'`,
            `a ${section} option`,
            suggestion,
          );
        }
        continue;
      }
      if (st.body !== null) {
        this.error(st.keyword.location, `'${name}' is an option, not a section`, "';'");
        continue;
      }
      const value = this.optionValue(schema, st);
      if (value === undefined) continue;
      const first = seen.get(name);
      if (first) {
        this.error(
          st.keyword.location,
          `'${name}' is set twice in this section (first at line ${first.line})`,
        );
        continue;
      }
      seen.set(name, st.keyword.location);
      target[name] = value;
      if (schema.status === 'accepted') {
        this.warning(
          st.keyword.location,
          `DRBD option '${name}' is accepted but not implemented by Tandem: it has no effect`,
        );
      }
    }
  }

  /**
   * drbdadm's `no-` prefix (DRBD 8.3 style `no-disk-flushes;`, `no-tcp-cork;`): `no-NAME;` is
   * `NAME no;`. With a value, drbdadm takes the value as written and drops the prefix
   * (`no-disk-flushes yes;` is `disk-flushes yes;`), and so does Tandem, with a warning.
   * Returns the statement to read, or null when it was wrong (already reported).
   */
  private noPrefix(
    section: SectionName | 'global',
    st: Statement,
    names: readonly string[],
  ): Statement | null {
    const text = st.keyword.text;
    if (section === 'global' || !text.startsWith('no-') || optionSchema(section, text)) return st;
    const name = text.slice(3);
    const schema = optionSchema(section, name);
    if (!schema || !names.includes(name) || st.body !== null) return st; // reported as unknown
    const keyword = { ...st.keyword, text: name };
    if (st.args.length === 0) {
      if (schema.kind.type !== 'boolean') {
        this.error(
          st.keyword.location,
          `'${text}' is not a value: the no- prefix is for yes/no options, and '${name}' is not one`,
          `'${name} VALUE;'`,
        );
        return null;
      }
      const no = { ...st.keyword, kind: 'word' as const, text: 'no' };
      return { ...st, keyword, args: [no] };
    }
    this.warning(
      st.keyword.location,
      `'${text} ${printable(st.args[0]?.text ?? '')}' sets '${name}' to '${printable(st.args[0]?.text ?? '')}' (drbdadm ignores the no- prefix when a value is given); write '${name} ...;'`,
    );
    return { ...st, keyword };
  }

  private optionValue(schema: OptionSchema, st: Statement): OptionValue | undefined {
    const k = schema.kind;
    const name = schema.name;
    switch (k.type) {
      case 'flag':
        return this.expectStatement(st, 0, 0, 'no value') ? true : undefined;
      case 'boolean': {
        if (!this.expectStatement(st, 0, 1, 'yes or no')) return undefined;
        const a = st.args[0];
        if (!a) return true;
        if (a.text === 'yes') return true;
        if (a.text === 'no') return false;
        this.error(a.location, `'${printable(a.text)}' is not a value of '${name}'`, 'yes or no');
        return undefined;
      }
      case 'enum': {
        if (!this.expectStatement(st, 1, 1, `one of ${k.values.join(' | ')}`)) return undefined;
        const a = st.args[0] as Token;
        if (k.values.includes(a.text)) return a.text;
        const folded = k.nocase && k.values.find((v) => v.toLowerCase() === a.text.toLowerCase());
        if (folded) return folded;
        this.error(
          a.location,
          `'${printable(a.text)}' is not a value of '${name}'`,
          k.values.join(' | '),
          didYouMean(a.text, k.values),
        );
        return undefined;
      }
      case 'string': {
        // DRBD 8.4's `become-primary-on alpha beta;` names several hosts (drbdadm 9 drops it).
        // drbdadm skips any words up to the ';', none included.
        if (name === 'become-primary-on') {
          if (!this.expectStatement(st, 0, 64, 'host names')) return undefined;
          return st.args.map((a) => a.text).join(' ');
        }
        if (!this.expectStatement(st, 1, 1, 'a value')) return undefined;
        const a = st.args[0] as Token;
        if (k.maxLength !== undefined && a.text.length > k.maxLength) {
          this.error(
            a.location,
            `'${name}' is ${a.text.length} characters long`,
            `at most ${k.maxLength} characters`,
          );
          return undefined;
        }
        return a.text;
      }
      case 'numeric': {
        if (!this.expectStatement(st, 1, 1, 'a number')) return undefined;
        const a = st.args[0] as Token;
        const r = parseNumericValue(a.text, k);
        if (r.ok && r.clampedFrom !== undefined)
          this.warning(
            a.location,
            `${name} ${printable(a.text)} is out of range ${k.min}..${k.max}: clamped to ${r.value}, as DRBD clamps it`,
          );
        if (r.ok) return r.value;
        this.error(a.location, `${name}: ${r.error}`, r.expected);
        return undefined;
      }
      case 'numeric-or-symbol': {
        if (!this.expectStatement(st, 1, 1, `a number or ${k.symbols.join(' | ')}`))
          return undefined;
        const a = st.args[0] as Token;
        if (k.symbols.includes(a.text)) return a.text;
        if (/^[0-9]+$/.test(a.text)) {
          const n = Number(a.text);
          if (n >= k.min && n <= k.max) return n;
        }
        this.error(
          a.location,
          `'${printable(a.text)}' is not a value of '${name}'`,
          `${k.min}..${k.max} or ${k.symbols.join(' | ')}`,
        );
        return undefined;
      }
    }
  }

  // ---- resources --------------------------------------------------------------------------

  private resource(st: Statement): void {
    if (!this.expectSection(st, 1, 'a resource name')) return;
    const nameTok = st.args[0] as Token;
    const name = nameTok.text;
    if (!/^[A-Za-z0-9_.+-]+$/.test(name)) {
      this.error(
        nameTok.location,
        `'${printable(name)}' is not a valid resource name`,
        'letters, digits, _ . + -',
      );
      return;
    }
    const prev = this.resourceAt.get(name);
    if (prev) {
      this.error(
        nameTok.location,
        `resource '${name}' is defined twice (first at ${prev.file}:${prev.line})`,
      );
      return;
    }
    this.resourceAt.set(name, nameTok.location);

    const own = emptySections();
    const volumes: RawVolumes = { explicit: new Map(), implicit: null };
    const hosts: RawHost[] = [];
    const connections: RawConnection[] = [];
    let mesh: { hosts: Token[]; net: MutableOptions; location: SourceLocation } | null = null;

    const once = new Map<string, SourceLocation>();
    for (const s of st.body ?? []) {
      const kw = s.keyword.text;
      if (this.optionSection(s, own, once)) {
        // net, disk, options, startup, handlers, syncer, or a resource-level `protocol`
      } else if (VOLUME_KEYWORDS.includes(kw)) {
        this.volumeField(s, implicitVolume(volumes, s.keyword.location));
      } else if (kw === 'volume') {
        this.volume(s, volumes, true);
      } else if (kw === 'on' || kw === '_this_host') {
        const h = this.host(s, false);
        if (h) hosts.push(h);
      } else if (kw === 'floating') {
        const h = this.host(s, true);
        if (h) hosts.push(h);
      } else if (kw === 'connection') {
        const c = this.connection(s);
        if (c) connections.push(c);
      } else if (kw === 'connection-mesh') {
        if (!this.expectSection(s, 0)) continue;
        if (mesh) {
          this.error(s.keyword.location, "second 'connection-mesh' in this resource");
          continue;
        }
        mesh = { hosts: [], net: {}, location: s.keyword.location };
        let meshNetAt: SourceLocation | null = null;
        for (const m of s.body ?? []) {
          if (m.keyword.text === 'hosts') {
            if (this.expectStatement(m, 2, 32, 'two or more host names'))
              mesh.hosts.push(...m.args);
          } else if (m.keyword.text === 'net') {
            if (!this.expectSection(m, 0)) continue;
            if (meshNetAt) {
              this.error(
                m.keyword.location,
                `second 'net' section in 'connection-mesh' (the first is at line ${meshNetAt.line}); drbdadm allows one`,
              );
              continue;
            }
            meshNetAt = m.keyword.location;
            this.optionsInto('net', m.body ?? [], mesh.net);
          } else this.unknown(m.keyword, MESH_KEYWORDS, "in 'connection-mesh'");
        }
      } else if (kw === 'stacked-on-top-of') {
        this.error(
          s.keyword.location,
          'stacked resources (stacked-on-top-of) are not supported by Tandem',
        );
      } else if (kw === 'proxy' || kw === 'template-file') {
        this.warning(
          s.keyword.location,
          `DRBD keyword '${kw}' is accepted but not implemented by Tandem: it has no effect`,
        );
      } else {
        this.unknown(s.keyword, RESOURCE_KEYWORDS, `in resource '${name}'`);
      }
    }

    const sections = mergeSections(this.common, own);
    this.resources.push(
      this.buildResource(name, nameTok.location, own, sections, volumes, hosts, connections, mesh),
    );
  }

  private volume(s: Statement, into: RawVolumes, allowDiskSection: boolean): void {
    if (!this.expectSection(s, 1, 'a volume number')) return;
    const numTok = s.args[0] as Token;
    const n = this.integer(numTok, 0, CONFIG_VOLUME_MAX, 'volume number');
    if (n === undefined) return;
    if (into.explicit.has(n)) {
      this.error(numTok.location, `volume ${n} is defined twice here`);
      return;
    }
    const v: RawVolume = { diskOptions: {}, location: s.keyword.location, bad: new Set() };
    into.explicit.set(n, v);
    for (const f of s.body ?? []) {
      if (f.keyword.text === 'disk' && f.body !== null) {
        if (!allowDiskSection)
          this.error(f.keyword.location, "a 'disk { }' section is not allowed in this volume");
        else if (this.expectSection(f, 0)) this.optionsInto('disk', f.body, v.diskOptions);
      } else if (VOLUME_KEYWORDS.includes(f.keyword.text)) {
        this.volumeField(f, v);
      } else this.unknown(f.keyword, VOLUME_KEYWORDS, `in volume ${n}`);
    }
  }

  private volumeField(s: Statement, v: RawVolume): void {
    const before = this.errorCount();
    this.volumeFieldInner(s, v);
    if (this.errorCount() > before) {
      const field = (k: string): string => (k === 'flexible-meta-disk' ? 'meta-disk' : k);
      v.bad.add(field(s.keyword.text));
      // `device /dev/drbd0 disk /dev/loop0;` swallowed the disk statement: do not also call it missing.
      for (const a of s.args) if (VOLUME_KEYWORDS.includes(a.text)) v.bad.add(field(a.text));
    }
  }

  private errorCount(): number {
    let n = 0;
    for (const d of this.diagnostics) if (d.severity === 'error') n++;
    return n;
  }

  private volumeFieldInner(s: Statement, v: RawVolume): void {
    const kw = s.keyword.text;
    const twice = (): boolean => {
      this.error(s.keyword.location, `'${kw}' is set twice for this volume`);
      return false;
    };
    if (kw === 'device') {
      if (!this.expectStatement(s, 1, 3, 'a device path, minor N, or an nbd:// URI')) return;
      const d = this.device(s);
      if (!d) return;
      if (v.device) return void twice();
      v.device = d;
      v.deviceAt = s.keyword.location;
    } else if (kw === 'disk') {
      if (!this.expectStatement(s, 1, 1, 'a block device path or none')) return;
      if (v.disk !== undefined) return void twice();
      const t = s.args[0] as Token;
      v.disk = t.text === 'none' ? null : t.text;
      if (t.text !== 'none' && !t.text.startsWith('/')) {
        this.error(
          t.location,
          `disk '${printable(t.text)}' is not an absolute path`,
          "an absolute path or 'none'",
        );
      }
    } else if (kw === 'meta-disk' || kw === 'flexible-meta-disk') {
      if (!this.expectStatement(s, 1, kw === 'meta-disk' ? 4 : 1, "'internal' or a path")) return;
      if (v.metaDisk) return void twice();
      const p = s.args[0] as Token;
      if (p.text === 'internal') {
        if (s.args[1]) this.error(s.args[1].location, "'meta-disk internal' takes no index", "';'");
        else v.metaDisk = { kind: 'internal' };
        return;
      }
      // The index is written `PATH [N]`, `PATH[N]` or `PATH [ N ]`.
      const rest = s.args.slice(1);
      if (rest.length > 0 && !/^\[[^\]]*\]$/.test(rest.map((a) => a.text).join(''))) {
        const at = rest[0] as Token;
        this.error(
          at.location,
          `unexpected '${printable(at.text)}' after the meta-disk path`,
          "'[INDEX]' or ';'",
        );
        return;
      }
      const joined = s.args.map((a) => a.text).join('');
      const m = /^(.*?)(?:\[([^\]]*)\])?$/.exec(joined);
      const path = m?.[1] ?? joined;
      const indexText = m?.[2];
      if (!path.startsWith('/') || /[[\]]/.test(path)) {
        const at = s.args.find((a) => /[[\]]/.test(a.text) || !a.text.startsWith('/')) ?? p;
        this.error(
          at.location,
          `meta-disk '${printable(joined)}' is not 'internal', a path or a path with an index`,
          "'internal', PATH or PATH [INDEX]",
        );
        return;
      }
      if (indexText === undefined) {
        v.metaDisk = { kind: 'flexible', path };
        return;
      }
      if (indexText === 'flexible' || indexText === 'flex-external') {
        v.metaDisk = { kind: 'flexible', path };
        return;
      }
      const idxTok = s.args.find((a) => a.text.includes(indexText)) ?? p;
      const idx = this.integer({ ...idxTok, text: indexText }, 0, 255, 'meta-disk index');
      if (idx !== undefined) v.metaDisk = { kind: 'external', path, index: idx };
    }
  }

  private device(s: Statement): DeviceSpec | undefined {
    const a0 = s.args[0] as Token;
    if (a0.text === 'minor') {
      const mt = s.args[1];
      if (!mt) {
        this.error(s.end, "'device minor' needs a number", 'a minor number');
        return undefined;
      }
      if (s.args[2]) {
        this.error(s.args[2].location, `unexpected '${printable(s.args[2].text)}'`, "';'");
        return undefined;
      }
      const minor = this.integer(mt, 0, CONFIG_MINOR_MAX, 'minor');
      return minor === undefined ? undefined : { kind: 'drbd', path: null, minor };
    }
    if (/^nbds?(\+[a-z]+)?:/i.test(a0.text)) {
      if (s.args[1]) {
        this.error(
          s.args[1].location,
          `unexpected '${printable(s.args[1].text)}' after an NBD URI`,
          "';'",
        );
        return undefined;
      }
      const r = parseNbdUri(a0.text);
      if (r.ok) return r.device;
      this.error(a0.location, r.error, r.expected);
      return undefined;
    }
    if (!/^(\/dev\/)?drbd/.test(a0.text)) {
      this.error(
        a0.location,
        `device '${printable(a0.text)}' is neither a DRBD device (/dev/drbd...) nor an NBD URI`,
        '/dev/drbdN, minor N, nbd[s]://HOST:PORT/NAME or nbd[s]+unix:///NAME?socket=PATH',
      );
      return undefined;
    }
    const a1 = s.args[1];
    if (a1) {
      if (a1.text !== 'minor') {
        this.error(
          a1.location,
          `unexpected '${printable(a1.text)}': missing ';' after '${printable(a0.text)}'?`,
          "';' or 'minor N'",
        );
        return undefined;
      }
      const mt = s.args[2];
      if (!mt) {
        this.error(s.end, "'minor' needs a number", 'a minor number');
        return undefined;
      }
      const minor = this.integer(mt, 0, CONFIG_MINOR_MAX, 'minor');
      if (minor === undefined) return undefined;
      // As drbdadm: a name with a number must carry this minor; any other name is /dev/drbd_NAME.
      const path = devPath(a0.text);
      const tail = path.slice('/dev/drbd'.length);
      if (/^[0-9]+$/.test(tail) ? Number(tail) !== minor : !tail.startsWith('_')) {
        this.error(
          a0.location,
          /^[0-9]+$/.test(tail)
            ? `device '${printable(a0.text)}' does not match minor ${minor}`
            : `device '${printable(a0.text)}' with an explicit minor must be named /dev/drbd_NAME`,
          `'/dev/drbd${minor} minor ${minor}', '/dev/drbd_NAME minor ${minor}' or 'minor ${minor}'`,
        );
        return undefined;
      }
      return { kind: 'drbd', path, minor };
    }
    const m = /^(?:\/dev\/)?drbd([0-9]+)$/.exec(a0.text);
    if (!m) {
      this.error(
        a0.location,
        `cannot tell the minor number of device '${printable(a0.text)}'`,
        `'${printable(a0.text)} minor N'`,
      );
      return undefined;
    }
    const minor = Number(m[1]);
    if (minor > CONFIG_MINOR_MAX) {
      this.error(a0.location, `minor ${m[1]} is out of range`, `0..${CONFIG_MINOR_MAX}`);
      return undefined;
    }
    return { kind: 'drbd', path: devPath(a0.text), minor };
  }

  private integer(t: Token, min: number, max: number, what: string): number | undefined {
    if (!/^[0-9]+$/.test(t.text) || Number(t.text) < min || Number(t.text) > max) {
      this.error(
        t.location,
        `'${printable(t.text)}' is not a valid ${what}`,
        `a number ${min}..${max}`,
      );
      return undefined;
    }
    return Number(t.text);
  }

  private host(s: Statement, floating: boolean): RawHost | undefined {
    if (floating) {
      // `floating ADDR;` (no section) is a host with nothing of its own, as drbdadm reads it.
      const addr = this.address(s.args, s.keyword, s.keyword.location);
      if (!addr) return undefined;
      return this.hostBody(s, [formatAddress(addr).replace(/^\S+ /, '')], addr, true);
    }
    if (s.keyword.text === '_this_host') {
      if (!this.expectSection(s, 0)) return undefined;
      return this.hostBody(s, ['_this_host'], null, false);
    }
    // DRBD 8's `on alpha beta { }`: one host section for whichever of the named machines runs it.
    if (!this.expectSection(s, s.args.length === 0 ? 1 : s.args.length, 'a host name'))
      return undefined;
    for (const nameTok of s.args) {
      if (!/^[A-Za-z0-9_.-]+$/.test(nameTok.text)) {
        this.error(
          nameTok.location,
          `'${printable(nameTok.text)}' is not a valid host name`,
          'letters, digits, _ . -',
        );
        return undefined;
      }
    }
    return this.hostBody(
      s,
      s.args.map((t) => t.text),
      null,
      false,
    );
  }

  private hostBody(
    s: Statement,
    names: readonly string[],
    address: Address | null,
    floating: boolean,
  ): RawHost {
    const name = names[0] as string;
    const h: RawHost = {
      badAddress: false,
      badNodeId: false,
      name,
      names,
      floating,
      nodeId: null,
      address,
      volumes: { explicit: new Map(), implicit: null },
      options: {},
      location: s.keyword.location,
    };
    let nodeIdSet = false;
    let diskAt: SourceLocation | null = null;
    for (const f of s.body ?? []) {
      const kw = f.keyword.text;
      if (kw === 'node-id') {
        if (!this.expectStatement(f, 1, 1, 'a node id')) continue;
        if (nodeIdSet) {
          this.error(f.keyword.location, `'node-id' is set twice for host '${name}'`);
          continue;
        }
        nodeIdSet = true;
        h.nodeId = this.integer(f.args[0] as Token, 0, CONFIG_NODE_ID_MAX, 'node-id') ?? null;
        h.badNodeId = h.nodeId === null;
      } else if (kw === 'address') {
        if (floating) {
          this.error(
            f.keyword.location,
            "a 'floating' section names its address already",
            'node-id, device, disk, meta-disk',
          );
          continue;
        }
        if (!this.expectStatement(f, 1, 7, '[ipv4|ipv6|sdp|ssocks] ADDRESS:PORT')) continue;
        if (h.address) {
          this.error(f.keyword.location, `'address' is set twice for host '${name}'`);
          continue;
        }
        h.address = this.address(f.args, f.keyword, f.end) ?? null;
        h.badAddress = h.address === null;
      } else if (kw === 'disk' && diskAt) {
        // drbdadm allows one disk statement or `disk { }` section per host.
        this.error(
          f.keyword.location,
          `'disk' is written twice for host '${name}' (the first is at line ${diskAt.line})`,
        );
      } else if (kw === 'disk' && f.body !== null) {
        diskAt = f.keyword.location;
        // Options of this host's volume 0 (drbdadm reads them into its implicit volume).
        const v = implicitVolume(h.volumes, f.keyword.location);
        if (this.expectSection(f, 0)) this.optionsInto('disk', f.body, v.diskOptions);
      } else if (VOLUME_KEYWORDS.includes(kw)) {
        if (kw === 'disk') diskAt = f.keyword.location;
        this.volumeField(f, implicitVolume(h.volumes, f.keyword.location));
      } else if (kw === 'volume') {
        this.volume(f, h.volumes, true);
      } else if (kw === 'options') {
        // Per-host resource options (drbdadm keeps them for that host only).
        if (this.expectSection(f, 0)) this.optionsInto('options', f.body ?? [], h.options);
      } else if (kw === 'proxy') {
        this.warning(
          f.keyword.location,
          "DRBD keyword 'proxy' is accepted but not implemented by Tandem: it has no effect",
        );
      } else {
        this.unknown(f.keyword, HOST_KEYWORDS, `in host '${name}'`);
      }
    }
    return h;
  }

  /**
   * `[FAMILY] IP:PORT` from the argument tokens. drbdadm's scanner makes `[`, `]` and `:` tokens
   * of their own, so `127.0.0.1 : 7789` and `ipv6 [ fdaa::1 ]:7789` are the same address; DRBD
   * 8's family name `sci` is `ssocks`.
   */
  private address(args: readonly Token[], kw: Token, end: SourceLocation): Address | undefined {
    if (args.length === 0) {
      this.error(end, `'${kw.text}' needs an address`, '[ipv4|ipv6|sdp|ssocks] ADDRESS:PORT');
      return undefined;
    }
    let family: AddressFamily | null = null;
    let rest = args;
    const first = args[0] as Token;
    const families: AddressFamily[] = ['ipv4', 'ipv6', 'sdp', 'ssocks'];
    if (first.text === 'sci' || (families as string[]).includes(first.text)) {
      family = first.text === 'sci' ? 'ssocks' : (first.text as AddressFamily);
      rest = args.slice(1);
    } else if (args.length >= 2 && /^[a-z][a-z0-9]*$/i.test(first.text)) {
      this.error(
        first.location,
        `unknown address family '${printable(first.text)}'`,
        families.join(' | '),
        didYouMean(first.text, [...families, 'sci']),
      );
      return undefined;
    }
    if (rest.length === 0) {
      this.error(end, `'${kw.text}' needs an address after '${first.text}'`, 'ADDRESS:PORT');
      return undefined;
    }
    const quoted = rest.find((t) => t.kind === 'string');
    if (quoted) {
      // drbdadm reads an address only as bare words.
      this.error(
        quoted.location,
        `an address is written without quotes: '${printable(quoted.text)}'`,
        'ADDRESS:PORT',
      );
      return undefined;
    }
    const at = rest[0] as Token;
    const text = rest.map((t) => t.text).join('');
    // Words that do not join into one address: most likely a missing ';'.
    if (rest.length > 1 && !/^(\[[^\]]*\]|[^[\]:]*):[0-9]+$/.test(text)) {
      const extra = rest[1] as Token;
      this.error(
        extra.location,
        `unexpected '${printable(extra.text)}' after the address: missing ';'?`,
        "';'",
      );
      return undefined;
    }
    if (family === null && text.startsWith('[')) {
      // drbdadm reads `[` only after `ipv6` (its parser says "Do not foster people's laziness").
      this.error(
        at.location,
        `an IPv6 address is written with its family: 'ipv6 ${printable(text)}'`,
        'ipv6 [ADDRESS]:PORT',
      );
      return undefined;
    }
    const r = parseAddress(text, family);
    if (r.ok) return r.address;
    this.error(at.location, r.error, r.expected);
    return undefined;
  }

  private connection(s: Statement): RawConnection | undefined {
    if (s.body === null) {
      this.error(s.end, "'connection' must be followed by a section", "'{'");
      return undefined;
    }
    if (s.args.length > 1) {
      this.error(
        (s.args[1] as Token).location,
        `unexpected '${printable((s.args[1] as Token).text)}' after the connection name`,
        "'{'",
      );
      return undefined;
    }
    const c: RawConnection = {
      name: s.args[0]?.text ?? null,
      hosts: [],
      paths: [],
      net: {},
      disk: {},
      location: s.keyword.location,
      badEndpoints: 0,
    };
    let netAt: SourceLocation | null = null;
    for (const f of s.body) {
      const kw = f.keyword.text;
      if (kw === 'host') {
        const ep = this.endpoint(f);
        if (ep) c.hosts.push(ep);
        else c.badEndpoints++;
      } else if (kw === 'path') {
        if (!this.expectSection(f, 0)) continue;
        const endpoints: RawEndpoint[] = [];
        for (const p of f.body ?? []) {
          if (p.keyword.text !== 'host') {
            this.unknown(p.keyword, ['host'], "in 'path'");
            continue;
          }
          const ep = this.endpoint(p);
          if (ep) endpoints.push(ep);
          else c.badEndpoints++;
        }
        c.paths.push({ endpoints, location: f.keyword.location });
      } else if (kw === 'net') {
        if (!this.expectSection(f, 0)) continue;
        if (netAt) {
          this.error(
            f.keyword.location,
            `second 'net' section in this connection (the first is at line ${netAt.line}); drbdadm allows one`,
          );
          continue;
        }
        netAt = f.keyword.location;
        this.optionsInto('net', f.body ?? [], c.net);
      } else if (kw === 'disk') {
        if (this.expectSection(f, 0))
          this.optionsInto('disk', f.body ?? [], c.disk, PEER_DEVICE_OPTIONS);
      } else if (kw === 'volume') {
        if (this.expectSection(f, 1, 'a volume number')) {
          this.warning(
            f.keyword.location,
            'per-volume options in a connection are accepted but not implemented by Tandem: they have no effect',
          );
        }
      } else {
        this.unknown(f.keyword, CONNECTION_KEYWORDS, "in 'connection'");
      }
    }
    return c;
  }

  /** `host NAME [address [AF] IP:PORT] [port P] [via proxy on HOST { ... }];` */
  private endpoint(written: Statement): RawEndpoint | undefined {
    let f = written;
    const via = f.args.findIndex((a) => a.text === 'via' && a.kind === 'word');
    if (via >= 0) {
      // DRBD Proxy between the hosts: Tandem connects directly (the proxy section is skipped).
      this.warning(
        f.args[via]!.location,
        "'via proxy' is accepted but not implemented by Tandem: the hosts connect directly",
      );
      f = { ...f, args: f.args.slice(0, via), body: null };
    }
    if (!this.expectStatement(f, 1, 10, 'a host name')) return undefined;
    const hostTok = f.args[0] as Token;
    const ep: RawEndpoint = {
      host: hostTok.text,
      address: null,
      port: null,
      location: hostTok.location,
    };
    const rest = f.args.slice(1);
    const kw = rest[0];
    if (!kw) return ep;
    if (kw.text === 'address') {
      const a = this.address(rest.slice(1), kw, f.end);
      if (!a) return undefined;
      ep.address = a;
      return ep;
    }
    if (kw.text === 'port') {
      const p = rest[1];
      if (!p) {
        this.error(f.end, "'port' needs a number", 'a port 1..65535');
        return undefined;
      }
      if (rest[2]) {
        this.error(rest[2].location, `unexpected '${printable(rest[2].text)}'`, "';'");
        return undefined;
      }
      const port = this.integer(p, 1, 65535, 'port');
      if (port === undefined) return undefined;
      ep.port = port;
      return ep;
    }
    this.error(
      kw.location,
      `unexpected '${printable(kw.text)}' after 'host ${printable(hostTok.text)}'`,
      "'address', 'port' or ';'",
      didYouMean(kw.text, ['address', 'port']),
    );
    return undefined;
  }

  // ---- building and cross-checking ----------------------------------------------------------

  private buildResource(
    name: string,
    location: SourceLocation,
    own: MutableSections,
    sections: Sections,
    volumes: RawVolumes,
    rawHosts: RawHost[],
    rawConnections: RawConnection[],
    mesh: { hosts: Token[]; net: MutableOptions; location: SourceLocation } | null,
  ): ResourceConfig {
    const resLevel = this.levelVolumes(volumes);
    const hosts: HostConfig[] = [];
    const byName = new Map<string, HostConfig>();
    for (const h of rawHosts) {
      const dup = h.names.find((n) => byName.has(n));
      if (dup !== undefined) {
        this.error(h.location, `host '${dup}' appears twice in resource '${name}'`);
        continue;
      }
      const host: HostConfig = {
        name: h.name,
        ...(h.names.length > 1 ? { names: h.names } : {}),
        nodeId: h.nodeId,
        address: h.address,
        floating: h.floating,
        volumes: this.mergeVolumes(name, h, resLevel, sections.disk),
        ...(Object.keys(h.options).length > 0 ? { options: h.options } : {}),
        location: h.location,
      };
      hosts.push(host);
      if (h.badAddress) this.badAddress.add(host);
      for (const n of h.names) byName.set(n, host);
    }
    if (hosts.length === 0)
      this.error(
        location,
        `resource '${name}' has no 'on' or 'floating' section`,
        "'on HOST { ... }'",
      );

    // node-ids: all or none; none only with two hosts; unique.
    const withId = hosts.filter((h) => h.nodeId !== null);
    const badIds = new Set(rawHosts.filter((h) => h.badNodeId).map((h) => h.name));
    if (withId.length > 0 && withId.length < hosts.length) {
      for (const h of hosts.filter((x) => x.nodeId === null && !badIds.has(x.name))) {
        this.error(
          h.location,
          `host '${h.name}' has no node-id while others in resource '${name}' do`,
          "'node-id N;'",
        );
      }
    } else if (
      withId.length === 0 &&
      (hosts.length > 2 || rawConnections.length > 0 || mesh !== null)
    ) {
      this.error(
        location,
        `resource '${name}' has ${hosts.length} hosts or explicit connections but no node-id`,
        "'node-id N;' in every 'on' section",
      );
    }
    if (withId.length === 0 && hosts.length <= 2) {
      // DRBD 8.4 style: drbdadm numbers the hosts itself, the last `on` section 0.
      hosts.forEach((h, i) => {
        const numbered = { ...h, nodeId: hosts.length - 1 - i };
        hosts[i] = numbered;
        for (const n of h.names ?? [h.name]) byName.set(n, numbered);
        if (this.badAddress.has(h)) this.badAddress.add(numbered);
      });
    }
    const ids = new Map<number, string>();
    for (const h of withId) {
      const other = ids.get(h.nodeId as number);
      if (other !== undefined)
        this.error(h.location, `node-id ${h.nodeId} is used by both '${other}' and '${h.name}'`);
      else ids.set(h.nodeId as number, h.name);
    }

    const connections = this.buildConnections(
      name,
      location,
      byName,
      hosts,
      rawConnections,
      mesh,
      sections.net,
    );
    return {
      name,
      location,
      hosts,
      connections,
      mesh: mesh ? { hosts: mesh.hosts.map((t) => t.text), net: mesh.net } : null,
      sections,
      ownSections: own,
      volumeDiskOverrides: Object.fromEntries(
        [...volumes.explicit]
          .filter(([, v]) => Object.keys(v.diskOptions).length > 0)
          .map(([n, v]) => [n, v.diskOptions]),
      ),
    };
  }

  /**
   * One level's volumes by number. As drbdadm: fields outside any volume belong to volume 0 and
   * may complete an explicit `volume 0`, but not set the same field twice, and may not be
   * mixed with other explicit volumes.
   */
  private levelVolumes(level: RawVolumes): Map<number, RawVolume[]> {
    const out = new Map<number, RawVolume[]>([...level.explicit].map(([n, v]) => [n, [v]]));
    const imp = level.implicit;
    if (!imp) return out;
    if ([...level.explicit.keys()].some((n) => n !== 0)) {
      this.error(
        imp.location,
        "device/disk/meta-disk outside a volume cannot be mixed with 'volume N' sections other than 0",
        "all of them inside 'volume N { }'",
      );
      // Do not report the fields written outside as missing from every volume, too.
      for (const v of level.explicit.values()) {
        if (imp.device !== undefined) v.bad.add('device');
        if (imp.disk !== undefined) v.bad.add('disk');
        if (imp.metaDisk !== undefined) v.bad.add('meta-disk');
      }
      return out;
    }
    const v0 = level.explicit.get(0);
    if (v0) {
      const both = (['device', 'disk', 'metaDisk'] as const).filter(
        (k) => imp[k] !== undefined && v0[k] !== undefined,
      );
      if (both.length > 0) {
        this.error(
          imp.location,
          `${both.map((k) => (k === 'metaDisk' ? 'meta-disk' : k)).join(', ')} written both outside and inside 'volume 0'`,
        );
      }
    }
    out.set(0, v0 ? [imp, v0] : [imp]);
    return out;
  }

  private mergeVolumes(
    res: string,
    h: RawHost,
    resLevel: Map<number, RawVolume[]>,
    resDisk: OptionMap,
  ): VolumeConfig[] {
    const byNumber = new Map<number, RawVolume[]>();
    for (const level of [resLevel, this.levelVolumes(h.volumes)]) {
      for (const [n, vs] of level) byNumber.set(n, [...(byNumber.get(n) ?? []), ...vs]);
    }
    const out: VolumeConfig[] = [];
    for (const n of [...byNumber.keys()].sort((a, b) => a - b)) {
      const parts = byNumber.get(n) ?? [];
      // Later levels (the host) override earlier ones (the resource), field by field.
      const pick = <K extends 'device' | 'disk' | 'metaDisk'>(k: K): RawVolume[K] | undefined => {
        let r: RawVolume[K] | undefined;
        for (const p of parts) if (p[k] !== undefined) r = p[k];
        return r;
      };
      const device = pick('device');
      const disk = pick('disk');
      const metaDisk = pick('metaDisk');
      const where = `volume ${n} of resource '${res}' on host '${h.name}'`;
      const bad = (f: string): boolean => parts.some((p) => p.bad.has(f));
      if (!device && !bad('device'))
        this.error(
          h.location,
          `${where} has no device`,
          "'device ...;' in the resource, the host or the volume",
        );
      if (disk === undefined && !bad('disk'))
        this.error(h.location, `${where} has no disk`, "'disk PATH;' or 'disk none;'");
      if (disk !== null && disk !== undefined && !metaDisk && !bad('meta-disk')) {
        this.error(
          h.location,
          `${where} has no meta-disk`,
          "'meta-disk internal;' or 'meta-disk PATH;'",
        );
      }
      if (!device || disk === undefined) continue;
      const diskOptions: MutableOptions = { ...resDisk };
      for (const p of parts) Object.assign(diskOptions, p.diskOptions);
      out.push({ number: n, device, disk, metaDisk: metaDisk ?? null, diskOptions });
    }
    return out;
  }

  private buildConnections(
    res: string,
    location: SourceLocation,
    byName: Map<string, HostConfig>,
    hosts: HostConfig[],
    raw: RawConnection[],
    mesh: { hosts: Token[]; net: MutableOptions; location: SourceLocation } | null,
    resNet: OptionMap,
  ): ConnectionConfig[] {
    const out: ConnectionConfig[] = [];
    const pairKey = (a: string, b: string): string => (a < b ? `${a}\u0000${b}` : `${b}\u0000${a}`);
    const pairs = new Map<string, SourceLocation>();
    const names = [...byName.keys()];
    const knownHost = (ep: { host: string; location: SourceLocation }): HostConfig | undefined => {
      const h = byName.get(ep.host);
      if (!h)
        this.error(
          ep.location,
          `host '${printable(ep.host)}' is not defined in resource '${res}'`,
          `one of ${names.join(', ') || "the resource's 'on' hosts"}`,
          didYouMean(ep.host, names),
        );
      return h;
    };
    const resolveEp = (
      ep: RawEndpoint,
      h: HostConfig,
      portOverride: number | null,
    ): PathConfig['endpoints'][0] | undefined => {
      if (ep.address) return { host: h.name, address: ep.address };
      if (!h.address) {
        if (this.badAddress.has(h)) return undefined;
        this.error(
          ep.location,
          `no address for host '${h.name}': neither its 'on' section nor this connection gives one`,
          "'host NAME address IP:PORT'",
        );
        return undefined;
      }
      return {
        host: h.name,
        address: portOverride === null ? h.address : { ...h.address, port: portOverride },
      };
    };
    const meshNet: OptionMap = mesh ? { ...resNet, ...mesh.net } : resNet;

    for (const c of raw) {
      if (c.badEndpoints > 0) continue; // reported where the host statement was wrong
      let pairNames: [string, string] | null = null;
      const paths: PathConfig[] = [];
      if (c.hosts.length > 0) {
        if (c.hosts.length !== 2) {
          this.error(
            c.location,
            `a connection names exactly two hosts, this one names ${c.hosts.length}`,
            "two 'host' statements",
          );
          continue;
        }
        const [e1, e2] = c.hosts as [RawEndpoint, RawEndpoint];
        const h1 = knownHost(e1);
        const h2 = knownHost(e2);
        if (!h1 || !h2) continue;
        pairNames = [h1.name, h2.name];
        if (c.paths.length === 0) {
          const p1 = resolveEp(e1, h1, e1.port);
          const p2 = resolveEp(e2, h2, e2.port);
          if (p1 && p2) paths.push({ endpoints: [p1, p2] });
        }
      }
      for (const p of c.paths) {
        if (p.endpoints.length !== 2) {
          this.error(
            p.location,
            `a path names exactly two hosts, this one names ${p.endpoints.length}`,
            "two 'host NAME address IP:PORT' statements",
          );
          continue;
        }
        const [e1, e2] = p.endpoints as [RawEndpoint, RawEndpoint];
        const h1 = knownHost(e1);
        const h2 = knownHost(e2);
        if (!h1 || !h2) continue;
        if (pairNames === null) pairNames = [h1.name, h2.name];
        else if (pairKey(h1.name, h2.name) !== pairKey(...pairNames)) {
          this.error(
            p.location,
            `this path joins '${h1.name}' and '${h2.name}' but its connection joins '${pairNames[0]}' and '${pairNames[1]}'`,
          );
          continue;
        }
        const p1 = resolveEp(e1, h1, e1.port);
        const p2 = resolveEp(e2, h2, e2.port);
        if (p1 && p2) paths.push({ endpoints: [p1, p2] });
      }
      if (pairNames === null) {
        if (c.paths.length > 0 || c.hosts.length > 0) continue; // the hosts were reported already
        this.error(
          c.location,
          "a connection needs two 'host' statements or at least one 'path'",
          "'host NAME ...;' or 'path { ... }'",
        );
        continue;
      }
      if (pairNames[0] === pairNames[1]) {
        this.error(c.location, `a connection from host '${pairNames[0]}' to itself`);
        continue;
      }
      const key = pairKey(...pairNames);
      const first = pairs.get(key);
      if (first) {
        this.error(
          c.location,
          `a second connection between '${pairNames[0]}' and '${pairNames[1]}' (the first is at line ${first.line})`,
        );
        continue;
      }
      pairs.set(key, c.location);
      this.checkPaths(paths, c.location);
      out.push({
        name: c.name,
        hosts: pairNames,
        paths,
        net: { ...meshNet, ...c.net },
        netOverrides: c.net,
        diskOverrides: c.disk,
        origin: 'connection',
        location: c.location,
      });
    }

    // A mesh, or with no connections at all every pair of hosts, connects over the `on` addresses.
    let implicit: {
      names: string[];
      origin: 'mesh' | 'implicit';
      location: SourceLocation;
    } | null = null;
    if (mesh) {
      const meshNames: string[] = [];
      for (const t of mesh.hosts) {
        const h = knownHost({ host: t.text, location: t.location });
        if (!h) continue;
        if (meshNames.includes(h.name))
          this.error(t.location, `host '${h.name}' is listed twice in 'connection-mesh'`);
        else meshNames.push(h.name);
      }
      implicit = { names: meshNames, origin: 'mesh', location: mesh.location };
    } else if (raw.length === 0) {
      if (hosts.length > 2) {
        // drbdadm warns too (and then connects nothing); Tandem connects every pair.
        this.warning(
          location,
          `resource '${res}' has ${hosts.length} hosts but no 'connection' or 'connection-mesh' section: Tandem connects every pair; write 'connection-mesh { hosts ...; }' to say so`,
        );
      }
      implicit = { names: hosts.map((h) => h.name), origin: 'implicit', location };
    }
    if (implicit) {
      const ns = implicit.names;
      for (let i = 0; i < ns.length; i++) {
        for (let j = i + 1; j < ns.length; j++) {
          const a = byName.get(ns[i] as string) as HostConfig;
          const b = byName.get(ns[j] as string) as HostConfig;
          if (pairs.has(pairKey(a.name, b.name))) continue;
          pairs.set(pairKey(a.name, b.name), implicit.location);
          const paths: PathConfig[] = [];
          for (const h of [a, b]) {
            if (!h.address && !this.badAddress.has(h))
              this.error(
                h.location,
                `host '${h.name}' has no address and no connection gives one`,
                "'address IP:PORT;'",
              );
          }
          if (a.address && b.address) {
            paths.push({
              endpoints: [
                { host: a.name, address: a.address },
                { host: b.name, address: b.address },
              ],
            });
            this.checkPaths(paths, implicit.location);
          }
          out.push({
            name: null,
            hosts: [a.name, b.name],
            paths,
            net: implicit.origin === 'mesh' ? meshNet : resNet,
            netOverrides: {},
            diskOverrides: {},
            origin: implicit.origin,
            location: implicit.location,
          });
        }
      }
    }
    return out;
  }

  private checkPaths(paths: readonly PathConfig[], location: SourceLocation): void {
    for (const p of paths) {
      const [a, b] = p.endpoints;
      if (a.address.family !== b.address.family) {
        this.error(
          location,
          `a path joins ${a.address.family} address of '${a.host}' with ${b.address.family} address of '${b.host}'`,
          'the same address family on both ends',
        );
      }
    }
  }

  /**
   * TLS (`net { tls yes; }`): the three PEM files named, absolute; only on the plain tcp
   * transport (multipath sessions and the fabric transport do not carry TLS, so they are refused
   * rather than run in clear); and one listening address of a host never serves connections
   * that disagree about TLS (its listener either speaks TLS or does not).
   */
  private checkTls(r: ResourceConfig): void {
    const said = new Set<string>();
    const once = (location: SourceLocation, message: string, expected?: string): void => {
      const key = `${location.file}:${location.line}:${location.column}:${message}`;
      if (said.has(key)) return;
      said.add(key);
      this.error(location, message, expected);
    };
    for (const p of tlsProblems(r.sections.net))
      once(
        r.location,
        `resource '${r.name}': net: ${p}`,
        "'tls-certificate FILE; tls-privkey FILE; tls-ca FILE;'",
      );
    // An nbds:// export presents tls-certificate and checks clients against tls-ca, with or
    // without `tls yes` for replication.
    for (const h of r.hosts) {
      for (const v of h.volumes) {
        if (v.device.kind === 'drbd' || !v.device.tls) continue;
        const net = r.sections.net;
        const missing = TLS_FILE_OPTIONS.filter((o) => typeof net[o] !== 'string' || net[o] === '');
        if (missing.length > 0)
          once(
            h.location,
            `resource '${r.name}', on ${h.name}: device "${v.device.uri}" is NBD over TLS and needs ${missing.join(', ')} in net { }`,
            "'tls-certificate FILE; tls-privkey FILE; tls-ca FILE;'",
          );
      }
    }
    const listening = new Map<string, { key: string; peer: string }>();
    for (const c of r.connections) {
      const what = `resource '${r.name}', connection ${c.hosts[0]}-${c.hosts[1]}`;
      if (c.net !== r.sections.net) {
        const where = c.origin === 'mesh' ? `resource '${r.name}', connection-mesh` : what;
        for (const p of tlsProblems(c.net))
          once(
            c.location,
            `${where}: net: ${p}`,
            "'tls-certificate FILE; tls-privkey FILE; tls-ca FILE;'",
          );
      }
      if (tlsEnabled(c.net)) {
        const transport = c.net['transport'];
        const families = new Set(c.paths.flatMap((p) => p.endpoints.map((e) => e.address.family)));
        const refuse = (why: string): void =>
          once(c.location, `${what}: tls yes is supported on the tcp transport only, not ${why}`);
        if (transport === 'multipath' || transport === 'rdma' || transport === 'fabric')
          refuse(`with transport ${transport}`);
        if (c.paths.length > 1) refuse(`over ${c.paths.length} paths (a multipath session)`);
        if (c.net['load-balance-paths'] === true) refuse('with load-balance-paths');
        for (const f of ['sdp', 'ssocks'] as const)
          if (families.has(f)) refuse(`over address ${f}`);
      }
      const key = tlsKey(c.net);
      for (const p of c.paths) {
        for (const e of p.endpoints) {
          const at = `${e.host}\u0000${e.address.ip}\u0000${e.address.port}`;
          const other = p.endpoints.find((x) => x !== e)?.host ?? '';
          const prev = listening.get(at);
          if (prev === undefined) listening.set(at, { key, peer: other });
          else if (prev.key !== key)
            once(
              c.location,
              `${what}: host '${e.host}' listens on ${formatAddress(e.address)} for '${prev.peer}' and '${other}' with different tls settings; one address either speaks TLS or not`,
              'the same tls, tls-certificate, tls-privkey and tls-ca for both connections',
            );
        }
      }
    }
  }

  /** Across resources, on each host: a DRBD minor, an NBD export, an address:port used once. */
  private checkAcrossResources(): void {
    const names = this.resources.map((r) => r.name);
    for (const r of this.resources) this.checkTls(r);
    for (const r of this.resources) {
      const after = r.sections.disk['resync-after'];
      if (typeof after !== 'string') continue;
      const target = after.split('/')[0] ?? '';
      if (!names.includes(target) || target === r.name) {
        this.error(
          r.location,
          `resource '${r.name}': resync-after names '${after}', which is ${target === r.name ? 'itself' : 'not a resource of this configuration'}`,
          'another resource name',
          didYouMean(target, names),
        );
      }
    }

    const minors = new Map<string, string>();
    const exports = new Map<string, string>();
    const endpoints = new Map<string, string>();
    for (const r of this.resources) {
      const seenHere = new Set<string>();
      for (const h of r.hosts) {
        for (const v of h.volumes) {
          const d = v.device;
          const [map, key, what] =
            d.kind === 'drbd'
              ? [minors, `${h.name}\u0000${d.minor}`, `minor ${d.minor}`]
              : [exports, `${h.name}\u0000${d.uri}`, `device ${d.uri}`];
          const other = map.get(key);
          if (other !== undefined && other !== `${r.name}/${v.number}`) {
            this.error(
              h.location,
              `${what} on host '${h.name}' is used by both ${other.replace('/', ' volume ')} and ${r.name} volume ${v.number}`,
            );
          } else map.set(key, `${r.name}/${v.number}`);
        }
      }
      for (const c of r.connections) {
        for (const p of c.paths) {
          for (const e of p.endpoints) {
            const key = `${e.host}\u0000${e.address.ip}\u0000${e.address.port}`;
            if (seenHere.has(key)) continue;
            seenHere.add(key);
            const other = endpoints.get(key);
            if (other !== undefined && other !== r.name) {
              this.error(
                c.location,
                `address ${formatAddress(e.address)} of host '${e.host}' is used by both resource '${other}' and '${r.name}'`,
              );
            } else endpoints.set(key, r.name);
          }
        }
      }
    }
  }
}

/** drbdadm's `skip { ... }` comments out a block, at any level. */
function stripSkips(statements: readonly Statement[]): Statement[] {
  return statements
    .filter((st) => !(st.keyword.text === 'skip' && st.body !== null))
    .map((st) => (st.body === null ? st : { ...st, body: stripSkips(st.body) }));
}

function hasInclude(st: Statement): boolean {
  return st.keyword.text === 'include' || (st.body?.some(hasInclude) ?? false);
}

function implicitVolume(v: RawVolumes, location: SourceLocation): RawVolume {
  v.implicit ??= { diskOptions: {}, location, bad: new Set() };
  return v.implicit;
}

function mergeSections(base: Sections, own: Sections): Sections {
  const out = emptySections();
  for (const s of SECTION_NAMES) out[s] = { ...base[s], ...own[s] };
  return out;
}

export function formatAddress(a: Address): string {
  const ip = a.family === 'ipv6' ? `[${a.ip}]` : a.ip;
  return `${a.family} ${ip}:${a.port}`;
}

/** `IP:PORT` or `[IPv6]:PORT`, checked (octets 0..255, port 1..65535). */
export function parseAddress(
  text: string,
  family: AddressFamily | null,
): { ok: true; address: Address } | { ok: false; error: string; expected: string } {
  const expected =
    family === 'ipv6' || (family === null && text.startsWith('[')) ? '[IPv6]:PORT' : 'A.B.C.D:PORT';
  let ip: string;
  let portText: string;
  const v6 = /^\[([^\]]*)\]:([^:]*)$/.exec(text);
  if (v6) {
    ip = v6[1] ?? '';
    portText = v6[2] ?? '';
    if (family !== null && family !== 'ipv6')
      return {
        ok: false,
        error: `'${printable(text)}' is an IPv6 address but the family is ${family}`,
        expected: "'ipv6'",
      };
    if (!isIPv6(ip))
      return { ok: false, error: `'${printable(ip)}' is not an IPv6 address`, expected };
    family = 'ipv6';
  } else {
    const idx = text.lastIndexOf(':');
    if (idx < 0) return { ok: false, error: `'${printable(text)}' has no port`, expected };
    ip = text.slice(0, idx);
    portText = text.slice(idx + 1);
    if (family === 'ipv6')
      return {
        ok: false,
        error: `IPv6 address '${printable(text)}' must be written in brackets`,
        expected,
      };
    const octets = ip.split('.');
    if (octets.length !== 4 || octets.some((o) => !/^[0-9]{1,3}$/.test(o))) {
      return { ok: false, error: `'${printable(ip)}' is not an IPv4 address`, expected };
    }
    const bad = octets.find((o) => Number(o) > 255);
    if (bad !== undefined)
      return {
        ok: false,
        error: `IPv4 address '${printable(ip)}' has an octet over 255 (${bad})`,
        expected: 'octets 0..255',
      };
    family ??= 'ipv4';
  }
  if (!/^[0-9]{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
    return {
      ok: false,
      error: `'${printable(portText)}' is not a valid port`,
      expected: 'a port 1..65535',
    };
  }
  return { ok: true, address: { family, ip, port: Number(portText) } };
}

/**
 * Tandem's NBD device URIs: `nbd://HOST[:PORT]/NAME` and `nbd+unix:///NAME?socket=PATH`, and
 * their TLS forms `nbds://` and `nbds+unix://` (libnbd's spelling): the export then requires TLS.
 */
export function parseNbdUri(
  uri: string,
): { ok: true; device: DeviceSpec } | { ok: false; error: string; expected: string } {
  const expected = 'nbd[s]://HOST:PORT/NAME or nbd[s]+unix:///NAME?socket=PATH';
  const tls = /^nbds[:+]/.test(uri);
  const tcp = /^nbds?:\/\/(\[[^\]]+\]|[^/:?#[\]]+)(?::([0-9]*))?(?:\/([^?#]*))?$/.exec(uri);
  if (tcp) {
    const hostPart = tcp[1] ?? '';
    const host = hostPart.startsWith('[') ? hostPart.slice(1, -1) : hostPart;
    if (hostPart.startsWith('[') && !isIPv6(host))
      return { ok: false, error: `'${printable(host)}' is not an IPv6 address`, expected };
    const portText = tcp[2];
    const port = portText === undefined || portText === '' ? 10809 : Number(portText);
    if (!Number.isInteger(port) || port < 1 || port > 65535)
      return {
        ok: false,
        error: `'${printable(portText ?? '')}' is not a valid port in '${printable(uri)}'`,
        expected: 'a port 1..65535',
      };
    const name = decodeName(tcp[3] ?? '');
    if (name === null)
      return {
        ok: false,
        error: `bad %-escape in the export name of '${printable(uri)}'`,
        expected,
      };
    return { ok: true, device: { kind: 'nbd-tcp', uri, host, port, exportName: name, tls } };
  }
  const unix = /^nbds?\+unix:\/\/\/([^?#]*)\?(.*)$/.exec(uri);
  if (unix) {
    const name = decodeName(unix[1] ?? '');
    if (name === null)
      return {
        ok: false,
        error: `bad %-escape in the export name of '${printable(uri)}'`,
        expected,
      };
    let socketPath: string | null = null;
    for (const kv of (unix[2] ?? '').split('&')) {
      const eq = kv.indexOf('=');
      const k = eq < 0 ? kv : kv.slice(0, eq);
      if (k !== 'socket')
        return {
          ok: false,
          error: `unknown query parameter '${printable(k)}' in '${printable(uri)}'`,
          expected: 'socket=PATH',
        };
      socketPath = decodeName(eq < 0 ? '' : kv.slice(eq + 1));
    }
    if (socketPath === null || !socketPath.startsWith('/')) {
      return {
        ok: false,
        error: `'${printable(uri)}' needs an absolute socket path`,
        expected: 'nbd+unix:///NAME?socket=/ABSOLUTE/PATH',
      };
    }
    return { ok: true, device: { kind: 'nbd-unix', uri, socketPath, exportName: name, tls } };
  }
  if (/^nbds?\+unix:/.test(uri))
    return {
      ok: false,
      error: `'${printable(uri)}' needs '?socket=PATH'`,
      expected: 'nbd+unix:///NAME?socket=PATH',
    };
  return { ok: false, error: `'${printable(uri)}' is not a Tandem NBD device URI`, expected };
}

function decodeName(s: string): string | null {
  try {
    return decodeURIComponent(s);
  } catch {
    return null;
  }
}

/** drbdadm lets `/dev/` be left out of a device path. */
function devPath(p: string): string {
  return p.startsWith('/') ? p : `/dev/${p}`;
}
