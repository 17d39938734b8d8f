// The normalized configuration model: what every other layer reads. Produced by loadConfig from
// drbd.conf syntax with includes expanded and inheritance applied (common -> resource -> host).
// Option values carry DRBD's native unit for that option (see OPTION_SCHEMAS and docs/CONFIG.md).

/** Where something was written: file, 1-based line and column. */
export interface SourceLocation {
  readonly file: string;
  readonly line: number;
  readonly column: number;
}

export type DiagnosticSeverity = 'error' | 'warning';

/** One problem found in a configuration, located, with an optional did-you-mean. */
export interface ConfigDiagnostic {
  readonly severity: DiagnosticSeverity;
  readonly location: SourceLocation;
  readonly message: string;
  /** What the parser expected at this point, when it knows (e.g. "';'", "a port 1..65535"). */
  readonly expected?: string;
  /** A close, valid keyword when the written one is misspelt. */
  readonly suggestion?: string;
}

export type AddressFamily = 'ipv4' | 'ipv6' | 'sdp' | 'ssocks';

/** An endpoint: `address [ipv4|ipv6|sdp|ssocks] IP:PORT`. IPv6 ip is stored without brackets. */
export interface Address {
  readonly family: AddressFamily;
  readonly ip: string;
  readonly port: number;
}

/**
 * A volume's device. DRBD's `/dev/drbdN` / `minor N` forms, or Tandem's NBD export URIs:
 * `nbd://HOST:PORT/NAME` (TCP) and `nbd+unix:///NAME?socket=PATH` (Unix socket); `nbds` for TLS.
 */
export type DeviceSpec =
  | { readonly kind: 'drbd'; readonly path: string | null; readonly minor: number }
  | {
      readonly kind: 'nbd-tcp';
      readonly uri: string;
      readonly host: string;
      readonly port: number;
      readonly exportName: string;
      /** `nbds://`: the export is served only over TLS (NBD_OPT_STARTTLS). */
      readonly tls: boolean;
    }
  | {
      readonly kind: 'nbd-unix';
      readonly uri: string;
      readonly socketPath: string;
      readonly exportName: string;
      /** `nbds+unix://`: the export is served only over TLS. */
      readonly tls: boolean;
    };

/** `meta-disk internal | PATH [INDEX]` or `flexible-meta-disk PATH` / `meta-disk PATH` (flexible). */
export type MetaDiskSpec =
  | { readonly kind: 'internal' }
  | { readonly kind: 'external'; readonly path: string; readonly index: number }
  | { readonly kind: 'flexible'; readonly path: string };

/** One replicated volume on one host, after inheritance. `disk: null` is DRBD's `disk none` (diskless). */
export interface VolumeConfig {
  readonly number: number;
  readonly device: DeviceSpec;
  readonly disk: string | null;
  readonly metaDisk: MetaDiskSpec | null;
  /** Per-volume `disk { }` options (merged over the resource's disk section). */
  readonly diskOptions: OptionMap;
}

/** An option value in the option's native unit: numbers, yes/no, or text (enums, commands, secrets). */
export type OptionValue = number | boolean | string;
export type OptionMap = Readonly<Record<string, OptionValue>>;

export type SectionName = 'net' | 'disk' | 'options' | 'startup' | 'handlers';
export type Sections = Readonly<Record<SectionName, OptionMap>>;

export interface HostConfig {
  /** The `on NAME` name (a node name, matched by --node), or `IP:PORT` (`[IP]:PORT`) for `floating`, as drbdadm names it. */
  readonly name: string;
  /** DRBD 8's `on alpha beta { }`: every name the section answers to (first = `name`); absent for one name. */
  readonly names?: readonly string[];
  readonly nodeId: number | null;
  readonly address: Address | null;
  readonly floating: boolean;
  readonly volumes: readonly VolumeConfig[];
  /** Per-host `options { }` (resource options for this host only; accepted, no effect yet). */
  readonly options?: OptionMap;
  readonly location: SourceLocation;
}

/** One path of a connection: one endpoint per host. */
export interface PathConfig {
  readonly endpoints: readonly [PathEndpoint, PathEndpoint];
}
export interface PathEndpoint {
  readonly host: string;
  readonly address: Address;
}

/** A connection between two hosts with its paths and per-connection option overrides. */
export interface ConnectionConfig {
  readonly name: string | null;
  readonly hosts: readonly [string, string];
  readonly paths: readonly PathConfig[];
  /** Effective net options: resource net, then connection-mesh net, then this connection's. */
  readonly net: OptionMap;
  /** Only the options written in this connection's own `net {}` (what dump prints). */
  readonly netOverrides: OptionMap;
  /** Peer-device options written in the connection's `disk {}`. */
  readonly diskOverrides: OptionMap;
  /** How it came to be: written as `connection`, derived from `connection-mesh`, or implicit (2 hosts). */
  readonly origin: 'connection' | 'mesh' | 'implicit';
  readonly location: SourceLocation;
}

export interface ResourceConfig {
  readonly name: string;
  readonly location: SourceLocation;
  readonly hosts: readonly HostConfig[];
  readonly connections: readonly ConnectionConfig[];
  /** `connection-mesh { hosts ...; }` as written, or null. */
  readonly mesh: { readonly hosts: readonly string[]; readonly net: OptionMap } | null;
  /** Effective sections (common merged under the resource's own). */
  readonly sections: Sections;
  /** Only what the resource itself wrote (what dump prints; common is printed separately). */
  readonly ownSections: Sections;
  /** Per-volume `disk { }` options written in the resource's `volume N { }`, by volume number. */
  readonly volumeDiskOverrides: Readonly<Record<number, OptionMap>>;
}

export interface GlobalConfig {
  readonly options: OptionMap;
}

export interface TandemConfig {
  /** Every file read, entry file first, includes in the order they were expanded. */
  readonly files: readonly string[];
  readonly global: GlobalConfig;
  readonly common: Sections;
  readonly resources: readonly ResourceConfig[];
}

export interface LoadedConfig {
  readonly config: TandemConfig;
  readonly warnings: ConfigDiagnostic[];
}
