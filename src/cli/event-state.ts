// Folds an events stream into the current state of every object, so `wait-connect`,
// `wait-sync` and the end-to-end tests can wait on conditions instead of sleeping.
import type { TandemEvent } from '../daemon/control-protocol.js';

type Props = Record<string, string | number | boolean>;

/** Enough history for a waiter to find the note it waits for; a stream may run for days. */
const CALLS_KEPT = 256;

export class EventState {
  private readonly objects = new Map<string, Props>();
  /** True once the `exists` snapshot of `events --now` has been fully received. */
  snapshotDone = false;
  /** `call` events (engine notes: handshake, split-brain, resync...) seen, oldest first. */
  readonly calls: TandemEvent[] = [];

  apply(e: TandemEvent): void {
    if (e.object === 'helper') {
      if (e.props['end'] === true) this.snapshotDone = true;
      return;
    }
    if (e.kind === 'call') {
      this.calls.push(e);
      if (this.calls.length > CALLS_KEPT) this.calls.shift();
    }
    const key = objectKey(e);
    if (e.kind === 'destroy') {
      this.objects.delete(key);
      return;
    }
    const cur = this.objects.get(key) ?? {};
    this.objects.set(key, { ...cur, ...e.props });
  }

  get(
    object: TandemEvent['object'],
    resource: string,
    peer?: string,
    volume?: number,
  ): Props | undefined {
    return this.objects.get(objectKey({ object, resource, peer, volume }));
  }

  /** Every object of a kind for a resource, e.g. all its connections. */
  all(object: TandemEvent['object'], resource: string): Props[] {
    const prefix = `${object}/${resource}/`;
    return [...this.objects.entries()].filter(([k]) => k.startsWith(prefix)).map(([, v]) => v);
  }

  /** Every object's current properties, one line each (for a timeout's error message). */
  describe(): string {
    return [...this.objects.entries()]
      .map(
        ([k, v]) =>
          `${k} ${Object.entries(v)
            .map(([pk, pv]) => `${pk}:${String(pv)}`)
            .join(' ')}`,
      )
      .join('\n');
  }

  resources(): string[] {
    return [...this.objects.keys()]
      .filter((k) => k.startsWith('resource/'))
      .map((k) => k.split('/')[1] ?? '');
  }
}

function objectKey(e: {
  object: string;
  resource: string;
  peer?: string | undefined;
  volume?: number | undefined;
  props?: Readonly<Props>;
}): string {
  // A connection may have several paths: each is its own object, told apart by its peer address.
  const path = e.object === 'path' ? `/${String(e.props?.['peer'] ?? '')}` : '';
  return `${e.object}/${e.resource}/${e.peer ?? '-'}/${e.volume ?? '-'}${path}`;
}

/** Every peer of the resource is connected (a resource without peers counts as connected). */
export function allConnected(s: EventState, resource: string): boolean {
  return s.all('connection', resource).every((c) => c['connection'] === 'Connected');
}

/** Connected everywhere, no sync running, and every disk and peer disk UpToDate. */
export function allInSync(s: EventState, resource: string): boolean {
  if (!allConnected(s, resource)) return false;
  const devices = s.all('device', resource);
  if (devices.length === 0 || devices.some((d) => d['disk'] !== 'UpToDate')) return false;
  return s
    .all('peer-device', resource)
    .every((p) => p['replication'] === 'Established' && p['peer-disk'] === 'UpToDate');
}
