/**
 * The lease watchdog under faults, several rounds on one cluster: kill -9 of the primary's
 * watchdog (nothing moves, a new watchdog starts), of the primary (its watchdog revokes the lease,
 * the backup promotes before any lease could expire), of both (failover by the lease), and SIGSTOP
 * of the primary while its watchdog lives (never revoked early: no move within the TTL, a move by
 * the lease past it). The history checker replays the whole run.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, expect, inject, test } from "vitest";
import { isProcessAlive } from "../support/cli.js";
import { waitUntil } from "../support/waitUntil.js";
import { FaultCluster, rowOf, type Trial, TTL_MS } from "./faultCluster.js";
import type { NodeProcess } from "./nodeProcess.js";
import { appendRow } from "./summary.js";

const ROUNDS = 3;
const REVOKED = "lease watchdog revoked the lease of its dead node";

let cluster: FaultCluster | undefined;

afterEach(async ({ task }) => {
  if (task.result?.state === "fail") cluster?.keepArtifacts();
  const watchdogs = cluster?.nodes.flatMap(watchdogPids) ?? [];
  await cluster?.close();
  cluster = undefined;
  // Each exits by itself once its node is gone; any left (etcd stopped mid-revoke) is killed here.
  await waitUntil("every watchdog gone", () => watchdogs.every((pid) => !isProcessAlive(pid)), 15_000).catch(
    () => {
      for (const pid of watchdogs) if (isProcessAlive(pid)) process.kill(pid, "SIGKILL");
    },
  );
});

function watchdogPids(node: NodeProcess): number[] {
  return node.lines.flatMap((l) =>
    l.message === "lease watchdog started" && typeof l.pid === "number" ? [l.pid] : [],
  );
}

const revokes = (node: NodeProcess) => node.lines.filter((l) => l.message === REVOKED);

/** The primary's current watchdog, once it holds the lease of the primary key. */
async function armedWatchdog(c: FaultCluster, primary: NodeProcess): Promise<number> {
  const key = c.layout.keys.leaderKey(0, 1);
  return waitUntil(
    `${primary.name}'s watchdog holding its lease`,
    async () => {
      const lease = String((await c.client.get(key).exec()).kvs[0]?.lease);
      const held = primary.lines.filter((l) => l.message === "lease watchdog holds lease").at(-1)?.lease;
      const pid = watchdogPids(primary).at(-1);
      return held === lease && pid !== undefined && isProcessAlive(pid) ? pid : undefined;
    },
    30_000,
    50,
  );
}

/**
 * A trial whose primary's watchdog already holds its lease when the trial's clock starts, so a
 * freshly started watchdog's start-up is not counted in the failover time.
 */
async function armedTrial(c: FaultCluster, inject: Parameters<FaultCluster["trial"]>[0]): Promise<Trial> {
  await armedWatchdog(c, (await c.settled()).primary);
  return c.trial(inject);
}

test(`watchdog faults, ${ROUNDS} rounds: kill -9 of the watchdog, the node, both; SIGSTOP of the node`, async () => {
  cluster = await FaultCluster.start("watchdog", { watchdog: true });
  const c = cluster;
  const trials: Record<string, Trial[]> = {
    "kill -9 primary's watchdog": [],
    "kill -9 primary (watchdog alive)": [],
    "kill -9 primary and its watchdog": [],
    "SIGSTOP primary 0.5 TTL (watchdog alive)": [],
    "SIGSTOP primary 1.5 TTL (watchdog alive)": [],
  };
  const primariesAfterWatchdogKill: [string, string][] = [];
  const killedWithWatchdog: NodeProcess[] = [];
  const killedBoth: NodeProcess[] = [];
  const paused: NodeProcess[] = [];

  for (let round = 0; round < ROUNDS; round++) {
    trials["kill -9 primary's watchdog"]?.push(
      await armedTrial(c, async ({ primary }) => {
        const pid = await armedWatchdog(c, primary);
        const started = watchdogPids(primary).length;
        process.kill(pid, "SIGKILL");
        await waitUntil("a new watchdog", () => watchdogPids(primary).length > started, 30_000);
        await armedWatchdog(c, primary);
        const after = (await c.status()).groupings[0]?.primary?.name ?? "";
        primariesAfterWatchdogKill.push([primary.name, after]);
      }),
    );

    trials["kill -9 primary (watchdog alive)"]?.push(
      await armedTrial(c, async ({ primary }) => {
        await armedWatchdog(c, primary);
        killedWithWatchdog.push(primary);
        await primary.kill9();
        await waitUntil(
          `${primary.name}'s slot refilled`,
          async () => {
            if ((await c.status()).advertised.length === 0) return false;
            await c.addNode();
            return true;
          },
          6 * TTL_MS,
        );
      }),
    );

    trials["kill -9 primary and its watchdog"]?.push(
      await armedTrial(c, async ({ primary }) => {
        const pid = await armedWatchdog(c, primary);
        killedBoth.push(primary);
        process.kill(pid, "SIGKILL");
        await primary.kill9();
        await waitUntil(
          `${primary.name}'s slot refilled`,
          async () => {
            if ((await c.status()).advertised.length === 0) return false;
            await c.addNode();
            return true;
          },
          6 * TTL_MS,
        );
      }),
    );

    for (const ttls of [0.5, 1.5]) {
      trials[`SIGSTOP primary ${ttls} TTL (watchdog alive)`]?.push(
        await armedTrial(c, async ({ primary }) => {
          await armedWatchdog(c, primary);
          paused.push(primary);
          primary.pause();
          await sleep(ttls * TTL_MS);
          primary.resume();
        }),
      );
    }
  }

  const report = await c.finish();
  const rows = Object.entries(trials).map(([fault, list]) => rowOf(fault, list, report));
  for (const row of rows) appendRow(inject("faultRowsFile"), row);
  expect(report.violations).toEqual([]);

  const moved = Object.fromEntries(rows.map((r) => [r.fault, r.primaryChanged]));
  expect(moved).toEqual({
    "kill -9 primary's watchdog": 0,
    "kill -9 primary (watchdog alive)": ROUNDS,
    "kill -9 primary and its watchdog": ROUNDS,
    "SIGSTOP primary 0.5 TTL (watchdog alive)": 0,
    "SIGSTOP primary 1.5 TTL (watchdog alive)": ROUNDS,
  });
  for (const [before, after] of primariesAfterWatchdogKill) expect(after).toBe(before);
  // The watchdog revoked each dead node's lease itself, before etcd could expire it.
  for (const node of killedWithWatchdog) expect(revokes(node)).toMatchObject([{ result: "revoked" }]);
  const neverRevoked = [...killedBoth, ...paused].filter((n) => !killedWithWatchdog.includes(n));
  for (const node of neverRevoked) expect(revokes(node)).toEqual([]);
  expect(c.nodes.filter((n) => n.exit?.signal !== "SIGKILL").every((n) => n.exit?.code === 0)).toBe(true);
});
