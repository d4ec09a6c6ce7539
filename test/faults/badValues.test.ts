import { afterEach, expect, inject, test } from "vitest";
import { waitUntil } from "../support/waitUntil.js";
import { FAULT_LAYOUT, FaultCluster, rowOf } from "./faultCluster.js";
import type { NodeProcess } from "./nodeProcess.js";
import { appendRow } from "./summary.js";

const keys = FAULT_LAYOUT.keys;
const HUGE = "x".repeat(1024 * 1024);
const GHOST = JSON.stringify({ id: 999, name: "ghost", address: "nowhere:1" });

type Kind = "not JSON" | "wrong shape" | "huge" | "unknown node";

/**
 * A value planted under one key, and the warning (one of `warning`, with a detail matching
 * `detail`) some process must log, as a warning or an error.
 */
interface Plant {
  family: string;
  kind: Kind;
  key: string;
  value: string;
  warning: string | readonly string[];
  detail: RegExp;
}

const badValue = (
  family: string,
  kind: Kind,
  key: string,
  value: string,
  warning: string | readonly string[],
  detail = /.*/,
): Plant => ({
  family,
  kind,
  key,
  value,
  warning,
  detail,
});

const COUNTER_WARNING = "ignoring bad node ID counter";
const counterPlants = [
  badValue("id_key", "unknown node", keys.idKey, "999999", COUNTER_WARNING, /999999/),
  badValue("id_key", "not JSON", keys.idKey, "banana", COUNTER_WARNING, /banana/),
  badValue("id_key", "wrong shape", keys.idKey, JSON.stringify({ next: 4 }), COUNTER_WARNING, /next/),
  badValue("id_key", "huge", keys.idKey, "9".repeat(1024 * 1024), COUNTER_WARNING, /^9+$/),
];

const MEMBER_WARNING = "ignoring bad member value";
const memberPlants = [
  badValue("member", "not JSON", keys.memberKey(2, 8), "{not json", MEMBER_WARNING),
  badValue("member", "wrong shape", keys.memberKey(2, 7), JSON.stringify({ id: "seven" }), MEMBER_WARNING),
  badValue("member", "huge", keys.memberKey(2, 6), HUGE, MEMBER_WARNING),
  badValue(
    "member",
    "unknown node",
    `${keys.membershipPrefix(0)}999`,
    GHOST,
    "ignoring member key outside its group's slots",
  ),
];

/** A poisoned leader key counts as held; it is reported loudly, as a warning or an error. */
const POISONED_WARNING = "poisoned leader key";
const LEADER_WARNING = ["ignoring bad leader value", POISONED_WARNING];
const BACKUP_KEY = keys.leaderKey(0, 2);
const leaderPlants = [
  badValue("leader", "unknown node", BACKUP_KEY, GHOST, [
    "ignoring leader value naming a node outside this grouping",
    POISONED_WARNING,
  ]),
  badValue("leader", "not JSON", BACKUP_KEY, "{not json", LEADER_WARNING, /not JSON/),
  badValue("leader", "wrong shape", BACKUP_KEY, JSON.stringify({ id: -1 }), LEADER_WARNING, /wrong shape/),
  badValue("leader", "huge", BACKUP_KEY, HUGE, LEADER_WARNING, /too large/),
];

const AD_WARNING = "failover advertisement has a bad value";
const failoverPlants = [
  badValue("failover_id", "not JSON", keys.failoverKey(1), "{not json", AD_WARNING),
  badValue("failover_id", "wrong shape", keys.failoverKey(2), JSON.stringify({ id: "two" }), AD_WARNING),
  badValue("failover_id", "huge", keys.failoverKey(3), HUGE, AD_WARNING),
  badValue(
    "failover_id",
    "unknown node",
    `${keys.failoverPrefix}999`,
    JSON.stringify({ id: 999, group: 333, advertisedBy: 0, token: 1 }),
    "ignoring failover advertisement for a slot never handed out",
  ),
];

let cluster: FaultCluster | undefined;

afterEach(async ({ task }) => {
  if (task.result?.state === "fail") cluster?.keepArtifacts();
  await cluster?.close();
  cluster = undefined;
});

/** How many log lines each process had written: warnings are looked for after it. */
type Mark = Map<NodeProcess, number>;

const mark = (nodes: readonly NodeProcess[]): Mark => new Map(nodes.map((n) => [n, n.lines.length]));

function warnedSince(since: Mark, plant: Plant): boolean {
  return [...since].some(([node, from]) =>
    node.lines
      .slice(from)
      .some(
        (line) =>
          (line.level === "warn" || line.level === "error") &&
          [plant.warning].flat().some((warning) => line.message?.startsWith(warning)) &&
          line.key === plant.key &&
          plant.detail.test(`${line.problem ?? line.value ?? ""}`),
      ),
  );
}

/** Plants a family's bad values, asks `expectWarning` about each, and removes them again. */
type Planting = (
  c: FaultCluster,
  expectWarning: (plant: Plant, since: Mark) => Promise<void>,
) => Promise<void>;

const plantOneAtATime =
  (
    plants: readonly Plant[],
    put: (c: FaultCluster, plant: Plant) => Promise<void>,
    restore: (c: FaultCluster) => Promise<void>,
  ): Planting =>
  async (c, expectWarning) => {
    for (const plant of plants) {
      const since = mark(c.nodes);
      await put(c, plant);
      await expectWarning(plant, since);
    }
    await restore(c);
  };

const families: [string, Planting][] = [
  [
    "id_key",
    async (c, expectWarning) => {
      const counter = (await c.client.get(keys.idKey).string()) ?? "0";
      await plantOneAtATime(
        counterPlants,
        (cl, p) => cl.plant(p.key, p.value),
        (cl) => cl.plant(keys.idKey, counter),
      )(c, expectWarning);
    },
  ],
  [
    "member-…/",
    async (c, expectWarning) => {
      const since = mark(c.nodes);
      for (const plant of memberPlants) await c.plant(plant.key, plant.value);
      for (const plant of memberPlants) await expectWarning(plant, since);
      for (const plant of memberPlants) await c.remove(plant.key);
    },
  ],
  [
    "leader-…",
    plantOneAtATime(
      leaderPlants,
      (c, p) => c.replace(p.key, p.value),
      (c) => c.remove(BACKUP_KEY),
    ),
  ],
  [
    "failover_id/",
    async (c, expectWarning) => {
      for (const plant of failoverPlants) await c.plant(plant.key, plant.value);
      const late = await c.addNode();
      for (const plant of failoverPlants) await expectWarning(plant, new Map([[late, 0]]));
      await waitUntil("the late node to join", () => late.role === "follower", 10_000);
      for (const plant of failoverPlants) await c.remove(plant.key);
    },
  ],
];

test.each(families)(
  "bad values under %s (not JSON, wrong shape, 1 MB, unknown node): logged and ignored, no process exits, the checker passes",
  async (family, planting) => {
    cluster = await FaultCluster.start(`bad-${family.replace(/\W+/g, "")}`);
    const c = cluster;
    const unlogged: string[] = [];
    const planted = new Set<string>();
    await planting(c, async (plant, since) => {
      planted.add(plant.key);
      await waitUntil(`a warning about ${plant.kind}`, () => warnedSince(since, plant), 5_000).catch(() =>
        unlogged.push(`${plant.kind} (${plant.key}=${plant.value.slice(0, 20)})`),
      );
    });

    const settled = await c.settledAndQuiet();
    expect(settled.status.problems).toEqual([]);
    expect(c.nodes.filter((n) => !n.running).map((n) => n.name)).toEqual([]);
    // Crash output never; an error only as the loud report of a planted key.
    const unexpected = (l: { level?: string; key?: unknown }) =>
      l.level === "raw" || (l.level === "error" && !planted.has(String(l.key)));
    expect(c.nodes.flatMap((n) => n.lines.filter(unexpected))).toEqual([]);
    const report = await c.finish();
    appendRow(inject("faultRowsFile"), {
      ...rowOf(`bad values: ${family}`, [], report),
      trials: 4,
      note: unlogged.length > 0 ? `not logged: ${unlogged.join("; ")}` : "all 4 logged",
    });
    expect.soft(unlogged, "bad values that no process logged").toEqual([]);
    expect.soft(report.violations).toEqual([]);
  },
);
