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

/** An HTTP/2 frame: 9-byte header (length, type, flags, stream) and payload. */
function http2Frame(type: number, streamId: number, payload: string): Buffer {
  const body = Buffer.from(payload);
  const header = Buffer.alloc(9);
  header.writeUIntBE(body.length, 0, 3);
  header[3] = type;
  header.writeUInt32BE(streamId, 5);
  return Buffer.concat([header, body]);
}

const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
const DATA = 0;
const HEADERS = 1;

describe("TcpProxy drop-reply", () => {
  let upstream: Server;
  let upstreamReceived: string;
  let frameProxy: TcpProxy;
  const sockets: Socket[] = [];

  beforeEach(async () => {
    upstreamReceived = "";
    // Answers each request "req-N" (a DATA frame on stream N) with a HEADERS frame "reply-N" on stream N.
    upstream = createServer((socket) => {
      socket.write(http2Frame(4, 0, "")); // SETTINGS, as an HTTP/2 server starts
      socket.on("data", (chunk) => {
        upstreamReceived += chunk.toString();
        for (const [, n] of chunk.toString().matchAll(/req-(\d+)/g))
          socket.write(http2Frame(HEADERS, Number(n), `reply-${n}`));
      });
      socket.on("error", () => undefined);
    });
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
    const address = upstream.address();
    if (address === null || typeof address === "string") throw new Error("no port");
    frameProxy = await TcpProxy.forEndpoint(`http://127.0.0.1:${address.port}`);
  });

  afterEach(async () => {
    for (const socket of sockets.splice(0)) socket.destroy();
    await frameProxy.close();
    upstream.close();
  });

  async function http2Client(): Promise<{ socket: Socket; seen: () => string; closed: Promise<void> }> {
    const socket = connect(frameProxy.port, "127.0.0.1");
    sockets.push(socket);
    let seen = "";
    socket.on("data", (chunk) => {
      seen += chunk.toString();
    });
    socket.on("error", () => undefined);
    const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
    await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
    socket.write(HTTP2_PREFACE);
    return { socket, seen: () => seen, closed };
  }

  test("forwards the matching request, drops its reply, closes that connection, then passes again", async () => {
    const first = await http2Client();
    first.socket.write(http2Frame(DATA, 1, "req-1 other"));
    await waitUntil("the reply to an unmatched request", () => first.seen().includes("reply-1"));

    frameProxy.setMode("drop-reply", { match: "key-x" });
    first.socket.write(http2Frame(DATA, 3, "req-3 other"));
    await waitUntil("the reply to a request that does not match", () => first.seen().includes("reply-3"));
    first.socket.write(http2Frame(DATA, 5, "req-5 key-x"));
    await first.closed;
    expect(upstreamReceived).toContain("req-5 key-x");
    expect(first.seen()).not.toContain("reply-5");
    expect(frameProxy.repliesDropped).toBe(1);
    expect(frameProxy.mode).toBe("pass");

    const second = await http2Client();
    second.socket.write(http2Frame(DATA, 1, "req-7 key-x"));
    await waitUntil("the reply on a new connection", () => second.seen().includes("reply-7"));
    expect(frameProxy.repliesDropped).toBe(1);
  });

  test("without a match, the next request of any connection has its reply dropped", async () => {
    const client = await http2Client();
    frameProxy.setMode("drop-reply");
    client.socket.write(http2Frame(DATA, 1, "req-1"));
    await client.closed;
    expect(upstreamReceived).toContain("req-1");
    expect(client.seen()).not.toContain("reply-1");
    expect(frameProxy.repliesDropped).toBe(1);
    expect(frameProxy.connectionsClosed).toBe(1);
  });

  test("drop-reply can leave the link down once the reply is lost", async () => {
    const client = await http2Client();
    frameProxy.setMode("drop-reply", { afterwards: "blackhole" });
    client.socket.write(http2Frame(DATA, 1, "req-1"));
    await client.closed;
    expect(frameProxy.mode).toBe("blackhole");
    const next = await http2Client();
    next.socket.write(http2Frame(DATA, 1, "req-2"));
    await sleep(200);
    expect(upstreamReceived).not.toContain("req-2");
  });

  test("hold-request cuts the client off before etcd sees the request, and delivers it later", async () => {
    const client = await http2Client();
    frameProxy.setMode("hold-request", { match: "key-y" });
    client.socket.write(http2Frame(DATA, 1, "req-1 other"));
    await waitUntil("the reply to a request that does not match", () => client.seen().includes("reply-1"));
    client.socket.write(http2Frame(DATA, 3, "req-3 key-y"));
    await client.closed;
    await sleep(200);
    expect(upstreamReceived).not.toContain("req-3");
    expect(frameProxy.mode).toBe("pass");

    const next = await http2Client();
    next.socket.write(http2Frame(DATA, 1, "req-4 key-y"));
    await waitUntil("a new connection to pass", () => next.seen().includes("reply-4"));

    await frameProxy.releaseHeldRequest();
    expect(upstreamReceived).toContain("req-3 key-y");
    expect(client.seen()).not.toContain("reply-3");
  });

  test("drop-reply with keepConnection leaves the connection open and silent", async () => {
    const client = await http2Client();
    frameProxy.setMode("drop-reply", { match: "key-z", keepConnection: true });
    client.socket.write(http2Frame(DATA, 1, "req-1 key-z"));
    await waitUntil("the request to reach the upstream", () => upstreamReceived.includes("req-1"));
    await waitUntil("the reply to be dropped", () => frameProxy.repliesDropped === 1);
    client.socket.write(http2Frame(DATA, 3, "req-3"));
    await waitUntil("a later request to reach the upstream", () => upstreamReceived.includes("req-3"));
    await sleep(200);
    expect(client.socket.destroyed).toBe(false);
    expect(client.seen()).not.toMatch(/reply-/);
    expect(frameProxy.mode).toBe("pass");
  });
});
