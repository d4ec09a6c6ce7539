import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, expect, inject, test } from "vitest";
import { SEED_CONFIG } from "../support/clusterNodes.js";
import { waitUntil } from "../support/waitUntil.js";
import { FaultCluster, runScenario, TTL_MS } from "./faultCluster.js";
import { kill9All, type NodeProcess } from "./nodeProcess.js";
import { percentile } from "./summary.js";

/** Three groupings of one group of three IDs each: nine nodes fill the cluster. */
const FULL_CONFIG = { ...SEED_CONFIG, groups: 3, group_size: 3, reads: 1 };
const CAPACITY = FULL_CONFIG.groups * FULL_CONFIG.group_size;
const POWER_CUTS = 3;
const STORMS = 2;
/** Generous: the restarted processes load Node.js on a shared 2-core machine, then wait out the old leases. */
const FORM_TIMEOUT_MS = 90_000;

let cluster: FaultCluster | undefined;
const stateDirs: string[] = [];

afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
  await Promise.all(stateDirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

async function newStateDirs(count: number): Promise<string[]> {
  const dirs = await Promise.all(
    Array.from({ length: count }, () => mkdtemp(join(tmpdir(), "whole-cluster-restart-"))),
  );
  stateDirs.push(...dirs);
  return dirs;
}

/** Every member key's ID, by the node name in its value. */
async function idsByName(c: FaultCluster): Promise<Map<string, number>> {
  const status = await c.status();
  return new Map(status.groups.flatMap((g) => g.members.map((m) => [m.name, m.id] as const)));
}

/** The leases of the member keys in etcd now. */
async function memberLeases(c: FaultCluster): Promise<Set<string>> {
  return new Set((await c.membership()).members.map((m) => m.lease));
}

/**
 * Every active process holds one member key, no two hold the same ID, and the dead hold none
 * (`settled` waits for the first; the IDs are checked here as well, by name).
 */
async function expectUniqueIds(c: FaultCluster): Promise<Map<string, number>> {
  const ids = await idsByName(c);
  const active = c.active().map((n) => n.name);
  expect([...ids.keys()].sort()).toEqual([...active].sort());
  expect(new Set(ids.values()).size).toBe(active.length);
  return ids;
}

/** The transition lines in which `node` became a member with an ID (each says how it got it). */
const joins = (node: NodeProcess) =>
  node.lines.filter((l) => l.message === "transition" && l.joinedVia !== undefined);

const sawFull = (node: NodeProcess) =>
  node.lines.some((l) => l.message === "cluster is full; waiting for an advertised failed slot");

const claimedDirectly = (node: NodeProcess) =>
  node.lines.some((l) => l.message === "cluster is full and nobody leads it; claiming a free slot directly");

/** From `since` until the last of `nodes` logged its first line (Node.js loaded, the CLI running). */
function bootMs(nodes: readonly NodeProcess[], since: number): number {
  const firsts = nodes.map((n) => Date.parse(String(n.lines[0]?.timestamp ?? "")));
  return Math.max(...firsts.map((t) => (Number.isNaN(t) ? 0 : t - since)));
}

function spread(ms: readonly number[]): string {
  return `${Math.round(percentile(ms, 50) ?? 0)} / ${Math.round(Math.max(...ms))} ms (p50 / max of ${ms.length})`;
}

/**
 * Kills every process of `c` at once (no watchdogs: their leases live on for a TTL) and starts as
 * many at once, each on the state directory of the one it replaces when `dirs` maps them. Resolves
 * once the cluster has formed again, with the time that took and the new processes.
 */
async function powerCut(
  c: FaultCluster,
  dirs?: Map<NodeProcess, string>,
): Promise<{
  formedMs: number;
  bootMs: number;
  restarted: NodeProcess[];
  oldLeasesLive: number;
}> {
  const victims = c.active();
  const oldLeases = await memberLeases(c);
  await kill9All(victims);
  const restartedAt = Date.now();
  const restarted = await c.addNodes(victims.length, (i) => {
    const victim = victims[i];
    const stateDir = victim && dirs?.get(victim);
    return stateDir === undefined ? {} : { stateDir };
  });
  if (dirs)
    restarted.forEach((node, i) => {
      const victim = victims[i];
      const dir = victim && dirs.get(victim);
      if (dir !== undefined) dirs.set(node, dir);
    });
  const oldLeasesLive = [...(await memberLeases(c))].filter((l) => oldLeases.has(l)).length;
  await c.settled(FORM_TIMEOUT_MS);
  return {
    formedMs: Date.now() - restartedAt,
    bootMs: bootMs(restarted, restartedAt),
    restarted,
    oldLeasesLive,
  };
}

test("power cut: every node killed -9 at once and as many fresh processes started at once, while the old leases live: unique IDs, every grouping seated again, one claim per slot", async () => {
  cluster = await FaultCluster.start("power-cut", { nodes: CAPACITY, config: FULL_CONFIG });
  const c = cluster;
  const formed: number[] = [];
  const boots: number[] = [];
  const notes: string[] = [];
  const { report } = await runScenario(
    c,
    `power cut, fresh processes (${FULL_CONFIG.groups} groupings x ${FULL_CONFIG.group_size} IDs, full)`,
    inject("faultRowsFile"),
    async () => {
      for (let run = 0; run < POWER_CUTS; run++) {
        await c.trial(async () => {
          const { formedMs, bootMs, restarted, oldLeasesLive } = await powerCut(c);
          formed.push(formedMs);
          boots.push(bootMs);
          // The new processes met a full cluster whose members' leases had not expired yet.
          expect(oldLeasesLive).toBeGreaterThan(0);
          await expectUniqueIds(c);
          notes.push(
            `${oldLeasesLive} old leases live at the restart; ${restarted.filter(sawFull).length} saw it full, ${restarted.filter(claimedDirectly).length} claimed directly`,
          );
        }, FORM_TIMEOUT_MS);
      }
      return `formed ${spread(formed)}, the last process up ${spread(boots)}; ${notes.join("; ")}`;
    },
  );
  console.log(
    `power cut, fresh processes: formed ${spread(formed)}, the last process up ${spread(boots)}\n  ${notes.join("\n  ")}`,
  );
  expect(report.violations).toEqual([]);
});

/**
 * Keeps `leases` alive from the test's own client until the returned function is called: dead
 * processes' leases that outlive the new processes' boot, as the default TTL (5 s) would.
 */
async function holdLeases(c: FaultCluster, leases: ReadonlySet<string>): Promise<() => Promise<void>> {
  const stream = await c.client.leaseClient.leaseKeepAlive();
  stream.on("data", () => {});
  stream.on("error", () => {});
  let holding = true;
  const loop = (async () => {
    while (holding) {
      for (const ID of leases) stream.write({ ID });
      await sleep(TTL_MS / 4);
    }
  })();
  return async () => {
    holding = false;
    await loop;
    stream.end();
  };
}

/**
 * A newcomer that found the cluster full while its dead leaders' keys still lived waits for an
 * advertisement; once those keys expire nobody is left to advertise, so it must notice that nobody
 * leads and claim a free slot itself. The leases are held here until every newcomer waits.
 */
test("power cut, the old leases outliving the new processes' boot: every newcomer finds the cluster full with its old leaders; once the leases expire, the cluster forms", async () => {
  cluster = await FaultCluster.start("power-cut-stale", { nodes: CAPACITY, config: FULL_CONFIG });
  const c = cluster;
  const { report } = await runScenario(
    c,
    `power cut, every newcomer sees the old leaders (${FULL_CONFIG.groups} groupings x ${FULL_CONFIG.group_size} IDs, full)`,
    inject("faultRowsFile"),
    async () => {
      let formedMs = 0;
      await c.trial(async () => {
        const victims = c.active();
        const release = await holdLeases(c, await memberLeases(c));
        let releasedAt = 0;
        try {
          await kill9All(victims);
          const restarted = await c.addNodes(victims.length);
          await waitUntil(
            "every new process waiting for an advertisement in the full cluster",
            () => restarted.every(sawFull),
            FORM_TIMEOUT_MS,
            100,
          );
        } finally {
          await release();
          releasedAt = Date.now();
        }
        await c.settled(FORM_TIMEOUT_MS);
        formedMs = Date.now() - releasedAt;
        await expectUniqueIds(c);
      }, FORM_TIMEOUT_MS);
      return `formed ${formedMs} ms after the old leases were let go`;
    },
  );
  expect(report.violations).toEqual([]);
});

/** Starts `count` processes at once, each on a state directory of its own; by process, the directory. */
async function startOnStateDirs(c: FaultCluster, count: number): Promise<Map<NodeProcess, string>> {
  const dirs = await newStateDirs(count);
  const nodes = await c.addNodes(count, (i) => ({ stateDir: dirs[i] }));
  await c.settled(FORM_TIMEOUT_MS);
  return new Map(nodes.map((node, i) => [node, dirs[i] ?? ""]));
}

/** The ID held now by the process on each state directory. */
async function idsByStateDir(
  c: FaultCluster,
  dirs: ReadonlyMap<NodeProcess, string>,
): Promise<Map<string, number>> {
  const ids = await idsByName(c);
  return new Map(
    c.active().flatMap((n) => {
      const dir = dirs.get(n);
      const id = ids.get(n.name);
      return dir === undefined || id === undefined ? [] : [[dir, id] as const];
    }),
  );
}

/** Every process started on a directory in `restarted` holds the ID its directory held in `before`, and says it took it back. */
async function expectIdsKept(
  c: FaultCluster,
  dirs: ReadonlyMap<NodeProcess, string>,
  before: ReadonlyMap<string, number>,
  restarted: readonly NodeProcess[],
): Promise<void> {
  const after = await idsByStateDir(c, dirs);
  expect(after).toEqual(before);
  for (const node of restarted) {
    const id = before.get(dirs.get(node) ?? "");
    // etcd has the member key a moment before the process logs that it joined.
    const joined = await waitUntil(`${node.name} logged its join`, () => joins(node).at(-1), FORM_TIMEOUT_MS);
    expect(joined, `${node.name} on its own state directory`).toMatchObject({
      id,
      joinedVia: "reclaimed",
      previousId: id,
    });
  }
}

test("power cut with state directories: every node killed -9 at once and restarted at once on its own directory takes its own ID back", async () => {
  cluster = await FaultCluster.start("power-cut-state", { nodes: 0, config: FULL_CONFIG });
  const c = cluster;
  const dirs = await startOnStateDirs(c, CAPACITY);
  const formed: number[] = [];
  const boots: number[] = [];
  const { report } = await runScenario(
    c,
    `power cut, state directories (${FULL_CONFIG.groups} groupings x ${FULL_CONFIG.group_size} IDs, full)`,
    inject("faultRowsFile"),
    async () => {
      for (let run = 0; run < POWER_CUTS; run++) {
        await c.trial(async () => {
          const before = await idsByStateDir(c, dirs);
          expect(before.size).toBe(CAPACITY);
          const { formedMs, bootMs, restarted } = await powerCut(c, dirs);
          formed.push(formedMs);
          boots.push(bootMs);
          await expectUniqueIds(c);
          await expectIdsKept(c, dirs, before, restarted);
        }, FORM_TIMEOUT_MS);
      }
      return `every ID kept; formed ${spread(formed)}, the last process up ${spread(boots)}`;
    },
  );
  console.log(`power cut, state directories: formed ${spread(formed)}, the last process up ${spread(boots)}`);
  expect(report.violations).toEqual([]);
});

/** `count` of `nodes`, picked at random. */
function pick<T>(nodes: readonly T[], count: number): T[] {
  return [...nodes]
    .map((node) => ({ node, order: Math.random() }))
    .sort((a, b) => a.order - b.order)
    .slice(0, count)
    .map(({ node }) => node);
}

test.each([
  { variant: "fresh processes", withStateDirs: false },
  { variant: "state directories", withStateDirs: true },
])(
  "restart storm, $variant: half the nodes killed -9 and restarted at once, twice within one TTL",
  async ({ variant, withStateDirs }) => {
    const name = withStateDirs ? "storm-state" : "storm";
    cluster = await FaultCluster.start(name, { nodes: withStateDirs ? 0 : CAPACITY, config: FULL_CONFIG });
    const c = cluster;
    const dirs = withStateDirs ? await startOnStateDirs(c, CAPACITY) : undefined;
    const half = Math.floor(CAPACITY / 2);
    const formed: number[] = [];
    const gaps: number[] = [];
    const { report } = await runScenario(
      c,
      `restart storm, ${variant} (${half} of ${CAPACITY} killed and restarted, twice within a TTL)`,
      inject("faultRowsFile"),
      async () => {
        for (let storm = 0; storm < STORMS; storm++) {
          await c.trial(async () => {
            const before = dirs && (await idsByStateDir(c, dirs));
            const restarted: NodeProcess[] = [];
            let firstKillAt = 0;
            let restartedAt = 0;
            for (let round = 0; round < 2; round++) {
              // The second round picks among everyone running, the first round's newcomers included.
              const victims = pick(c.active(), half);
              const killedAt = Date.now();
              await kill9All(victims);
              if (round === 0) firstKillAt = killedAt;
              else gaps.push(killedAt - firstKillAt);
              restartedAt = Date.now();
              const started = await c.addNodes(victims.length, (i) => {
                const dir = dirs?.get(victims[i] as NodeProcess);
                return dir === undefined ? {} : { stateDir: dir };
              });
              started.forEach((node, i) => {
                const dir = dirs?.get(victims[i] as NodeProcess);
                if (dir !== undefined) dirs?.set(node, dir);
              });
              restarted.push(...started);
              if (round === 0) await sleep(TTL_MS / 2);
            }
            await c.settled(FORM_TIMEOUT_MS);
            formed.push(Date.now() - restartedAt);
            await expectUniqueIds(c);
            if (dirs && before)
              await expectIdsKept(
                c,
                dirs,
                before,
                restarted.filter((n) => n.running),
              );
          }, FORM_TIMEOUT_MS);
        }
        return `second round ${gaps.map((g) => `${g} ms`).join(", ")} after the first; formed ${spread(formed)} after the second`;
      },
    );
    console.log(`restart storm, ${variant}: rounds ${gaps.join(", ")} ms apart; formed ${spread(formed)}`);
    expect(report.violations).toEqual([]);
  },
);
