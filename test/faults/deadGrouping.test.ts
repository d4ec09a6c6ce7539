import { afterEach, expect, inject, test } from "vitest";
import { SEED_CONFIG } from "../support/clusterNodes.js";
import { FaultCluster, runScenario } from "./faultCluster.js";

/** Two groupings of one group of two IDs each: four nodes fill the cluster. */
const FULL_CONFIG = { ...SEED_CONFIG, groups: 2, group_size: 2, reads: 1 };
const CAPACITY = FULL_CONFIG.groups * FULL_CONFIG.group_size;
const SETTLE_MS = 60_000;

let cluster: FaultCluster | undefined;

afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

test("every member of one grouping killed -9 in a full cluster, then new nodes started: the dead grouping's slots are advertised and claimed, it gets a primary and a backup again, IDs stay unique", async () => {
  cluster = await FaultCluster.start("dead-grouping", { nodes: CAPACITY, config: FULL_CONFIG });
  const c = cluster;
  const { report } = await runScenario(
    c,
    "whole grouping killed (2 groupings x 2 IDs, full)",
    inject("faultRowsFile"),
    async () => {
      for (const grouping of [0, 1]) {
        await c.trial(async ({ status }) => {
          const groups = c.layout.groupsOf(grouping);
          const victims = status.groups
            .filter((g) => groups.includes(g.group))
            .flatMap((g) => g.members.flatMap((m) => c.nodes.filter((n) => n.name === m.name)));
          if (victims.length === 0) throw new Error(`grouping ${grouping} has no members`);
          await Promise.all(victims.map((v) => v.kill9()));
          for (const _ of victims) await c.addNode();
        }, SETTLE_MS);
      }
      return `config: ${FULL_CONFIG.groups} groupings x ${FULL_CONFIG.group_size} IDs; each trial kills a whole grouping`;
    },
  );
  expect(report.violations).toEqual([]);
});
