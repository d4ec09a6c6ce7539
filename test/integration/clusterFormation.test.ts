import { setTimeout as sleep } from "node:timers/promises";
import type { Etcd3 } from "etcd3";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import type { ClusterConfig } from "../../src/config/index.js";
import { silentLogger } from "../../src/logging.js";
import { type ClusterNode, createClusterNode } from "../../src/runtime/clusterNode.js";
import type { HistoryRecord } from "../../src/runtime/history.js";
import { crashNode } from "../../src/runtime/testing.js";
import { NodeFactory, SEED_CONFIG } from "../support/clusterNodes.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { leadershipSettled, leadersInEtcd, membersInEtcd } from "../support/invariants.js";
import { waitUntil } from "../support/waitUntil.js";

describe("cluster formation against a real etcd", () => {
  let etcd: EtcdCluster;
  let client: Etcd3;
  let factory: NodeFactory | undefined;
  let histories: Map<ClusterNode, HistoryRecord[]>;

  beforeEach(async () => {
    etcd = await startEtcd();
    client = etcd.client();
    histories = new Map();
  });

  afterEach(async () => {
    await factory?.stopAll();
    factory = undefined;
    await etcd.stop();
  });

  /** A node of `f` that records its history in `histories`. */
  function recorded(f: NodeFactory, name: string): ClusterNode {
    const records: HistoryRecord[] = [];
    const node = createClusterNode({
      cluster: f.layout,
      settings: f.settings(name),
      logger: silentLogger(),
      history: (record) => records.push(record),
    });
    f.nodes.push(node);
    histories.set(node, records);
    return node;
  }

  function newFactory(config?: ClusterConfig): NodeFactory {
    factory = new NodeFactory({ endpoints: etcd.endpoints, config });
    return factory;
  }

  /** Every member key in etcd: ID → the leases holding a member key for it. */
  async function memberLeases(f: NodeFactory): Promise<Map<number, string[]>> {
    const { kvs } = await client.getAll().prefix(f.layout.keys.allMembersPrefix).exec();
    const byId = new Map<number, string[]>();
    for (const kv of kvs) {
      const id = Number(kv.key.toString().split("/").pop());
      byId.set(id, [...(byId.get(id) ?? []), kv.lease]);
    }
    return byId;
  }

  /** Each of `nodes` holds exactly the member key of its ID, under its own lease, and no key is held twice. */
  async function expectOneMemberKeyPerNode(f: NodeFactory, nodes: ClusterNode[]): Promise<void> {
    const leases = await memberLeases(f);
    const expected = new Map(nodes.map((n) => [n.id ?? -1, [n.status.leaseId ?? ""]]));
    expect(leases).toEqual(expected);
  }

  /**
   * The node's history: connecting, then bootstrapping, then an identity record of its ID made under
   * the lease that holds its member key in etcd, then only member roles, the first one naming that ID.
   */
  function expectBootstrapped(node: ClusterNode): void {
    const history = histories.get(node) ?? [];
    const transitions = history.filter((r) => r.kind === "transition");
    const roles = transitions.map((r) => r.role).filter((role, i, all) => role !== all[i - 1]);
    expect(roles.slice(0, 2), `${node.settings.nodeName}: roles`).toEqual(["connecting", "bootstrapping"]);
    expect(roles.slice(2).every((role) => role !== "connecting" && role !== "bootstrapping")).toBe(true);
    const identityAt = history.findIndex((r) => r.kind === "identity");
    const identity = history[identityAt];
    expect(identity, `${node.settings.nodeName}: identity`).toMatchObject({
      kind: "identity",
      id: node.id,
      lease: node.status.leaseId,
    });
    const bootstrappingAt = history.flatMap((r, i) =>
      r.kind === "transition" && r.role === "bootstrapping" ? [i] : [],
    );
    expect(Math.max(...bootstrappingAt)).toBeLessThan(identityAt);
    expect(history[identityAt + 1]).toMatchObject({ kind: "transition", id: node.id, from: "bootstrapping" });
  }

  test("the seed config with 30 nodes: one primary and one backup per grouping, full groups, IDs 0..29", async () => {
    const f = newFactory();
    const nodes = Array.from({ length: 30 }, (_, i) => recorded(f, `node-${i}`));
    await Promise.all(nodes.map((n) => n.start()));
    await waitUntil("every grouping to have a primary and a backup", () =>
      leadershipSettled(client, f.layout, nodes),
    );

    expect(nodes.map((n) => n.id).sort((a, b) => (a ?? 0) - (b ?? 0))).toEqual(
      Array.from({ length: 30 }, (_, i) => i),
    );
    const leaders = await leadersInEtcd(client, f.layout);
    expect(leaders).toHaveLength(4);
    for (const { grouping, primary, backup } of leaders) {
      expect(primary, `grouping ${grouping} primary`).toBeDefined();
      expect(backup, `grouping ${grouping} backup`).toBeDefined();
      expect(primary).not.toBe(backup);
      expect(f.layout.groupingOfNode(primary ?? -1)).toBe(grouping);
      expect(f.layout.groupingOfNode(backup ?? -1)).toBe(grouping);
    }
    const members = await membersInEtcd(client, f.layout);
    for (const [group, ids] of members) expect(ids, `group ${group}`).toEqual(f.layout.slotsOf(group));
    for (const node of nodes) expect(node.status.group).toBe(f.layout.nodeGroup(node.id ?? -1));
    await expectOneMemberKeyPerNode(f, nodes);
    for (const node of nodes) expectBootstrapped(node);
  });

  test("id_key moved back by hand onto taken slots: a new node takes none of them", async () => {
    const f = newFactory({ ...SEED_CONFIG, groups: 2 });
    const nodes = Array.from({ length: 3 }, (_, i) => recorded(f, `node-${i}`));
    for (const node of nodes) await node.start();
    await client.put("id_key").value("1");
    const late = recorded(f, "late");
    const status = await late.start();
    // The hand-made put used up ticket 3 (the key's version is the high-water mark): a gap.
    expect(status.id).toBe(4);
    await expectOneMemberKeyPerNode(f, [...nodes, late]);
    for (const node of [...nodes, late]) expectBootstrapped(node);
  });

  test("50 nodes bootstrapping at once get 50 distinct IDs", async () => {
    factory = new NodeFactory({ endpoints: etcd.endpoints, config: { ...SEED_CONFIG, groups: 20 } });
    const nodes = await factory.startMany(50);
    const ids = nodes.map((n) => n.id);
    expect(new Set(ids).size).toBe(50);
    expect([...ids].sort((a, b) => (a ?? 0) - (b ?? 0))).toEqual(Array.from({ length: 50 }, (_, i) => i));
    // One ticket each: id_key's version is the high-water mark (its value only a lower bound when they race).
    expect(Number((await client.get("id_key").exec()).kvs[0]?.version)).toBe(50);
  });

  test("a node started when every slot is taken waits, then takes a slot that fails", async () => {
    const f = newFactory({ ...SEED_CONFIG, groups: 1, reads: 1 });
    const nodes = Array.from({ length: 3 }, (_, i) => recorded(f, `node-${i}`));
    await Promise.all(nodes.map((n) => n.start()));
    await waitUntil("a primary and a backup", () => leadershipSettled(client, f.layout, nodes));
    const late = recorded(f, "late");
    const joined = late.start();
    await waitUntil("the late node to have a lease", () => late.status.leaseId);
    // Generous time for its allocation to find the cluster full; it must still hold no slot.
    await sleep(1_000);
    expect(late.role).toBe("bootstrapping");
    expect(late.id).toBeUndefined();
    // A full cluster costs the late node no ticket.
    expect(Number((await client.get("id_key").exec()).kvs[0]?.version)).toBe(3);
    await expectOneMemberKeyPerNode(f, nodes);

    const follower = nodes.find((n) => n.role === "follower");
    expect(follower).toBeDefined();
    const lostId = follower?.id;
    crashNode(follower);
    const status = await joined;
    expect(status.id).toBe(lostId);
    expectBootstrapped(late);
    await expectOneMemberKeyPerNode(f, nodes.filter((n) => n !== follower).concat(late));
  });
});
