import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, expect, inject, test } from "vitest";
import { waitUntil } from "../support/waitUntil.js";
import { FaultCluster, runScenario, TTL_MS } from "./faultCluster.js";
import type { NodeProcess } from "./nodeProcess.js";

/** Long past the TTL: the paused node's lease has expired and etcd has deleted its member key. */
const PAUSE_MS = 3 * TTL_MS;

let cluster: FaultCluster | undefined;
const stateDirs: string[] = [];

afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
  await Promise.all(stateDirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

/** The ID of `node`'s member key in etcd now, if it has one. */
async function idOf(c: FaultCluster, node: NodeProcess): Promise<number | undefined> {
  const status = await c.status();
  return status.groups.flatMap((g) => g.members).find((m) => m.name === node.name)?.id;
}

/** The transition lines in which `node` became a member with an ID (each says how it got it). */
const joins = (node: NodeProcess) =>
  node.lines.filter((l) => l.message === "transition" && l.joinedVia !== undefined);

/** A follower of grouping 0: neither its primary nor its backup. */
async function follower(c: FaultCluster): Promise<NodeProcess> {
  const { primary, backup } = await c.settled();
  const node = c.active().find((n) => n !== primary && n !== backup);
  if (!node) throw new Error("four nodes, two seats: one is a follower");
  return node;
}

test("a node paused past its TTL comes back with the same ID, in the same group", async () => {
  cluster = await FaultCluster.start("sticky-pause");
  const c = cluster;
  await runScenario(c, "pause past TTL keeps the ID", inject("faultRowsFile"), async () => {
    const node = await follower(c);
    const id = await idOf(c, node);
    if (id === undefined) throw new Error(`${node.name} has no member key`);
    await c.trial(async () => {
      await c.impair("paused past its TTL", node, async () => {
        node.pause();
        await waitUntil(
          "its member key expired",
          async () => (await idOf(c, node)) === undefined,
          10 * TTL_MS,
        );
        await sleep(PAUSE_MS - TTL_MS);
        node.resume();
      });
    });
    expect(await idOf(c, node)).toBe(id);
    expect(joins(node).at(-1)).toMatchObject({ id, joinedVia: "reclaimed", previousId: id });
    expect(node.lines.some((l) => l.message === "took back the previous node ID" && l.id === id)).toBe(true);
    return `ID ${id} kept`;
  }).then(({ report }) => expect(report.violations).toEqual([]));
});

test("a slot taken while its node was paused is not claimed twice: the node joins with another ID and says so", async () => {
  cluster = await FaultCluster.start("sticky-taken", 3);
  const c = cluster;
  await runScenario(c, "taken slot never claimed twice", inject("faultRowsFile"), async () => {
    const node = await follower(c);
    const id = await idOf(c, node);
    if (id === undefined) throw new Error(`${node.name} has no member key`);
    let newcomer: NodeProcess | undefined;
    await c.trial(async () => {
      await c.impair("paused while its slot is taken", node, async () => {
        node.pause();
        await waitUntil(
          `slot ${id} advertised`,
          async () => (await c.status()).advertised.some((a) => a.id === id),
          10 * TTL_MS,
        );
        newcomer = await c.addNode();
        const taker = newcomer;
        await waitUntil(
          `the newcomer holds ID ${id}`,
          async () => (await idOf(c, taker)) === id,
          10 * TTL_MS,
        );
        node.resume();
      });
    });
    const now = await idOf(c, node);
    expect(now).toBeDefined();
    expect(now).not.toBe(id);
    expect(await idOf(c, newcomer as NodeProcess)).toBe(id);
    expect(joins(node).at(-1)).toMatchObject({ id: now, previousId: id });
    expect(joins(node).at(-1)?.joinedVia).not.toBe("reclaimed");
    expect(
      node.lines.find(
        (l) => l.message === "joined with a different node ID: the previous one was taken by another node",
      ),
    ).toMatchObject({ id: now, previousId: id, takenBy: newcomer?.name });
    return `ID ${id} went to ${newcomer?.name}; the paused node joined as ${now}`;
  }).then(({ report }) => expect(report.violations).toEqual([]));
});

test("a node killed with kill -9 and restarted on its state directory keeps its ID", async () => {
  cluster = await FaultCluster.start("sticky-restart", 3);
  const c = cluster;
  const stateDir = await mkdtemp(join(tmpdir(), "sticky-restart-"));
  stateDirs.push(stateDir);
  await runScenario(c, "restart with a state directory keeps the ID", inject("faultRowsFile"), async () => {
    const node = await c.addNode(undefined, { stateDir });
    const id = await waitUntil("the node a member", () => idOf(c, node), 10 * TTL_MS);
    let restarted: NodeProcess | undefined;
    await c.trial(async () => {
      await node.kill9();
      restarted = await c.addNode(undefined, { stateDir });
    });
    const again = restarted as NodeProcess;
    await waitUntil("the restarted node a member", () => joins(again).at(-1), 10 * TTL_MS);
    expect(await idOf(c, again)).toBe(id);
    expect(joins(again).at(-1)).toMatchObject({ id, joinedVia: "reclaimed", previousId: id });
    return `ID ${id} kept across kill -9 and restart`;
  }).then(({ report }) => expect(report.violations).toEqual([]));
});
