// Path faults for multipath tests on the memory transport: wraps a node's Transport so a test
// can cut a path (its channels go silent both ways, as a pulled cable, and new connects to it are
// refused), reset it (channels fail at once, as a RST), and restore it.
import type { MemoryNetwork } from '../../src/transport/memory/index.js';
import type { Channel, Endpoint, PathSpec, Transport } from '../../src/transport/types.js';
import { ConnectionError } from '../../src/util/errors.js';

export class PathFaults {
  private readonly down = new Set<string>();
  private readonly channels = new Map<string, Set<Channel>>();

  constructor(private readonly net: MemoryNetwork) {}

  /** The dialing node's transport, with faults applied by peer address. */
  wrap(inner: Transport): Transport {
    return {
      name: inner.name,
      listen: (ep: Endpoint, on) => inner.listen(ep, on),
      connect: async (path: PathSpec, o) => {
        const addr = path.peer.address;
        if (this.down.has(addr)) throw new ConnectionError(`${addr}: network unreachable`);
        const ch = await inner.connect(path, o);
        if (this.down.has(addr)) {
          this.net.blackhole(ch);
          return ch;
        }
        let set = this.channels.get(addr);
        if (set === undefined) this.channels.set(addr, (set = new Set()));
        set.add(ch);
        ch.on('closed', () => set.delete(ch));
        return ch;
      },
      stats: () => inner.stats(),
      close: () => inner.close(),
    };
  }

  isDown(address: string): boolean {
    return this.down.has(address);
  }

  /** Silent cut: channels stop carrying bytes (nobody is told); new connects fail. */
  cut(address: string): void {
    this.down.add(address);
    for (const ch of this.channels.get(address) ?? []) this.net.blackhole(ch);
  }

  /** Abrupt failure: channels are reset (both ends see the close); new connects fail. */
  reset(address: string): void {
    this.down.add(address);
    for (const ch of [...(this.channels.get(address) ?? [])]) {
      ch.destroy(new ConnectionError('test: path reset'));
    }
  }

  restore(address: string): void {
    this.down.delete(address);
  }
}
