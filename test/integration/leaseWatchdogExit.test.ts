/**
 * A lease watchdog outlives its node by a bounded time, whatever etcd does: at most the death
 * window plus its revoke attempts' deadlines after the node's channel closed. Here the watchdog's
 * only way to etcd (the node's endpoint, a TCP proxy) goes dark before the node is killed, so no
 * revoke ever gets an answer and every attempt runs to its deadline. The bound is a correctness
 * bound (no watchdog left behind by a dead node), asserted with slack; the wait is generous.
 * With deadlines kept by the client, the revoke path alone ends inside the bound (about 4.5 s of
 * 8 s here); the exit timer in watchdogMain.ts is the backstop for a call that overruns its deadline.
 */
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { Etcd3 } from "etcd3";
import { afterEach, beforeAll, expect, test } from "vitest";
import { CliProcess, type LogLine } from "../../src/cli/local/cliProcess.js";
import { ClusterLayout, loadClusterConfig } from "../../src/config/index.js";
import { isProcessAlive } from "../../src/watchdog/processLiveness.js";
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

beforeAll(ensureBuilt);

afterEach(async () => {
  node?.signal("SIGKILL");
  await node?.exited;
  for (const pid of watchdogs.splice(0)) if (isProcessAlive(pid)) process.kill(pid, "SIGKILL");
  await proxy?.close();
  client?.close();
  await etcd?.stop();
  [etcd, client, proxy, node] = [undefined, undefined, undefined, undefined];
});

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
