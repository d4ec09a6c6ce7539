import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, expect, inject, test } from "vitest";
import type { EtcdMember } from "../support/etcdCluster.js";
import { FaultCluster, rowOf, TTL_MS } from "./faultCluster.js";
import { appendRow } from "./summary.js";

const TRIALS = 3;
const DOWN_MS = 2 * TTL_MS;

type Victims = (members: readonly EtcdMember[], leader: number) => EtcdMember[];

const faults: [string, Victims][] = [
  [
    "kill etcd follower",
    (members, leader) => [members[(leader + 1) % members.length]].flatMap((m) => m ?? []),
  ],
  ["kill etcd leader", (members, leader) => [members[leader]].flatMap((m) => m ?? [])],
  [
    "kill 2 of 3 etcd members",
    (members, leader) => [members[leader], members[(leader + 1) % members.length]].flatMap((m) => m ?? []),
  ],
];

let cluster: FaultCluster | undefined;

afterEach(async ({ task }) => {
  if (task.result?.state === "fail") cluster?.keepArtifacts();
  await cluster?.close();
  cluster = undefined;
});

test.each(faults)(`%s for ${DOWN_MS / TTL_MS} TTL, then restart it`, async (fault, victims) => {
  cluster = await FaultCluster.start(fault.replace(/\W+/g, "-"));
  const c = cluster;
  for (let i = 0; i < TRIALS; i++) {
    const down = victims(c.etcd.members, await c.etcd.leaderIndex());
    await c.trial(() =>
      c.impair(fault, undefined, async () => {
        await Promise.all(down.map((m) => m.kill()));
        await sleep(DOWN_MS);
        for (const member of down) await member.restart();
      }),
    );
  }
  const report = await c.finish();
  appendRow(inject("faultRowsFile"), rowOf(fault, c.trials, report));
  expect(report.violations).toEqual([]);
});
