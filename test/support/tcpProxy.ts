import { connect, createServer, type Server, type Socket } from "node:net";

/**
 * pass: bytes flow both ways. blackhole: open connections stay open but nothing is forwarded,
 * and new connections are accepted and left silent. reset: every connection is destroyed.
 * delay: bytes flow both ways, each chunk `delayMs` after it arrived, in order.
 * stall-upstream: client→upstream bytes are held (not lost) while upstream→client bytes flow;
 * stall-downstream: the reverse. Held bytes are released, in order, once the direction flows again.
 */
export type ProxyMode = "pass" | "blackhole" | "reset" | "delay" | "stall-upstream" | "stall-downstream";

export interface ProxyModeOptions {
  /** For `delay`: how long each chunk is held, in milliseconds. */
  delayMs?: number;
}

type Direction = "upstream" | "downstream";

/** One direction of one proxied connection: a queue of chunks, each with the time it may leave. */
class Pipe {
  private readonly queue: { chunk: Buffer; dueAt: number }[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly direction: Direction,
    private readonly to: Socket,
    private readonly proxy: TcpProxy,
  ) {}

  push(chunk: Buffer): void {
    const mode = this.proxy.mode;
    if (mode === "blackhole") return;
    const delay = mode === "delay" ? this.proxy.delayMs : 0;
    this.queue.push({ chunk, dueAt: Date.now() + delay });
    this.drain();
  }

  /** Re-evaluates held chunks after a mode change. */
  onModeChange(): void {
    if (this.proxy.mode === "blackhole") this.queue.length = 0;
    this.drain();
  }

  drain(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.proxy.stalls(this.direction) || this.to.destroyed) return;
    const now = Date.now();
    while (this.queue.length > 0) {
      const head = this.queue[0];
      if (head === undefined || head.dueAt > now) break;
      this.queue.shift();
      this.to.write(head.chunk);
    }
    const next = this.queue[0];
    if (next !== undefined) this.timer = setTimeout(() => this.drain(), next.dueAt - now);
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.queue.length = 0;
  }
}

interface Pair {
  client: Socket;
  upstream: Socket;
  pipes: Pipe[];
}

/** A TCP proxy on a free loopback port in front of one upstream `host:port`. */
export class TcpProxy {
  private server: Server | undefined;
  private readonly pairs = new Set<Pair>();
  private currentMode: ProxyMode = "pass";
  private currentDelayMs = 0;
  port = 0;

  constructor(
    private readonly upstreamHost: string,
    private readonly upstreamPort: number,
  ) {}

  static async forEndpoint(endpoint: string): Promise<TcpProxy> {
    const url = new URL(endpoint);
    const proxy = new TcpProxy(url.hostname, Number(url.port));
    await proxy.listen();
    return proxy;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get mode(): ProxyMode {
    return this.currentMode;
  }

  get delayMs(): number {
    return this.currentDelayMs;
  }

  /** Open client connections. */
  get connections(): number {
    return this.pairs.size;
  }

  /** True while bytes travelling in `direction` are held. */
  stalls(direction: Direction): boolean {
    return this.currentMode === `stall-${direction}`;
  }

  private async listen(): Promise<void> {
    this.server = createServer((client) => this.accept(client));
    await new Promise<void>((resolve, reject) => {
      this.server?.once("error", reject);
      this.server?.listen(0, "127.0.0.1", () => resolve());
    });
    const address = this.server.address();
    if (address === null || typeof address === "string") throw new Error("proxy has no port");
    this.port = address.port;
  }

  private accept(client: Socket): void {
    if (this.currentMode === "reset") {
      client.destroy();
      return;
    }
    const upstream = connect(this.upstreamPort, this.upstreamHost);
    const toUpstream = new Pipe("upstream", upstream, this);
    const toClient = new Pipe("downstream", client, this);
    const pair: Pair = { client, upstream, pipes: [toUpstream, toClient] };
    this.pairs.add(pair);
    client.on("data", (chunk: Buffer) => toUpstream.push(chunk));
    upstream.on("data", (chunk: Buffer) => toClient.push(chunk));
    const close = () => this.destroy(pair);
    client.on("error", close).on("close", close);
    upstream.on("error", close).on("close", close);
  }

  private destroy(pair: Pair): void {
    this.pairs.delete(pair);
    for (const pipe of pair.pipes) pipe.dispose();
    pair.client.destroy();
    pair.upstream.destroy();
  }

  setMode(mode: ProxyMode, options: ProxyModeOptions = {}): void {
    this.currentMode = mode;
    if (options.delayMs !== undefined) this.currentDelayMs = options.delayMs;
    if (mode === "reset") {
      for (const pair of [...this.pairs]) this.destroy(pair);
      return;
    }
    for (const pair of this.pairs) for (const pipe of pair.pipes) pipe.onModeChange();
  }

  async close(): Promise<void> {
    this.setMode("reset");
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
