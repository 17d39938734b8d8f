// The transport doctor: checks what the configured transports need on this node (IPoIB
// interface, connected mode and MTU, RDMA ports Active, libfabric providers, an Ethernet
// fallback for ssocks, socket buffers vs kernel limits) and says how to fix each miss. Pure:
// /sys and /proc come through a DoctorFs rooted anywhere, so tests feed it fake trees.

/** What the doctor is asked to check: one local endpoint of a resource. */
export interface DoctorTarget {
  readonly resource: string;
  /** `address [ipv4|ipv6|sdp|ssocks] IP:PORT` of this node. */
  readonly family: 'ipv4' | 'ipv6' | 'sdp' | 'ssocks';
  readonly ip: string;
  readonly port: number;
  /** net { transport } of the resource. */
  readonly transport: string;
  /** net { sndbuf-size rcvbuf-size } in bytes; 0 = auto. */
  readonly sndbufBytes: number;
  readonly rcvbufBytes: number;
  /** net { fabric-provider }, when set. */
  readonly provider?: string;
}

/** Reads a sysfs/procfs tree; null when the path does not exist. */
export interface DoctorFs {
  readFile(path: string): string | null;
  readDir(path: string): readonly string[] | null;
}

export interface DoctorInput {
  readonly targets: readonly DoctorTarget[];
  readonly fs: DoctorFs;
  /** Interface name -> its addresses (os.networkInterfaces() shape, addresses only). */
  readonly interfaces: Readonly<Record<string, readonly string[]>>;
  /** libfabric providers offering FI_EP_MSG here, or the reason none can be listed. */
  readonly providers:
    | { readonly ok: true; readonly names: readonly string[] }
    | { readonly ok: false; readonly error: string };
}

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface DoctorCheck {
  readonly id: string;
  readonly status: CheckStatus;
  /** What was checked (an interface, a device port, a resource). */
  readonly subject: string;
  readonly message: string;
  /** How to fix it, when status is not ok. */
  readonly fix?: string;
}

export interface DoctorReport {
  readonly ok: boolean;
  readonly checks: readonly DoctorCheck[];
}

/** ARPHRD_INFINIBAND: /sys/class/net/IF/type of an IPoIB interface. */
const ARPHRD_INFINIBAND = 32;
/** Largest IPoIB MTU (connected mode). */
export const IPOIB_CONNECTED_MTU_MAX = 65520;

const needsFabric = (t: DoctorTarget): boolean =>
  t.family === 'sdp' || t.family === 'ssocks' || t.transport === 'rdma' || t.transport === 'fabric';

const trimmed = (s: string | null): string | null => (s === null ? null : s.trim());

export function runDoctor(input: DoctorInput): DoctorReport {
  const checks: DoctorCheck[] = [];
  const fabricTargets = input.targets.filter(needsFabric);
  for (const t of fabricTargets) checks.push(...checkInterface(input, t));
  if (fabricTargets.length > 0) {
    checks.push(...checkRdmaDevices(input.fs));
    checks.push(...checkProviders(input, fabricTargets));
  }
  for (const t of input.targets.filter((x) => x.family === 'ssocks')) {
    checks.push(checkFallback(input.targets, t));
  }
  checks.push(...checkBuffers(input));
  return { ok: checks.every((c) => c.status !== 'fail'), checks };
}

function interfaceOf(input: DoctorInput, ip: string): string | null {
  for (const [name, addrs] of Object.entries(input.interfaces)) {
    if (addrs.includes(ip)) return name;
  }
  return null;
}

function checkInterface(input: DoctorInput, t: DoctorTarget): DoctorCheck[] {
  const subject = `${t.resource}: ${t.family} ${t.ip}:${t.port}`;
  const ifname = interfaceOf(input, t.ip);
  if (ifname === null) {
    return [
      {
        id: 'ipoib-address',
        status: 'fail',
        subject,
        message: `no interface on this node carries ${t.ip}`,
        fix: `put the address on the IPoIB interface: ip addr add ${t.ip}/24 dev ib0 (adjust prefix and device)`,
      },
    ];
  }
  const out: DoctorCheck[] = [
    { id: 'ipoib-address', status: 'ok', subject, message: `${t.ip} is on ${ifname}` },
  ];
  const base = `/sys/class/net/${ifname}`;
  const type = Number(trimmed(input.fs.readFile(`${base}/type`)) ?? NaN);
  if (type !== ARPHRD_INFINIBAND) {
    out.push({
      id: 'ipoib-interface',
      status: t.family === 'sdp' ? 'warn' : 'ok',
      subject: ifname,
      message: Number.isNaN(type)
        ? `${ifname}: no ${base}/type`
        : `${ifname} is not IPoIB (link type ${type}); fine for RoCE, but sdp expects an IPoIB address`,
      ...(t.family === 'sdp'
        ? { fix: `use the address of an IPoIB interface (ib0, ...) for sdp` }
        : {}),
    });
    return out;
  }
  out.push({ id: 'ipoib-interface', status: 'ok', subject: ifname, message: `${ifname} is IPoIB` });
  const mode = trimmed(input.fs.readFile(`${base}/mode`));
  out.push(
    mode === 'connected'
      ? {
          id: 'ipoib-mode',
          status: 'ok',
          subject: ifname,
          message: `${ifname} runs in connected mode`,
        }
      : {
          id: 'ipoib-mode',
          status: 'warn',
          subject: ifname,
          message: `${ifname} runs in ${mode ?? 'unknown'} mode (datagram caps the MTU near 4 KiB)`,
          fix: `echo connected > ${base}/mode (or CONNECTED_MODE=yes in the interface config)`,
        },
  );
  const mtu = Number(trimmed(input.fs.readFile(`${base}/mtu`)) ?? NaN);
  if (Number.isNaN(mtu)) {
    out.push({
      id: 'ipoib-mtu',
      status: 'warn',
      subject: ifname,
      message: `cannot read ${base}/mtu`,
    });
  } else if (mtu > IPOIB_CONNECTED_MTU_MAX) {
    out.push({
      id: 'ipoib-mtu',
      status: 'fail',
      subject: ifname,
      message: `MTU ${mtu} exceeds the IPoIB maximum ${IPOIB_CONNECTED_MTU_MAX}`,
      fix: `ip link set ${ifname} mtu ${IPOIB_CONNECTED_MTU_MAX}`,
    });
  } else if (mode === 'connected' && mtu < IPOIB_CONNECTED_MTU_MAX) {
    out.push({
      id: 'ipoib-mtu',
      status: 'warn',
      subject: ifname,
      message: `MTU ${mtu}; connected mode allows up to ${IPOIB_CONNECTED_MTU_MAX}`,
      fix: `ip link set ${ifname} mtu ${IPOIB_CONNECTED_MTU_MAX}`,
    });
  } else {
    out.push({ id: 'ipoib-mtu', status: 'ok', subject: ifname, message: `MTU ${mtu}` });
  }
  return out;
}

function checkRdmaDevices(fs: DoctorFs): DoctorCheck[] {
  const devices = fs.readDir('/sys/class/infiniband') ?? [];
  if (devices.length === 0) {
    return [
      {
        id: 'rdma-device',
        status: 'fail',
        subject: '/sys/class/infiniband',
        message: 'no RDMA device on this node',
        fix:
          'load the HCA driver (e.g. modprobe mlx5_ib ib_ipoib), or for a test: ' +
          'modprobe rdma_rxe && rdma link add rxe0 type rxe netdev eth0; verbs then needs rdma-core ibverbs-providers',
      },
    ];
  }
  const out: DoctorCheck[] = [];
  for (const dev of [...devices].sort()) {
    const ports = fs.readDir(`/sys/class/infiniband/${dev}/ports`) ?? [];
    if (ports.length === 0) {
      out.push({ id: 'rdma-port', status: 'warn', subject: dev, message: `${dev} lists no ports` });
    }
    for (const port of [...ports].sort()) {
      const p = `/sys/class/infiniband/${dev}/ports/${port}`;
      const state = trimmed(fs.readFile(`${p}/state`)) ?? 'unknown';
      const phys = trimmed(fs.readFile(`${p}/phys_state`)) ?? 'unknown';
      const layer = trimmed(fs.readFile(`${p}/link_layer`)) ?? 'InfiniBand';
      const subject = `${dev} port ${port}`;
      if (/ACTIVE/i.test(state)) {
        out.push({
          id: 'rdma-port',
          status: 'ok',
          subject,
          message: `${state} (${phys}, ${layer})`,
        });
      } else if (!/LinkUp/i.test(phys)) {
        out.push({
          id: 'rdma-port',
          status: 'fail',
          subject,
          message: `physical link is ${phys}`,
          fix: 'check the cable and the switch or peer port',
        });
      } else if (/INIT/i.test(state) && layer === 'InfiniBand') {
        out.push({
          id: 'subnet-manager',
          status: 'fail',
          subject,
          message: `port is ${state}: link up but no subnet manager has configured it`,
          fix: 'run a subnet manager: on a back-to-back link start opensm on one node (apt-get install opensm; opensm -B)',
        });
      } else {
        out.push({
          id: 'rdma-port',
          status: 'fail',
          subject,
          message: `port is ${state} (${phys})`,
          fix: 'bring the port up (ip link set IF up for RoCE; a subnet manager for InfiniBand)',
        });
      }
    }
  }
  return out;
}

function checkProviders(input: DoctorInput, targets: readonly DoctorTarget[]): DoctorCheck[] {
  const p = input.providers;
  if (!p.ok) {
    return [
      {
        id: 'libfabric',
        status: 'fail',
        subject: 'libfabric',
        message: p.error,
        fix: 'apt-get install libfabric-dev, then npm rebuild',
      },
    ];
  }
  const out: DoctorCheck[] = [
    {
      id: 'libfabric',
      status: p.names.length > 0 ? 'ok' : 'fail',
      subject: 'libfabric',
      message:
        p.names.length > 0
          ? `FI_EP_MSG providers: ${[...new Set(p.names)].join(', ')}`
          : 'no libfabric provider offers FI_EP_MSG here',
      ...(p.names.length > 0
        ? {}
        : { fix: 'apt-get install libfabric1; fi_info -l lists providers' }),
    },
  ];
  const wanted = new Set(targets.map((t) => t.provider ?? 'verbs'));
  for (const w of wanted) {
    const have = p.names.includes(w);
    out.push({
      id: 'fabric-provider',
      status: have ? 'ok' : w === 'verbs' ? 'warn' : 'fail',
      subject: w,
      message: have
        ? `provider ${w} is available`
        : w === 'verbs'
          ? 'provider verbs is not available: RDMA falls back to the tcp provider (no RDMA)'
          : `provider ${w} (fabric-provider) is not available`,
      ...(have
        ? {}
        : {
            fix:
              w === 'verbs'
                ? 'apt-get install rdma-core ibverbs-providers librdmacm1, and an RDMA device'
                : 'apt-get install libfabric1; fi_info -l lists providers',
          }),
    });
  }
  return out;
}

function checkFallback(all: readonly DoctorTarget[], t: DoctorTarget): DoctorCheck {
  const fallback = all.find(
    (x) => x.resource === t.resource && (x.family === 'ipv4' || x.family === 'ipv6'),
  );
  return fallback !== undefined
    ? {
        id: 'ssocks-fallback',
        status: 'ok',
        subject: t.resource,
        message: `Ethernet fallback ${fallback.family} ${fallback.ip}:${fallback.port}`,
      }
    : {
        id: 'ssocks-fallback',
        status: 'warn',
        subject: t.resource,
        message: 'ssocks has no fallback Ethernet address: losing the fabric loses the connection',
        fix: 'add a second path with an Ethernet address: path { host A address ipv4 IP:PORT; host B address ipv4 IP:PORT; }',
      };
}

function checkBuffers(input: DoctorInput): DoctorCheck[] {
  const out: DoctorCheck[] = [];
  const limits = [
    {
      key: 'sndbufBytes',
      opt: 'sndbuf-size',
      sysctl: 'net.core.wmem_max',
      path: '/proc/sys/net/core/wmem_max',
    },
    {
      key: 'rcvbufBytes',
      opt: 'rcvbuf-size',
      sysctl: 'net.core.rmem_max',
      path: '/proc/sys/net/core/rmem_max',
    },
  ] as const;
  for (const l of limits) {
    const want = Math.max(0, ...input.targets.map((t) => t[l.key]));
    if (want === 0) continue;
    const max = Number(trimmed(input.fs.readFile(l.path)) ?? NaN);
    const subject = `${l.opt} ${want}`;
    if (Number.isNaN(max)) {
      out.push({ id: 'socket-buffers', status: 'warn', subject, message: `cannot read ${l.path}` });
    } else if (want > max) {
      out.push({
        id: 'socket-buffers',
        status: 'warn',
        subject,
        message: `${l.opt} ${want} exceeds ${l.sysctl} ${max}: the kernel caps it`,
        fix: `sysctl -w ${l.sysctl}=${want}`,
      });
    } else {
      out.push({
        id: 'socket-buffers',
        status: 'ok',
        subject,
        message: `within ${l.sysctl} ${max}`,
      });
    }
  }
  return out;
}

const MARK: Record<CheckStatus, string> = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL' };

/** The report for humans: one line a check, its fix indented below. */
export function formatDoctor(r: DoctorReport): string {
  if (r.checks.length === 0)
    return 'doctor: nothing to check (no fabric, sdp or ssocks address and no socket buffers set)\n';
  const lines: string[] = [];
  for (const c of r.checks) {
    lines.push(`${MARK[c.status]} ${c.subject}: ${c.message}`);
    if (c.fix !== undefined) lines.push(`     fix: ${c.fix}`);
  }
  lines.push(r.ok ? 'doctor: no failures' : 'doctor: failures found (see FAIL above)');
  return `${lines.join('\n')}\n`;
}
