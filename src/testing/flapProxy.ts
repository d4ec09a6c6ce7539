import type { Socket } from "node:net";
import { ProxyListener } from "./proxyListener.js";

/**
 * What one direction of a connection does with the bytes arriving: pass forwards them, blackhole
 * drops them (the connection stays open), delay forwards each chunk `delayMs` after it arrived, in order.
 */
export type FlapMode = "pass" | "blackhole" | "delay";

type Direction = "upstream" | "downstream";

const HTTP2_FRAME_HEADER_BYTES = 9;
const HTTP2_DATA = 0;

/** One proxied client connection, controlled on its own. */
export class FlapConnection {
  private readonly modes: Record<Direction, FlapMode>;
  private delayMs = 0;
  private closedFlag = false;
  /** Downstream bytes not yet forming a whole HTTP/2 frame. */
  private partial = Buffer.alloc(0);
  private dataFramesToDrop = 0;
  /** Downstream HTTP/2 DATA frames dropped by `dropDataFrames`. */
  droppedDataFrames = 0;

  constructor(
    /** Order of acceptance at the proxy, from 0. */
    readonly index: number,
    private readonly client: Socket,
    private readonly upstream: Socket,
    initialMode: FlapMode,
  ) {
    this.modes = { upstream: initialMode, downstream: initialMode };
    client.on("data", (chunk: Buffer) => this.forward("upstream", chunk, upstream));
    upstream.on("data", (chunk: Buffer) => this.onDownstream(chunk));
    const close = () => this.cut();
    client.on("error", close).on("close", close);
    upstream.on("error", close).on("close", close);
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  /** Sets both directions, or only `direction`. */
  setMode(mode: FlapMode, options: { delayMs?: number; direction?: Direction } = {}): void {
    if (options.delayMs !== undefined) this.delayMs = options.delayMs;
    if (options.direction !== "downstream") this.modes.upstream = mode;
    if (options.direction !== "upstream") this.modes.downstream = mode;
  }

  /**
   * Drops the next `count` whole HTTP/2 DATA frames from server to client and passes everything
   * else: a gRPC stream then silently misses those messages (one small message per frame) while the
   * connection and the stream stay healthy.
   */
  dropDataFrames(count: number): void {
    this.dataFramesToDrop += count;
  }

  /** Destroys both sockets: the client sees the connection drop. */
  cut(): void {
    this.closedFlag = true;
    this.client.destroy();
    this.upstream.destroy();
  }

  /** The server speaks first with a frame (no preface), so its bytes split into frames from the start. */
  private onDownstream(chunk: Buffer): void {
    let data = Buffer.concat([this.partial, chunk]);
    while (data.length >= HTTP2_FRAME_HEADER_BYTES) {
      const end = HTTP2_FRAME_HEADER_BYTES + data.readUIntBE(0, 3);
      if (data.length < end) break;
      const frame = data.subarray(0, end);
      data = data.subarray(end);
      if (frame[3] === HTTP2_DATA && this.dataFramesToDrop > 0) {
        this.dataFramesToDrop -= 1;
        this.droppedDataFrames += 1;
      } else {
        this.forward("downstream", frame, this.client);
      }
    }
    this.partial = Buffer.from(data);
  }

  private forward(direction: Direction, chunk: Buffer, to: Socket): void {
    const mode = this.modes[direction];
    if (mode === "blackhole") return;
    if (mode === "pass") {
      to.write(chunk);
      return;
    }
    // Timers of equal delay fire in the order they were set, so chunks stay in order.
    setTimeout(() => {
      if (!to.destroyed) to.write(chunk);
    }, this.delayMs);
  }
}

/**
 * A TCP proxy on a free loopback port in front of one upstream `host:port` whose connections are
 * controlled one by one: a client with a local gRPC subchannel pool opens one per service, so its
 * watch stream and its reads can be delayed, blackholed, thinned or cut apart.
 */
export class FlapProxy {
  private listener: ProxyListener | undefined;
  readonly connections: FlapConnection[] = [];
  /** The mode a newly accepted connection starts in. */
  modeForNew: FlapMode = "pass";

  static async forEndpoint(endpoint: string): Promise<FlapProxy> {
    const proxy = new FlapProxy();
    proxy.listener = await ProxyListener.start(endpoint, (client, upstream) =>
      proxy.connections.push(
        new FlapConnection(proxy.connections.length, client, upstream(), proxy.modeForNew),
      ),
    );
    return proxy;
  }

  get port(): number {
    return this.listener?.port ?? 0;
  }

  get endpoint(): string {
    return this.listener?.endpoint ?? "";
  }

  /** Connections not cut or closed. */
  get open(): FlapConnection[] {
    return this.connections.filter((connection) => !connection.closed);
  }

  /** Cuts every open connection; new ones are accepted as usual. */
  cutAll(): void {
    for (const connection of this.open) connection.cut();
  }

  async close(): Promise<void> {
    this.cutAll();
    await this.listener?.close();
  }
}
