/** `serve --inspect-ws URL`: the example server's node streams its inspection events to a real receiver. */
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, test } from "vitest";
import { CliProcess } from "../../src/cli/local/cliProcess.js";
import { freePort } from "../../src/cli/local/etcdMember.js";
import { ensureBuilt, PACKAGE_ROOT } from "../support/cli.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { waitUntil } from "../support/waitUntil.js";

const CONFIG = join(PACKAGE_ROOT, "config.yaml");

/** The parts of `ws` (a dependency of @statelyai/inspect, untyped here) this test uses. */
interface WsServer {
  on(
    event: "connection",
    listener: (socket: { on(e: "message", l: (data: Buffer) => void): void }) => void,
  ): void;
  on(event: "listening" | "error", listener: (err?: Error) => void): void;
  close(callback: () => void): void;
}
interface WsModule {
  WebSocketServer: new (options: { host: string; port: number }) => WsServer;
}

beforeAll(ensureBuilt);

describe("serve --inspect-ws", { timeout: 180_000 }, () => {
  let etcd: EtcdCluster | undefined;
  let server: WsServer | undefined;
  const spawned: CliProcess[] = [];

  afterEach(async () => {
    for (const child of spawned) child.signal("SIGKILL");
    await Promise.all(spawned.splice(0).map((child) => child.exited));
    await new Promise<void>((resolve) => (server ? server.close(resolve) : resolve()));
    await etcd?.stop();
  });

  test("a listening receiver gets the node machine's registration and snapshots", async () => {
    etcd = await startEtcd({ name: "serve-inspect-ws" });
    const moduleName = "ws";
    const { WebSocketServer } = (await import(moduleName)) as WsModule;
    const port = await freePort();
    const receiver = new WebSocketServer({ host: "127.0.0.1", port });
    server = receiver;
    await new Promise<void>((resolve, reject) => {
      receiver.on("listening", () => resolve());
      receiver.on("error", (err) => reject(err));
    });
    const messages: { type: string; name?: string; sessionId: string }[] = [];
    receiver.on("connection", (socket) =>
      socket.on("message", (data) => messages.push(JSON.parse(data.toString("utf8")))),
    );
    const endpoint = etcd.endpoints[0] ?? "";
    const child = new CliProcess([
      ...["serve", "--port", "0", "--etcd", endpoint, "--config", CONFIG],
      ...["--inspect-ws", `ws://127.0.0.1:${port}`],
    ]);
    spawned.push(child);
    const node = await waitUntil(
      "the node machine's registration",
      () => messages.find((m) => m.type === "@xstate.actor" && m.name === "node"),
      60_000,
    );
    await waitUntil("a snapshot of it", () =>
      messages.some((m) => m.type === "@xstate.snapshot" && m.sessionId === node.sessionId),
    );
    expect(child.running).toBe(true);
  });
});
