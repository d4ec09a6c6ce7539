/**
 * `node --inspect-ws URL` against a real etcd and a real WebSocket receiver speaking the
 * @statelyai/inspect wire format: events arrive; a receiver down at start, or one that goes away
 * mid-run, never stops the node nor moves its role; a bad URL exits 2 naming the flag.
 */
import type { IncomingMessage } from "node:http";
import { join } from "node:path";
import type { Etcd3 } from "etcd3";
import { afterEach, beforeAll, beforeEach, describe, expect, test } from "vitest";
import { CliProcess } from "../../src/cli/local/cliProcess.js";
import { freePort } from "../../src/cli/local/etcdMember.js";
import { ClusterLayout, loadClusterConfig } from "../../src/config/index.js";
import { readClusterStatus } from "../../src/runtime/clusterStatus.js";
import { ensureBuilt, PACKAGE_ROOT, runCli } from "../support/cli.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { waitUntil } from "../support/waitUntil.js";

const CONFIG = join(PACKAGE_ROOT, "config.yaml");
const TTL_SECONDS = 2;
const layout = new ClusterLayout(loadClusterConfig(CONFIG));

/** The parts of `ws` (a dependency of @statelyai/inspect, untyped here) this test uses. */
interface ServerSocket {
  on(event: "message", listener: (data: Buffer) => void): void;
  terminate(): void;
}
interface WsServer {
  on(event: "connection", listener: (socket: ServerSocket, request: IncomingMessage) => void): void;
  on(event: "listening" | "error", listener: (err?: Error) => void): void;
  clients: Set<ServerSocket>;
  close(callback: () => void): void;
}
interface WsModule {
  WebSocketServer: new (options: { host: string; port: number }) => WsServer;
}

/** One message of the @statelyai/inspect wire format, as far as these tests read it. */
interface StatelyMessage {
  type: "@xstate.actor" | "@xstate.snapshot" | "@xstate.event";
  sessionId: string;
  name?: string;
  definition?: string;
  _version?: string;
  snapshot?: { status?: string; value?: unknown; context?: { id?: number } };
  event?: { type?: string };
}

/** A WebSocket server that keeps every message it is sent, as the Stately inspector would. */
class Receiver {
  readonly messages: StatelyMessage[] = [];
  connections = 0;
  private constructor(private readonly server: WsServer) {
    server.on("connection", (socket) => {
      this.connections++;
      socket.on("message", (data) => this.messages.push(JSON.parse(data.toString("utf8"))));
    });
  }

  static async listen(port: number): Promise<Receiver> {
    const moduleName = "ws";
    const { WebSocketServer } = (await import(moduleName)) as WsModule;
    const server = new WebSocketServer({ host: "127.0.0.1", port });
    await new Promise<void>((resolve, reject) => {
      server.on("listening", () => resolve());
      server.on("error", (err) => reject(err));
    });
    return new Receiver(server);
  }

  /** The node machine's registration, once it has arrived. */
  nodeActor(): StatelyMessage | undefined {
    return this.messages.find((m) => m.type === "@xstate.actor" && m.name === "node");
  }

  /** Snapshots of the node machine with an ID, i.e. after it joined. */
  nodeSnapshotsWithId(): StatelyMessage[] {
    const node = this.nodeActor();
    return this.messages.filter(
      (m) =>
        m.type === "@xstate.snapshot" &&
        m.sessionId === node?.sessionId &&
        m.snapshot?.context?.id !== undefined,
    );
  }

  /** Goes away as a crashed receiver does: every connection cut, the port closed. */
  async close(): Promise<void> {
    for (const socket of this.server.clients) socket.terminate();
    await new Promise<void>((resolve) => this.server.close(resolve));
  }
}

interface NodeProcess {
  name: string;
  process: CliProcess;
  logs: () => { message?: string; role?: string; level?: string }[];
}

const spawned = new Set<CliProcess>();
const receivers = new Set<Receiver>();

function startNode(endpoint: string, name: string, extra: string[] = []): NodeProcess {
  const lines: { message?: string; role?: string; level?: string }[] = [];
  const args = ["node", "--etcd", endpoint, "--node", name, "--lease-ttl", String(TTL_SECONDS), ...extra];
  const child = new CliProcess([...args, "--config", CONFIG], { onLine: (line) => lines.push(line) });
  spawned.add(child);
  return { name, process: child, logs: () => lines };
}

async function listen(port: number): Promise<Receiver> {
  const receiver = await Receiver.listen(port);
  receivers.add(receiver);
  return receiver;
}

const transitions = (node: NodeProcess) => node.logs().filter((l) => l.message === "transition").length;
const warnings = (node: NodeProcess) =>
  node.logs().filter((l) => l.level === "warn" && l.message?.startsWith("inspection receiver unreachable"));

beforeAll(ensureBuilt);

describe("node --inspect-ws with a real receiver", { timeout: 180_000 }, () => {
  let etcd: EtcdCluster;
  let client: Etcd3;

  beforeEach(async () => {
    etcd = await startEtcd({ name: "inspect-ws" });
    client = etcd.client();
  });

  afterEach(async () => {
    for (const child of spawned) child.signal("SIGKILL");
    await Promise.all([...spawned].map((child) => child.exited));
    spawned.clear();
    for (const receiver of receivers) await receiver.close();
    receivers.clear();
    await etcd.stop();
  });

  /**
   * Starts the inspected node and a plain one; resolves with the inspected node's role once both
   * lead and the inspected node has logged taking its seat.
   */
  async function formCluster(url: string): Promise<{ inspected: NodeProcess; role: "primary" | "backup" }> {
    const endpoint = etcd.endpoints[0] ?? "";
    const inspected = startNode(endpoint, "inspected", ["--inspect-ws", url]);
    startNode(endpoint, "plain");
    const exited = inspected.process.exited.then((exit) => {
      const last = inspected
        .logs()
        .slice(-5)
        .map((l) => JSON.stringify(l));
      throw new Error(`the inspected node exited (${JSON.stringify(exit)}):\n${last.join("\n")}`);
    });
    const formed = waitUntil(
      "a primary and a backup",
      async () => {
        const g = (await readClusterStatus(client, layout)).groupings[0];
        if (!g?.primary || !g.backup) return undefined;
        return g.primary.name === inspected.name ? "primary" : "backup";
      },
      60_000,
    );
    const role = await Promise.race([formed, exited]);
    exited.catch(() => undefined);
    await waitUntil(`the inspected node to log its role ${role}`, () => {
      const last = inspected
        .logs()
        .filter((l) => l.message === "transition")
        .at(-1);
      return last?.role === role;
    });
    return { inspected, role };
  }

  async function expectRoleKept(
    inspected: NodeProcess,
    role: "primary" | "backup",
    transitionsAtForming: number,
  ) {
    const g = (await readClusterStatus(client, layout)).groupings[0];
    expect(g?.[role]?.name).toBe(inspected.name);
    expect(inspected.process.running).toBe(true);
    expect(transitions(inspected)).toBe(transitionsAtForming);
  }

  test("a listening receiver gets the node machine's registration and snapshots in the Stately wire format", async () => {
    const port = await freePort();
    const receiver = await listen(port);
    const { inspected, role } = await formCluster(`ws://127.0.0.1:${port}`);
    await waitUntil(
      "snapshots of the node machine with an ID",
      () => receiver.nodeSnapshotsWithId().length > 0,
      30_000,
    );

    const actor = receiver.nodeActor();
    expect(actor?._version).toMatch(/^\d+\.\d+\.\d+/);
    expect(JSON.parse(actor?.definition ?? "{}")).toMatchObject({ id: "node" });
    expect(receiver.nodeSnapshotsWithId()[0]?.snapshot).toMatchObject({ status: "active" });
    expect(receiver.messages.some((m) => m.type === "@xstate.event" && m.event?.type)).toBe(true);
    // The actor's children (the role machines) are registered too, each with its parent's root.
    expect(receiver.messages.filter((m) => m.type === "@xstate.actor").length).toBeGreaterThan(1);
    expect(receiver.connections).toBe(1);
    expect(warnings(inspected)).toHaveLength(0);
    await expectRoleKept(inspected, role, transitions(inspected));
  });

  test("a receiver down at start: one warning, the node forms; once it listens it gets the registration and the held events", async () => {
    const port = await freePort();
    const { inspected, role } = await formCluster(`ws://127.0.0.1:${port}`);
    const formedAt = transitions(inspected);
    // Several reconnect attempts fail (the backoff starts at 250 ms); still one warning.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    expect(warnings(inspected)).toHaveLength(1);

    const receiver = await listen(port);
    await waitUntil(
      "the node's registration and its snapshots from before",
      () => receiver.nodeSnapshotsWithId().length > 0,
      60_000,
    );
    expect(
      inspected.logs().some((l) => l.message === "inspection receiver connected"),
      "the reconnection is logged",
    ).toBe(true);
    await expectRoleKept(inspected, role, formedAt);
  });

  test("a receiver that goes away mid-run: the node keeps its role; a new receiver gets the live actors again", async () => {
    const port = await freePort();
    const first = await listen(port);
    const { inspected, role } = await formCluster(`ws://127.0.0.1:${port}`);
    await waitUntil("the first receiver's snapshots", () => first.nodeSnapshotsWithId().length > 0, 30_000);
    const formedAt = transitions(inspected);

    await first.close();
    receivers.delete(first);
    await waitUntil("the one warning", () => warnings(inspected).length === 1, 30_000);
    // The node's views re-list every TTL, so inspection events keep coming while the receiver is gone.
    await new Promise((resolve) => setTimeout(resolve, 3 * TTL_SECONDS * 1000));
    expect(warnings(inspected)).toHaveLength(1);
    await expectRoleKept(inspected, role, formedAt);

    const second = await listen(port);
    await waitUntil("the node's registration, re-sent to the new receiver", () => second.nodeActor(), 60_000);
    await waitUntil(
      "events held while it was gone",
      () => second.messages.some((m) => m.type === "@xstate.event"),
      30_000,
    );
    await expectRoleKept(inspected, role, formedAt);
  });

  test.each([
    ["notaurl", /not a URL/],
    ["http://127.0.0.1:8080", /scheme http; expected ws:\/\/ or wss:\/\//],
  ])("--inspect-ws %s exits 2 naming the flag, without a stack trace", (url, reason) => {
    const result = runCli([
      "node",
      "--etcd",
      etcd.endpoints[0] ?? "",
      "--config",
      CONFIG,
      "--inspect-ws",
      url,
    ]);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("--inspect-ws");
    expect(result.stderr).toMatch(reason);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  test.each(["node", "serve"])(
    "%s: a bad --inspect-ws is refused (exit 2) before etcd is tried or a port is opened",
    (command) => {
      const flags = ["--etcd", "http://127.0.0.1:1", "--config", CONFIG, "--inspect-ws", "notaurl"];
      const result = runCli([command, ...flags, ...(command === "serve" ? ["--port", "0"] : [])]);
      expect(result.status).toBe(2);
      expect(result.stderr).toContain("--inspect-ws");
    },
  );
});
