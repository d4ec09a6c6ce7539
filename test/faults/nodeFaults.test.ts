import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, expect, inject, test } from "vitest";
import { waitUntil } from "../support/waitUntil.js";
import { FaultCluster, rowOf, TTL_MS } from "./faultCluster.js";
import { appendRow } from "./summary.js";

const KILL_TRIALS = 20;
const PAUSE_TRIALS = 3;
const PAUSES_IN_TTL = [0.5, 1, 1.5, 3];

let cluster: FaultCluster | undefined;

afterEach(async ({ task }) => {
  if (task.result?.state === "fail") cluster?.keepArtifacts();
  await cluster?.close();
  cluster = undefined;
});

test(`kill -9 of the primary, ${KILL_TRIALS} trials, a replacement node after each`, async () => {
  cluster = await FaultCluster.start("kill");
  const c = cluster;
  for (let i = 0; i < KILL_TRIALS; i++) {
    await c.trial(async ({ primary, status }) => {
      const victimId = status.groupings[0]?.primary?.id;
      expect(await primary.kill9()).toEqual({ code: null, signal: "SIGKILL" });
      await waitUntil(
        `slot ${victimId} advertised`,
        async () => (await c.status()).advertised.some((a) => a.id === victimId),
        6 * TTL_MS,
      );
      await c.addNode();
    });
  }
  const report = await c.finish();
  const row = rowOf("kill -9 primary", c.trials, report);
  appendRow(inject("faultRowsFile"), row);
  expect(report.violations).toEqual([]);
  expect(row.primaryChanged).toBe(KILL_TRIALS);
});

test.each(PAUSES_IN_TTL)("SIGSTOP of the primary for %s TTL, then SIGCONT", async (ttls) => {
  cluster = await FaultCluster.start(`pause${String(ttls).replace(".", "_")}`);
  const c = cluster;
  for (let i = 0; i < PAUSE_TRIALS; i++) {
    await c.trial(async ({ primary }) => {
      primary.pause();
      await sleep(ttls * TTL_MS);
      primary.resume();
    });
  }
  const report = await c.finish();
  expect(c.nodes.every((n) => n.exit?.code === 0)).toBe(true);
  appendRow(inject("faultRowsFile"), rowOf(`pause primary ${ttls} TTL`, c.trials, report));
  expect(report.violations).toEqual([]);
});
