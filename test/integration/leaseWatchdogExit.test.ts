/**
 * A lease watchdog outlives its node by a bounded time, whatever etcd does: at most the death
 * window plus its revoke attempts' deadlines after the node's channel closed. Here the watchdog's
 * only way to etcd (the node's endpoint, a TCP proxy) goes dark before the node is killed, so no
 * revoke ever gets an answer and every attempt runs to its deadline. The bound is a correctness
 * bound (no watchdog left behind by a dead node), asserted with slack; the wait is generous.
 * With deadlines kept by the client, the revoke path alone ends inside the bound (about 4.5 s of
 * 8 s here); the exit timer in watchdogMain.ts is the backstop for a call that overruns its deadline.
 */
import { type ChildProcess, fork, spawn } from "node:child_process";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import type { Etcd3 } from "etcd3";
import { afterEach, beforeAll, expect, test } from "vitest";
import { CliProcess, type LogLine } from "../../src/cli/local/cliProcess.js";
import { ClusterLayout, loadClusterConfig } from "../../src/config/index.js";
import { isProcessAlive, processStartTicks } from "../../src/processLiveness.js";
import { watchdogEntry } from "../../src/watchdog/index.js";
import { ensureBuilt, PACKAGE_ROOT } from "../support/cli.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { TcpProxy } from "../support/tcpProxy.js";
import { waitUntil } from "../support/waitUntil.js";

const CONFIG = join(PACKAGE_ROOT, "config.yaml");
const PRIMARY_KEY = new ClusterLayout(loadClusterConfig(CONFIG)).keys.leaderKey(0, 1);
const TTL_SECONDS = 2;
/** The watchdog's constants (src/watchdog/watchdogMain.ts) and its revoke deadline at this TTL (half, 1–5 s). */
const DEATH_WINDOW_MS = 5_000;
const REVOKE_ATTEMPTS = 3;
const CALL_TIMEOUT_MS = Math.min(5_000, Math.max(1_000, (TTL_SECONDS * 1000) / 2));
const EXIT_BOUND_MS = DEATH_WINDOW_MS + REVOKE_ATTEMPTS * CALL_TIMEOUT_MS;
/** Process exit, log flush, this test's polling, a loaded machine. */
const SLACK_MS = 2_000;
const WAIT_MS = 120_000;

let etcd: EtcdCluster | undefined;
let client: Etcd3 | undefined;
let proxy: TcpProxy | undefined;
let node: CliProcess | undefined;
const watchdogs: number[] = [];
const children: ChildProcess[] = [];

beforeAll(ensureBuilt);

afterEach(async () => {
  node?.signal("SIGKILL");
  await node?.exited;
  for (const pid of watchdogs.splice(0)) if (isProcessAlive(pid)) process.kill(pid, "SIGKILL");
  for (const child of children.splice(0)) child.kill("SIGKILL");
  await proxy?.close();
  client?.close();
  await etcd?.stop();
  [etcd, client, proxy, node] = [undefined, undefined, undefined, undefined];
}, 3 * WAIT_MS);

test("kill -9 of a node whose etcd link is dark: its watchdog exits within the death window plus its revoke deadlines", async () => {
  etcd = await startEtcd({ name: "wd-exit" });
  client = etcd.client();
  const link = await TcpProxy.forEndpoint(etcd.endpoints[0] ?? "");
  proxy = link;
  const lines: LogLine[] = [];
  const args = ["node", "--etcd", link.endpoint, "--node", "wd-exit-1", "--lease-ttl", String(TTL_SECONDS)];
  const running = new CliProcess([...args, "--config", CONFIG, "--log-level", "info"], {
    onLine: (line) => lines.push(line),
  });
  node = running;

  await waitUntil(
    "the node primary, its watchdog holding the primary key's lease",
    async () => {
      const kv = (await client?.get(PRIMARY_KEY).exec())?.kvs[0];
      const held = lines.filter((l) => l.message === "lease watchdog holds lease").at(-1)?.lease;
      return kv && String(kv.lease) === held ? held : undefined;
    },
    WAIT_MS,
  );
  const watchdog = lines.find((l) => l.message === "lease watchdog started")?.pid;
  if (typeof watchdog !== "number") throw new Error("no watchdog pid in the node's log");
  watchdogs.push(watchdog);

  link.setMode("blackhole");
  const killedAt = performance.now();
  running.signal("SIGKILL");
  await running.exited;
  await waitUntil("the watchdog gone", () => !isProcessAlive(watchdog), WAIT_MS, 50);
  const outlivedMs = performance.now() - killedAt;

  expect(lines.filter((l) => l.message === "lease watchdog revoked the lease of its dead node")).toEqual([]);
  expect(lines.filter((l) => l.message === "lease watchdog: revoke failed").length).toBeGreaterThan(0);
  expect(Math.round(outlivedMs)).toBeLessThanOrEqual(EXIT_BOUND_MS + SLACK_MS);
});

/** The longest revoke deadline the node gives its watchdog (at a TTL of 10 s or more). */
const LONG_CALL_TIMEOUT_MS = 5_000;
const KEEP_OPEN_FAILED = "lease watchdog: etcd call to keep the connection open failed";
/** Late in the death window (5 s), so the watchdog still sees the death and goes on to revoke. */
const DIES_AFTER_CLOSE_MS = 4_500;

/**
 * Dead late in the window, every call of the watchdog runs to its deadline: three revokes and the
 * read after them would take the window's start plus four deadlines. The watchdog must give up at
 * the window plus three instead. And no call of its own fails a revoke early: etcd3 closes the
 * channel when a call fails, so a call to keep the connection open, still made after the node's
 * channel closed, would cut the revoke in flight short.
 */
test(
  "a node dead late in the death window, etcd link dark: every revoke runs to its deadline, and the watchdog still exits within the bound",
  async () => {
    etcd = await startEtcd({ name: "wd-exit-late" });
    client = etcd.client();
    const lease = String(await client.lease(60, { autoKeepAlive: false }).grant());
    const link = await TcpProxy.forEndpoint(etcd.endpoints[0] ?? "");
    proxy = link;
    // Dark from the start: the watchdog never gets a connection, so each call waits for its deadline.
    link.setMode("blackhole");
    const node = spawn("sleep", ["120"], { stdio: "ignore" });
    children.push(node);
    const nodePid = node.pid ?? -1;

    let stderr = "";
    const watchdog = fork(watchdogEntry(), [], {
      stdio: ["ignore", "ignore", "pipe", "ipc"],
      serialization: "advanced",
    });
    children.push(watchdog);
    watchdog.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const exited = new Promise((resolve) => watchdog.once("exit", resolve));
    const held = new Promise((resolve) => watchdog.once("message", resolve));
    watchdog.send({
      type: "configure",
      connection: { endpoints: [link.endpoint] },
      parentPid: nodePid,
      parentStartTicks: processStartTicks(nodePid),
      callTimeoutMs: LONG_CALL_TIMEOUT_MS,
      nodeName: "late",
      logLevel: "debug",
    });
    watchdog.send({ type: "lease", leaseId: lease });
    await held;
    // Its calls to keep the connection open (one on configure, one on the lease) have failed: none
    // is in flight when the channel closes.
    await waitUntil(
      "the watchdog's first two calls failed",
      () => stderr.split(KEEP_OPEN_FAILED).length > 2,
      WAIT_MS,
    );

    const closedAt = performance.now();
    watchdog.disconnect();
    await sleep(DIES_AFTER_CLOSE_MS);
    node.kill("SIGKILL");
    await Promise.race([exited, sleep(WAIT_MS)]);
    const outlivedMs = performance.now() - closedAt;

    const failures = stderr
      .split("\n")
      .filter((l) => l.includes('"message":"lease watchdog: revoke failed"'))
      .map((l) => String((JSON.parse(l) as { error?: unknown }).error));
    expect(failures.length).toBeGreaterThan(0);
    for (const error of failures) expect(error).toContain("DEADLINE_EXCEEDED");
    const bound = DEATH_WINDOW_MS + REVOKE_ATTEMPTS * LONG_CALL_TIMEOUT_MS;
    expect(Math.round(outlivedMs)).toBeLessThanOrEqual(bound + SLACK_MS);
  },
  3 * WAIT_MS,
);
