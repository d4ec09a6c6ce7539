/**
 * The inspection socket against a real `ws` server: messages held while the receiver is down are
 * bounded (the oldest dropped and counted), the greeting goes first on every connection, retries
 * back off, and a receiver too slow to read makes messages wait in the bounded queue instead of
 * piling up in the socket.
 */
import type { Socket } from "node:net";
import { afterEach, describe, expect, test } from "vitest";
import { InspectSocket, type OpenWireSocket, type WireSocket } from "../../src/cli/inspectSocket.js";
import { freePort } from "../../src/cli/local/etcdMember.js";
import { recordingLogger } from "../support/recordingLogger.js";
import { waitUntil } from "../support/waitUntil.js";

/** The parts of `ws` (a dependency of @statelyai/inspect, untyped here) this test uses. */
interface ServerSocket {
  on(event: "message", listener: (data: Buffer) => void): void;
  terminate(): void;
  _socket: Socket;
}
interface WsServer {
  on(event: "connection", listener: (socket: ServerSocket) => void): void;
  on(event: "listening" | "error", listener: (err?: Error) => void): void;
  clients: Set<ServerSocket>;
  close(callback: () => void): void;
}
interface WsModule {
  WebSocket: new (url: string) => WireSocket;
  WebSocketServer: new (options: { host: string; port: number }) => WsServer;
}

const moduleName = "ws";
const ws = (await import(moduleName)) as WsModule;

const servers: WsServer[] = [];
const sockets: InspectSocket[] = [];

async function listen(port: number, onConnection: (socket: ServerSocket) => void): Promise<WsServer> {
  const server = new ws.WebSocketServer({ host: "127.0.0.1", port });
  await new Promise<void>((resolve, reject) => {
    server.on("listening", () => resolve());
    server.on("error", (err) => reject(err));
  });
  server.on("connection", onConnection);
  servers.push(server);
  return server;
}

function inspectSocket(
  url: string,
  options: { maxQueued?: number; maxUnsentBytes?: number; greeting?: string[] } = {},
) {
  const { logger, records } = recordingLogger();
  let attempts = 0;
  const open: OpenWireSocket = (target) => {
    attempts++;
    return new ws.WebSocket(target);
  };
  const socket = new InspectSocket(
    { url, open, logger, backoff: { initialMs: 50, maxMs: 400 }, ...options },
    () => options.greeting ?? [],
  );
  sockets.push(socket);
  return { socket, records, attempts: () => attempts };
}

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.close();
  for (const server of servers.splice(0)) {
    for (const client of server.clients) client.terminate();
    await new Promise<void>((resolve) => server.close(resolve));
  }
});

describe("the inspection socket", () => {
  test("while the receiver is down it holds at most maxQueued messages, oldest dropped; greeting first once it is up", async () => {
    const port = await freePort();
    const { socket, records } = inspectSocket(`ws://127.0.0.1:${port}`, {
      maxQueued: 5,
      greeting: ["hello"],
    });
    socket.connect();
    for (let i = 0; i < 20; i++) socket.send(`m${i}`);
    expect(socket.stats).toMatchObject({ queued: 5, dropped: 15, sent: 0 });
    await waitUntil("a failed attempt", () => records.some((r) => r.level === "warn"));

    const received: string[] = [];
    await listen(port, (client) => client.on("message", (data) => received.push(data.toString())));
    await waitUntil("six messages", () => received.length === 6);
    expect(received).toEqual(["hello", "m15", "m16", "m17", "m18", "m19"]);
    expect(records.filter((r) => r.level === "warn")).toHaveLength(1);
    expect(records.find((r) => r.message === "inspection receiver connected")).toMatchObject({
      droppedWhileDown: 15,
    });
  });

  test("retries back off instead of spinning while the receiver stays down", async () => {
    const port = await freePort();
    const { socket, records, attempts } = inspectSocket(`ws://127.0.0.1:${port}`);
    socket.connect();
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    // 50 ms doubling to 400 ms (each between half and all of it) allows at most ~14 attempts in 2 s;
    // a retry without a delay makes hundreds.
    expect(attempts()).toBeGreaterThanOrEqual(3);
    expect(attempts()).toBeLessThanOrEqual(14);
    expect(records.filter((r) => r.level === "warn")).toHaveLength(1);
  });

  test("a receiver that does not read: messages wait in the bounded queue, not in the socket", async () => {
    const port = await freePort();
    const paused: ServerSocket[] = [];
    await listen(port, (client) => {
      client._socket.pause();
      paused.push(client);
    });
    const { socket } = inspectSocket(`ws://127.0.0.1:${port}`, {
      maxQueued: 10,
      maxUnsentBytes: 1024 * 1024,
    });
    socket.connect();
    await waitUntil("connected", () => socket.stats.connections === 1);
    const big = "x".repeat(100 * 1024);
    for (let i = 0; i < 300; i++) socket.send(big);
    expect(socket.stats.queued).toBe(10);
    expect(socket.stats.dropped).toBeGreaterThan(0);
    expect(socket.stats.sent + socket.stats.queued + socket.stats.dropped).toBe(300);
  });
});
