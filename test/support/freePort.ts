import { createServer, type Server } from "node:net";

const LOOPBACK = "127.0.0.1";

function listenOnEphemeralPort(): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, LOOPBACK, () => resolve(server));
  });
}

function portOf(server: Server): number {
  const address = server.address();
  if (address === null || typeof address === "string") {
    throw new Error(`unexpected server address: ${String(address)}`);
  }
  return address.port;
}

function close(server: Server): Promise<void> {
  return new Promise((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
}

export async function freePort(): Promise<number> {
  const server = await listenOnEphemeralPort();
  try {
    return portOf(server);
  } finally {
    await close(server);
  }
}

/** Holds all n sockets open until every port is read, so the ports are distinct. */
export async function freePorts(n: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < n; i++) {
      servers.push(await listenOnEphemeralPort());
    }
    return servers.map(portOf);
  } finally {
    await Promise.all(servers.map(close));
  }
}
