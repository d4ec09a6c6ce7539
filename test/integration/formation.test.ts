import { afterAll, beforeAll, expect, test } from "vitest";
import type { ClusterConfig } from "../../src/config/index.js";
import { freeSlots, searchWindow } from "../../src/etcd/idClaims.js";
import type { ClusterNode } from "../../src/runtime/clusterNode.js";
import {
  type EtcdWithNodes,
  SEED_CONFIG,
  startEtcdWithNodes,
  stopEtcdWithNodes,
} from "../support/clusterNodes.js";
import { waitUntil } from "../support/waitUntil.js";

const NODES = 200;
/** As many IDs as nodes: the last starters must find the last free slots. */
const CONFIG: ClusterConfig = { ...SEED_CONFIG, groups: Math.ceil(NODES / 3) - 1, group_size: 3, reads: 3 };

let env: EtcdWithNodes;
beforeAll(async () => {
  env = await startEtcdWithNodes({ config: CONFIG, leaseTtlSeconds: 5 });
});
afterAll(async () => {
  await stopEtcdWithNodes(env);
});

/**
 * Safety only: whether every node also keeps its first lease (no renewal) depends on how loaded
 * the machine is, and is measured by `npm run bench:scale` (lease grants per node).
 */
test("nodes started at once get unique IDs, one member key each under its node's lease; the rest wait", async () => {
  const capacity = env.factory.layout.capacity;
  const nodes: ClusterNode[] = Array.from({ length: NODES }, () => env.factory.create());
  // No two nodes ever report the same ID at the same time.
  const holders = new Map<number, ClusterNode>();
  let shared = 0;
  const subscriptions = nodes.map((node) => {
    let held: number | undefined;
    return node.status$.subscribe((s) => {
      if (held !== undefined && held !== s.id && holders.get(held) === node) holders.delete(held);
      held = s.id;
      if (s.id === undefined) return;
      const other = holders.get(s.id);
      if (other && other !== node && other.id === s.id) shared += 1;
      holders.set(s.id, node);
    });
  });
  for (const node of nodes) void node.start().catch(() => undefined);
  await waitUntil(
    `${capacity} of ${NODES} nodes with an ID`,
    () => nodes.filter((n) => n.id !== undefined).length === capacity,
    180_000,
    100,
  );
  // Give any double claim time to show up in etcd.
  await new Promise((r) => setTimeout(r, 1_000));
  for (const s of subscriptions) s.unsubscribe();
  const ids = nodes.flatMap((n) => (n.id === undefined ? [] : [n.id]));
  expect(new Set(ids).size).toBe(capacity);
  expect(ids.every((id) => id >= 0 && id < capacity)).toBe(true);
  expect(shared).toBe(0);
  const members = (await env.client.getAll().prefix(env.factory.layout.keys.allMembersPrefix).exec()).kvs;
  expect(members).toHaveLength(capacity);
  const leaseOf = new Map(nodes.map((n) => [n.id, n.status.leaseId]));
  for (const kv of members) {
    const id = Number(kv.key.toString().split("/").pop());
    expect(kv.lease).toBe(leaseOf.get(id));
  }
  const counter = Number(await env.client.get(env.factory.layout.keys.idKey).string());
  expect(counter).toBe(capacity);
}, 300_000);

test("a crowd's choice of slots ends at a grouping boundary, and a lone first claim takes the lowest free slot", () => {
  const layout = env.factory.layout;
  const span = layout.config.group_size * layout.config.reads;
  expect(searchWindow(layout, 0, 0, 0)).toBe(1);
  const window = searchWindow(layout, 1, 1, 1);
  expect(window).toBe(span);
  // Slot 0 taken: the lowest nine free slots reach slot 9, in the next grouping; the choice stops at 8.
  expect(freeSlots(layout.capacity, new Set([0]), window, span)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
});
