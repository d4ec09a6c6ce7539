import { connect, createServer, type Server, type Socket } from "node:net";

/**
 * The listening side of a test proxy: a TCP server on a free loopback port in front of the member
 * at `endpoint`; every client connection is handed over with a fresh socket to that member.
 */
export class ProxyListener {
  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(
    endpoint: string,
    accept: (client: Socket, upstream: () => Socket) => void,
  ): Promise<ProxyListener> {
    const url = new URL(endpoint);
    const upstream = () => connect(Number(url.port), url.hostname);
    const server = createServer((client) => accept(client, upstream));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    const address = server.address();
    if (address === null || typeof address === "string") throw new Error("proxy has no port");
    return new ProxyListener(server, address.port);
  }

  /** What a client dials: `http://127.0.0.1:<port>`. */
  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Stops accepting; resolves once every connection it accepted has closed. */
  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
