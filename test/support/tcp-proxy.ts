// A TCP relay for tests: forwards every connection to a target and can "blackhole" them all
// (keep the connections open but drop every byte), which is a half-open link to both ends.
import net, { type Server, type Socket } from 'node:net';

export class BlackholeProxy {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  private dropping = false;
  port = 0;

  constructor(
    private readonly host: string,
    private readonly targetPort: number,
  ) {}

  async start(): Promise<this> {
    const server = net.createServer((inbound) => {
      const outbound = net.connect({ host: this.host, port: this.targetPort });
      for (const [from, to] of [
        [inbound, outbound],
        [outbound, inbound],
      ] as const) {
        this.sockets.add(from);
        // Backpressure passes through, so a receiver that stops reading stalls the sender.
        from.on('data', (b: Buffer) => {
          if (!this.dropping && !to.write(b)) from.pause();
        });
        to.on('drain', () => from.resume());
        from.on('end', () => {
          if (!this.dropping) to.end();
        });
        from.on('error', () => to.destroy());
        from.on('close', () => {
          this.sockets.delete(from);
          if (!this.dropping) to.destroy();
        });
      }
    });
    this.server = server;
    await new Promise<void>((resolve) => server.listen(0, this.host, resolve));
    const a = server.address();
    this.port = typeof a === 'object' && a !== null ? a.port : 0;
    return this;
  }

  blackhole(): void {
    this.dropping = true;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
