import { connect, createServer, type Server, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { TcpProxy } from "../support/tcpProxy.js";
import { waitUntil } from "../support/waitUntil.js";

/** An echo server that also keeps everything it received. */
let server: Server;
let received: string;
let proxy: TcpProxy;
let client: Socket;
let echoed: string;

beforeEach(async () => {
  received = "";
  echoed = "";
  server = createServer((socket) =>
    socket.on("data", (chunk) => {
      received += chunk.toString();
      socket.write(chunk);
    }),
  );
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  proxy = await TcpProxy.forEndpoint(`http://127.0.0.1:${address.port}`);
  client = connect(proxy.port, "127.0.0.1");
  client.on("data", (chunk) => {
    echoed += chunk.toString();
  });
  client.on("error", () => undefined);
  await new Promise<void>((resolve) => client.once("connect", () => resolve()));
});

afterEach(async () => {
  client.destroy();
  await proxy.close();
  server.close();
});

const echoOf = (text: string) => waitUntil(`the echo of ${text}`, () => echoed.endsWith(text), 5_000);

describe("TcpProxy modes", () => {
  test("pass forwards both ways", async () => {
    client.write("ping");
    await echoOf("ping");
  });

  test("delay holds each chunk in each direction, in order", async () => {
    proxy.setMode("delay", { delayMs: 150 });
    const sentAt = Date.now();
    client.write("a");
    client.write("b");
    await echoOf("ab");
    expect(Date.now() - sentAt).toBeGreaterThanOrEqual(290);
  });

  test("stall-upstream holds client bytes, then releases them in order", async () => {
    proxy.setMode("stall-upstream");
    client.write("x");
    client.write("y");
    await sleep(200);
    expect(received).toBe("");
    proxy.setMode("pass");
    await echoOf("xy");
  });

  test("stall-downstream lets client bytes reach the upstream but holds the replies", async () => {
    proxy.setMode("stall-downstream");
    client.write("q");
    await waitUntil("the upstream to receive", () => received === "q");
    await sleep(200);
    expect(echoed).toBe("");
    proxy.setMode("pass");
    await echoOf("q");
  });

  test("blackhole drops bytes for good; reset closes the connection", async () => {
    proxy.setMode("blackhole");
    client.write("lost");
    await sleep(200);
    proxy.setMode("pass");
    client.write("kept");
    await echoOf("kept");
    expect(received).toBe("kept");

    const closed = new Promise<void>((resolve) => client.once("close", () => resolve()));
    proxy.setMode("reset");
    await closed;
    expect(proxy.connections).toBe(0);
  });
});
