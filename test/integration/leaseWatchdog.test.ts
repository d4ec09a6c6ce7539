/**
 * The lease watchdog of `rdeebee-cluster node` (built CLI in dist/): a dead node process is
 * replaced in milliseconds, a paused one never early, and the watchdog's own death changes nothing.
 * Orderings are asserted, not wall-clock limits: a witness lease granted at the kill, with the
 * node's TTL, still has most of its TTL left when the backup has promoted.
 */
import { type ChildProcess, fork } from "node:child_process";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Etcd3 } from "etcd3";
import { afterEach, beforeAll, describe, expect, test } from "vitest";
import { CliProcess, type LogLine } from "../../src/cli/local/cliProcess.js";
import { ClusterLayout, loadClusterConfig } from "../../src/config/index.js";
import { leaseSecondsLeft } from "../../src/etcd/index.js";
import { readClusterStatus } from "../../src/runtime/clusterStatus.js";
import { watchdogEntry } from "../../src/watchdog/index.js";
import { ensureBuilt, isProcessAlive, PACKAGE_ROOT } from "../support/cli.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { waitUntil } from "../support/waitUntil.js";

const CONFIG = join(PACKAGE_ROOT, "config.yaml");
const layout = new ClusterLayout(loadClusterConfig(CONFIG));
const PRIMARY_KEY = layout.keys.leaderKey(0, 1);
/** Long enough that a failover by the lease cannot be mistaken for the watchdog's revoke. */
const LONG_TTL_SECONDS = 30;
/** Short, for the scenarios that must fail over by the lease. */
const SHORT_TTL_SECONDS = 4;
const WAIT_MS = 60_000;

interface StartOptions {
  /** `node` (default) or `serve` (the example server beside the node, on a free port). */
  command?: "node" | "serve";
  flags?: string[];
}

class NodeUnderTest {
  readonly lines: LogLine[] = [];
  readonly process: CliProcess;
  constructor(
    readonly name: string,
    endpoint: string,
    ttlSeconds: number,
    { command = "node", flags = [] }: StartOptions = {},
  ) {
    const args = [command, "--etcd", endpoint, "--node", name, "--lease-ttl", String(ttlSeconds)];
    const serveArgs = command === "serve" ? ["--port", "0"] : [];
    this.process = new CliProcess([...args, ...serveArgs, ...flags, "--config", CONFIG], {
      onLine: (line) => this.lines.push(line),
    });
  }

  /** Pids of every watchdog this node has started, in order. */
  watchdogPids(): number[] {
    return this.lines.flatMap((l) =>
      l.message === "lease watchdog started" && typeof l.pid === "number" ? [l.pid] : [],
    );
  }

  /** Leases the watchdogs have said they hold, in order (one line per watchdog and lease). */
  heldLeases(): string[] {
    return this.lines.flatMap((l) =>
      l.message === "lease watchdog holds lease" && typeof l.lease === "string" ? [l.lease] : [],
    );
  }

  said(message: string): LogLine[] {
    return this.lines.filter((l) => l.message === message);
  }
}

let etcd: EtcdCluster | undefined;
let client: Etcd3;
const nodes: NodeUnderTest[] = [];
const forked: ChildProcess[] = [];

beforeAll(ensureBuilt);

afterEach(async () => {
  for (const node of nodes) node.process.signal("SIGKILL");
  await Promise.all(nodes.map((n) => n.process.exited));
  for (const child of forked) child.kill("SIGKILL");
  // Every watchdog is this test's too: it exits by itself once its node is gone, or is killed here.
  const watchdogs = nodes.flatMap((n) => n.watchdogPids());
  await waitUntil("every watchdog gone", () => watchdogs.every((pid) => !isProcessAlive(pid)), 15_000).catch(
    () => {
      for (const pid of watchdogs) if (isProcessAlive(pid)) process.kill(pid, "SIGKILL");
    },
  );
  nodes.length = 0;
  forked.length = 0;
  await etcd?.stop();
  etcd = undefined;
});

async function startCluster(name: string): Promise<void> {
  etcd = await startEtcd({ name });
  client = etcd.client();
}

function startNode(name: string, ttlSeconds: number, options?: StartOptions): NodeUnderTest {
  const node = new NodeUnderTest(name, etcd?.endpoints[0] ?? "", ttlSeconds, options);
  nodes.push(node);
  return node;
}

interface Seat {
  name: string | undefined;
  lease: string;
}

async function primarySeat(): Promise<Seat | undefined> {
  const res = await client.get(PRIMARY_KEY).exec();
  const kv = res.kvs[0];
  if (!kv) return undefined;
  const record = JSON.parse(kv.value.toString()) as { name?: string };
  return { name: record.name, lease: String(kv.lease) };
}

async function backupName(): Promise<string | undefined> {
  return (await readClusterStatus(client, layout)).groupings[0]?.backup?.name;
}

/** A primary and a backup, and the primary's watchdog holding the primary's lease. */
async function primaryAndBackup(
  ttlSeconds: number,
): Promise<{ primary: NodeUnderTest; backup: NodeUnderTest; lease: string }> {
  const primary = startNode("wd-1", ttlSeconds);
  const seat = await waitUntil(
    "wd-1 primary",
    async () => ((await primarySeat())?.name === "wd-1" ? primarySeat() : undefined),
    WAIT_MS,
  );
  const backup = startNode("wd-2", ttlSeconds);
  await waitUntil("wd-2 backup", async () => (await backupName()) === "wd-2", WAIT_MS);
  const lease = seat?.lease ?? "";
  await waitUntil(
    "the primary's watchdog holds its lease",
    () => primary.heldLeases().includes(lease),
    WAIT_MS,
  );
  return { primary, backup, lease };
}

const secondsLeft = (lease: string) => leaseSecondsLeft(client, lease, new Date(Date.now() + 5_000));

describe("lease watchdog of rdeebee-cluster node", () => {
  test("kill -9 of the primary's process: its lease is revoked and the backup promotes long before the TTL", async () => {
    await startCluster("wd-kill");
    const { primary, lease } = await primaryAndBackup(LONG_TTL_SECONDS);
    const witness = await client.lease(LONG_TTL_SECONDS, { autoKeepAlive: false }).grant();

    primary.process.signal("SIGKILL");
    const promoted = await waitUntil(
      "wd-2 primary",
      async () => (await primarySeat())?.name === "wd-2",
      WAIT_MS,
    );

    const witnessLeft = await secondsLeft(String(witness));
    expect(promoted).toBe(true);
    expect(witnessLeft).toBeGreaterThan(LONG_TTL_SECONDS - 10);
    expect(await secondsLeft(lease)).toBeUndefined();
    const revoked = await waitUntil(
      "the watchdog's revoke line",
      () => primary.said("lease watchdog revoked the lease of its dead node")[0],
      WAIT_MS,
    );
    expect(revoked).toMatchObject({ lease, result: "revoked" });
  });

  test("SIGSTOP of the primary's process: no revoke; the lease runs out and the backup promotes by it", async () => {
    await startCluster("wd-stop");
    const { primary, lease } = await primaryAndBackup(SHORT_TTL_SECONDS);
    const [watchdog] = primary.watchdogPids();

    primary.process.signal("SIGSTOP");
    // The lease counts down to its last second while the paused node still holds the seat.
    const lastSecond = await waitUntil(
      "the paused primary's lease in its last second",
      async () => {
        const left = await secondsLeft(lease);
        if (left === undefined) throw new Error("the paused primary's lease is gone before its TTL ran out");
        return left <= 1 ? { left, seat: await primarySeat() } : undefined;
      },
      WAIT_MS,
      50,
    );
    expect(lastSecond.seat).toEqual({ name: "wd-1", lease });
    expect(isProcessAlive(watchdog)).toBe(true);
    await waitUntil("wd-2 primary", async () => (await primarySeat())?.name === "wd-2", WAIT_MS);
    expect(primary.said("lease watchdog revoked the lease of its dead node")).toEqual([]);

    primary.process.signal("SIGCONT");
    const renewed = await waitUntil(
      "the resumed node's new lease held by its watchdog",
      () => primary.heldLeases().find((l) => l !== lease),
      WAIT_MS,
    );
    expect(await secondsLeft(renewed)).toBeGreaterThan(0);
    expect(primary.watchdogPids()).toEqual([watchdog]);
  });

  test("kill -9 of the watchdog alone: the primary keeps its seat and lease, gets a new watchdog that works", async () => {
    await startCluster("wd-watchdog");
    const { primary, lease } = await primaryAndBackup(LONG_TTL_SECONDS);
    const [first] = primary.watchdogPids();
    process.kill(first ?? -1, "SIGKILL");

    await waitUntil(
      "a second watchdog holding the lease",
      () => primary.heldLeases().filter((l) => l === lease).length >= 2,
      WAIT_MS,
    );
    expect(primary.watchdogPids()).toHaveLength(2);
    expect(primary.said("lease watchdog exited; starting a new one")).toMatchObject([
      { pid: first, signal: "SIGKILL" },
    ]);
    expect(await primarySeat()).toEqual({ name: "wd-1", lease });
    expect(primary.process.running).toBe(true);

    const witness = await client.lease(LONG_TTL_SECONDS, { autoKeepAlive: false }).grant();
    primary.process.signal("SIGKILL");
    await waitUntil("wd-2 primary", async () => (await primarySeat())?.name === "wd-2", WAIT_MS);
    expect(await secondsLeft(String(witness))).toBeGreaterThan(LONG_TTL_SECONDS - 10);
    expect(await secondsLeft(lease)).toBeUndefined();
  });

  test("kill -9 of the watchdog and the node: failover by the lease", async () => {
    await startCluster("wd-both");
    const { primary, lease } = await primaryAndBackup(SHORT_TTL_SECONDS);
    const [watchdog] = primary.watchdogPids();
    process.kill(watchdog ?? -1, "SIGKILL");
    primary.process.signal("SIGKILL");
    await primary.process.exited;

    const afterKill = await secondsLeft(lease);
    expect(afterKill).toBeGreaterThan(0);
    expect(await primarySeat()).toEqual({ name: "wd-1", lease });
    await waitUntil("wd-2 primary", async () => (await primarySeat())?.name === "wd-2", WAIT_MS);
    expect(await secondsLeft(lease)).toBeUndefined();
    expect(primary.said("lease watchdog revoked the lease of its dead node")).toEqual([]);
  });

  test("graceful stop: the node revokes its own lease; the watchdog exits without revoking", async () => {
    await startCluster("wd-graceful");
    const node = startNode("wd-1", LONG_TTL_SECONDS);
    const lease =
      (
        await waitUntil(
          "wd-1 primary",
          async () => ((await primarySeat())?.name === "wd-1" ? primarySeat() : undefined),
          WAIT_MS,
        )
      )?.lease ?? "";
    await waitUntil("the watchdog holds the lease", () => node.heldLeases().includes(lease), WAIT_MS);
    const [watchdog] = node.watchdogPids();

    node.process.signal("SIGTERM");
    expect(await node.process.exited).toEqual({ code: 0, signal: null });
    await waitUntil("the watchdog gone", () => !isProcessAlive(watchdog), WAIT_MS);
    await sleep(100); // its last line, through the shared stderr pipe

    expect(await secondsLeft(lease)).toBeUndefined();
    expect(node.said("lease watchdog revoked the lease of its dead node")).toEqual([]);
    expect(node.said("lease watchdog: revoke failed")).toEqual([]);
    expect(node.said("lease watchdog exits: the node stopped gracefully")).toHaveLength(1);
  });

  test("--no-watchdog, node and serve: no watchdog process; a killed primary's lease runs out by its TTL", async () => {
    await startCluster("wd-off");
    const primary = startNode("wd-1", SHORT_TTL_SECONDS, { flags: ["--no-watchdog"] });
    const { lease } =
      (await waitUntil(
        "wd-1 primary",
        async () => ((await primarySeat())?.name === "wd-1" ? primarySeat() : undefined),
        WAIT_MS,
      )) ?? {};
    const backup = startNode("wd-2", SHORT_TTL_SECONDS, { command: "serve", flags: ["--no-watchdog"] });
    await waitUntil("wd-2 backup", async () => (await backupName()) === "wd-2", WAIT_MS);

    primary.process.signal("SIGKILL");
    await primary.process.exited;
    expect(await secondsLeft(lease ?? "")).toBeGreaterThan(0);
    await waitUntil("wd-2 primary", async () => (await primarySeat())?.name === "wd-2", WAIT_MS);
    expect([...primary.watchdogPids(), ...backup.watchdogPids()]).toEqual([]);
  });

  test("serve: kill -9 of its process revokes its lease at once; SIGTERM stops its watchdog without a revoke", async () => {
    await startCluster("wd-serve");
    const killed = startNode("wd-1", LONG_TTL_SECONDS, { command: "serve" });
    const killedLease = await waitUntil(
      "wd-1 primary",
      async () => ((await primarySeat())?.name === "wd-1" ? (await primarySeat())?.lease : undefined),
      WAIT_MS,
    );
    const stopped = startNode("wd-2", LONG_TTL_SECONDS, { command: "serve" });
    const stoppedLease = await waitUntil(
      "wd-2 backup",
      async () => {
        const kv = (await client.get(layout.keys.leaderKey(0, 2)).exec()).kvs[0];
        return kv?.value.toString().includes('"name":"wd-2"') ? String(kv.lease) : undefined;
      },
      WAIT_MS,
    );
    const leases = { killed: killedLease, stopped: stoppedLease };
    await waitUntil(
      "both watchdogs holding their node's lease",
      () => killed.heldLeases().includes(leases.killed) && stopped.heldLeases().includes(leases.stopped),
      WAIT_MS,
    );
    const witness = await client.lease(LONG_TTL_SECONDS, { autoKeepAlive: false }).grant();

    killed.process.signal("SIGKILL");
    await waitUntil(
      "the killed node's lease gone",
      async () => (await secondsLeft(leases.killed)) === undefined,
      WAIT_MS,
    );
    expect(await secondsLeft(String(witness))).toBeGreaterThan(LONG_TTL_SECONDS - 10);
    await waitUntil(
      "the watchdog's revoke line",
      () => killed.said("lease watchdog revoked the lease of its dead node")[0],
      WAIT_MS,
    );

    const [watchdog] = stopped.watchdogPids();
    stopped.process.signal("SIGTERM");
    expect(await stopped.process.exited).toEqual({ code: 0, signal: null });
    await waitUntil("the watchdog gone", () => !isProcessAlive(watchdog), WAIT_MS);
    await sleep(100); // its last line, through the shared stderr pipe
    expect(await secondsLeft(leases.stopped)).toBeUndefined();
    expect(stopped.said("lease watchdog revoked the lease of its dead node")).toEqual([]);
    expect(stopped.said("lease watchdog exits: the node stopped gracefully")).toHaveLength(1);
  });

  test("a node that closes the channel but lives is not taken for dead: the watchdog exits without revoking", async () => {
    await startCluster("wd-alive");
    const lease = String(await client.lease(LONG_TTL_SECONDS, { autoKeepAlive: false }).grant());
    const lines: string[] = [];
    const child = fork(watchdogEntry(), [], {
      stdio: ["ignore", "ignore", "pipe", "ipc"],
      serialization: "advanced",
    });
    forked.push(child);
    child.stderr?.on("data", (chunk: Buffer) => lines.push(chunk.toString()));
    const held = new Promise((resolve) => child.once("message", resolve));
    child.send({
      type: "configure",
      connection: { endpoints: etcd?.endpoints ?? [] },
      parentPid: process.pid,
      parentStartTicks: undefined,
      callTimeoutMs: 5_000,
      nodeName: "test",
      logLevel: "info",
    });
    child.send({ type: "lease", leaseId: lease });
    await held;

    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.disconnect();
    await exited;
    expect(await secondsLeft(lease)).toBeGreaterThan(LONG_TTL_SECONDS - 20);
    expect(lines.join("")).toContain("the node closed the channel but lives");
  });
});
