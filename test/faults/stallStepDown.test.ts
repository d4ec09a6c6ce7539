import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, expect, inject, test } from "vitest";
import { FaultCluster, rowOf, TTL_MS } from "./faultCluster.js";
import { appendRow } from "./summary.js";

const TRIALS = 8;
/** Stall lengths around the local deadline (TTL − margin after the last acknowledged keepalive) and well past it. */
const STALLS_IN_TTL = [0.6, 0.85, 1, 1.5, 3];

let cluster: FaultCluster | undefined;

afterEach(async ({ task }) => {
  if (task.result?.state === "fail") cluster?.keepArtifacts();
  await cluster?.close();
  cluster = undefined;
});

const pick = <T>(values: readonly T[]): T => values[Math.floor(Math.random() * values.length)] as T;

test.each(["primary", "backup"] as const)(
  `one-way stalls (etcd's replies lost) of the %s at random moments, ${TRIALS} trials: the stalled leader vacates its seat at its deadline, the checker finds no overlap and no write after a deadline`,
  async (target) => {
    cluster = await FaultCluster.start(`stall-step-down-${target}`);
    const c = cluster;
    const stalls: string[] = [];
    for (let i = 0; i < TRIALS; i++) {
      await c.trial(async (settled) => {
        const node = settled[target];
        const stallMs = pick(STALLS_IN_TTL) * TTL_MS;
        stalls.push(`${stallMs}`);
        await sleep(Math.random() * TTL_MS);
        await c.impair("stall-downstream", node, async () => {
          node.setNetwork("stall-downstream");
          await sleep(stallMs);
          node.setNetwork("pass");
        });
      });
    }
    const report = await c.finish();
    appendRow(
      inject("faultRowsFile"),
      rowOf(`stall down ${target}, random moments`, c.trials, report, `stalls ${stalls.join(", ")} ms`),
    );
    expect(report.violations).toEqual([]);
    expect(c.nodes.every((n) => n.exit?.code === 0)).toBe(true);
  },
);
