import { afterEach, expect, inject, test } from "vitest";
import { Compactor } from "./compactor.js";
import { FaultCluster, runScenario, TTL_MS } from "./faultCluster.js";
import type { NodeProcess } from "./nodeProcess.js";

let cluster: FaultCluster | undefined;

afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

type Fault = (c: FaultCluster, compactor: Compactor) => Promise<void>;

/** Cuts `node` off for `ms` with a compaction in the middle, so its watches come back below it. */
const cut =
  (
    pick: (before: {
      primary: NodeProcess;
      backup: NodeProcess;
      follower?: NodeProcess;
    }) => NodeProcess | undefined,
    mode: "reset" | "blackhole",
    ms: number,
  ): Fault =>
  async (c, compactor) => {
    await c.trial(async ({ primary, backup }) => {
      const follower = c.active().find((n) => n !== primary && n !== backup);
      const node = pick({ primary, backup, follower });
      if (!node) throw new Error("no node to cut off");
      await c.impair(`${mode} ${ms} ms`, node, async () => {
        const link = node.cutLink(mode, ms);
        await compactor.compactNow();
        await link;
      });
    });
  };

const restartMember =
  (index: number): Fault =>
  async (c, compactor) => {
    await c.trial(async () => {
      const member = c.etcd.members[index];
      if (!member) throw new Error(`no etcd member ${index}`);
      await c.impair(`restart etcd member ${index}`, undefined, async () => {
        await member.stop();
        await compactor.compactNow();
        await member.restart();
      });
    });
  };

const restartAll: Fault = async (c) => {
  await c.trial(async () => {
    await c.impair("restart every etcd member", undefined, async () => {
      await c.etcd.stopAll();
      await c.etcd.startAll();
    });
  });
};

const FAULTS: [string, Fault][] = [
  ["reset the primary's link 1 s", cut(({ primary }) => primary, "reset", 1_000)],
  ["restart etcd member 0", restartMember(0)],
  ["blackhole the backup's link 1.5 s", cut(({ backup }) => backup, "blackhole", 1_500)],
  ["restart etcd member 1", restartMember(1)],
  ["reset a follower's link 1.5 s", cut(({ follower }) => follower, "reset", 1_500)],
  ["restart etcd member 2", restartMember(2)],
  ["restart every etcd member", restartAll],
  ["blackhole the primary's link 1.5 s", cut(({ primary }) => primary, "blackhole", 1_500)],
];

test("compaction every TTL, with etcd members restarted one at a time and all together, and node links cut for less than a TTL: no node exits, the cluster converges, one member key per node", async () => {
  cluster = await FaultCluster.start("compaction");
  const c = cluster;
  const compactor = new Compactor(c, TTL_MS);
  const { report } = await runScenario(
    c,
    "compaction + etcd restarts + link cuts",
    inject("faultRowsFile"),
    async () => {
      compactor.start();
      try {
        for (const [, fault] of FAULTS) await fault(c, compactor);
      } finally {
        await compactor.stop();
      }
      return `${FAULTS.length} faults, ${compactor.compactions} compactions`;
    },
  );
  expect(report.violations).toEqual([]);
});
