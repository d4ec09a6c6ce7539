import { afterEach, expect, inject, test } from "vitest";
import { Compactor } from "./compactor.js";
import { FaultCluster, runScenario, TTL_MS } from "./faultCluster.js";

let cluster: FaultCluster | undefined;

afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

type Fault = (c: FaultCluster, compactor: Compactor) => Promise<void>;

type Role = "primary" | "backup" | "follower";

/** Cuts the node in `role` off for `ms`, with a compaction in the middle, so its watches come back below it. */
const cut =
  (role: Role, mode: "reset" | "blackhole", ms: number): Fault =>
  async (c, compactor) => {
    await c.trial(async ({ primary, backup }) => {
      const follower = c.active().find((n) => n !== primary && n !== backup);
      const node = { primary, backup, follower }[role];
      if (!node) throw new Error(`no ${role} to cut off`);
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

/** Link cuts are shorter than a TTL: the node's lease survives them. */
const FAULTS: Fault[] = [
  cut("primary", "reset", 1_000),
  restartMember(0),
  cut("backup", "blackhole", 1_500),
  restartMember(1),
  cut("follower", "reset", 1_500),
  restartMember(2),
  restartAll,
  cut("primary", "blackhole", 1_500),
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
        for (const fault of FAULTS) await fault(c, compactor);
      } finally {
        await compactor.stop();
      }
      return `${FAULTS.length} faults, ${compactor.compactions} compactions`;
    },
  );
  expect(report.violations).toEqual([]);
});
