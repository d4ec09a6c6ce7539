import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { ClusterLayout } from "../../src/config/index.js";
import { reclaimId } from "../../src/etcd/idClaims.js";
import { ClusterStore, connectEtcd, type Etcd3 } from "../../src/etcd/index.js";
import { silentLogger } from "../../src/logging.js";
import type { ClusterNode } from "../../src/runtime/clusterNode.js";
import {
  type EtcdWithNodes,
  NodeFactory,
  ONE_GROUPING,
  startEtcdWithNodes,
  stopEtcdWithNodes,
} from "../support/clusterNodes.js";
import { startEtcd } from "../support/etcdCluster.js";
import { proxiedEtcdPerTest } from "../support/proxiedEtcd.js";
import { recordingLogger } from "../support/recordingLogger.js";
import { TcpProxy } from "../support/tcpProxy.js";
import { waitUntil } from "../support/waitUntil.js";

const LAYOUT = new ClusterLayout(ONE_GROUPING);
const KEYS = LAYOUT.keys;
const RECORD = { name: "returning", address: "127.0.0.1:1" };
const CALL_TIMEOUT_MS = 1_000;
const ID = 4;
const MEMBER = KEYS.memberKey(LAYOUT.nodeGroup(ID), ID);
const AD = KEYS.failoverKey(ID);

describe("reclaimId: a node takes back the ID it held", () => {
  const env = proxiedEtcdPerTest();
  const grantLease = async () => String(await env.direct.lease(60, { autoKeepAlive: false }).grant());
  const reclaim = (client: Etcd3, leaseId: string) =>
    reclaimId(client, LAYOUT, ID, RECORD, leaseId, CALL_TIMEOUT_MS);
  const membersUnder = async (leaseId: string) =>
    (await env.direct.getAll().prefix(KEYS.allMembersPrefix).exec()).kvs
      .filter((kv) => kv.lease === leaseId)
      .map((kv) => kv.key.toString());
  const advertise = () =>
    env.direct
      .put(AD)
      .value(JSON.stringify({ id: ID, group: LAYOUT.nodeGroup(ID), advertisedBy: 0, token: 7 }));

  test("a free slot is taken back under the new lease", async () => {
    const lease = await grantLease();
    expect(await reclaim(env.direct, lease)).toEqual({ kind: "reclaimed", id: ID, via: "free" });
    expect(await membersUnder(lease)).toEqual([MEMBER]);
  });

  test("an advertised slot is taken back by claiming the advertisement, which is consumed", async () => {
    await advertise();
    const lease = await grantLease();
    expect(await reclaim(env.direct, lease)).toEqual({ kind: "reclaimed", id: ID, via: "advertised" });
    expect(await membersUnder(lease)).toEqual([MEMBER]);
    expect(await env.direct.get(AD).string()).toBeNull();
  });

  test("a slot another lease holds is reported taken, with its holder, and left alone", async () => {
    const other = await grantLease();
    const holder = JSON.stringify({ id: ID, name: "newcomer", address: "127.0.0.1:2" });
    await env.direct.put(MEMBER).value(holder).lease(other);
    const lease = await grantLease();
    expect(await reclaim(env.direct, lease)).toEqual({ kind: "taken", id: ID, holder: "newcomer" });
    expect(await env.direct.get(MEMBER).string()).toBe(holder);
    expect(await membersUnder(lease)).toEqual([]);
  });

  test("racing reclaims and failover claims of one slot: exactly one wins each round", async () => {
    const store = new ClusterStore(env.direct, LAYOUT, silentLogger(), { callTimeoutMs: CALL_TIMEOUT_MS });
    await env.direct.put(KEYS.idKey).value(String(LAYOUT.capacity));
    for (let round = 0; round < 10; round++) {
      await env.direct.delete().key(MEMBER);
      if (round % 2 === 0) await advertise();
      const leases = await Promise.all([grantLease(), grantLease(), grantLease(), grantLease()]);
      const [a, b, c, d] = leases as [string, string, string, string];
      const results = await Promise.all([
        reclaim(env.direct, a),
        reclaim(env.direct, b),
        store.claimAdvertisedSlot({ ...RECORD, name: "claimer-c" }, c),
        store.claimAdvertisedSlot({ ...RECORD, name: "claimer-d" }, d),
      ]);
      const winners = [
        results[0]?.kind === "reclaimed",
        results[1]?.kind === "reclaimed",
        results[2] === ID,
        results[3] === ID,
      ].filter(Boolean);
      expect(winners).toHaveLength(1);
      const holders = (await env.direct.getAll().prefix(KEYS.allMembersPrefix).exec()).kvs;
      expect(holders.map((kv) => kv.key.toString())).toEqual([MEMBER]);
      expect(await env.direct.get(AD).string()).toBeNull();
    }
  });

  test("a lost reply of a reclaim that committed still reports it reclaimed, one member key", async () => {
    const lease = await grantLease();
    const client = env.track(connectEtcd([env.proxy.endpoint]));
    env.proxy.setMode("drop-reply", { match: MEMBER });
    expect(await reclaim(client, lease)).toEqual({ kind: "reclaimed", id: ID, via: "free" });
    expect(env.proxy.repliesDropped).toBe(1);
    expect(await membersUnder(lease)).toEqual([MEMBER]);
  });
});

describe("sticky identity of a running node", () => {
  let env: EtcdWithNodes;
  const logs = recordingLogger();
  beforeEach(async () => {
    logs.records.length = 0;
    env = await startEtcdWithNodes({ config: ONE_GROUPING, leaseTtlSeconds: 2, logger: logs.logger });
  });
  afterEach(async () => {
    await stopEtcdWithNodes(env);
  });

  /** Deletes the node's member key under its live lease, as a lease expiring in a pause would: it renews. */
  const loseMemberKey = async (name: string) => {
    const node = env.factory.nodes.find((n) => n.settings.nodeName === name);
    const before = node?.status;
    if (!node || before?.id === undefined || before.group === undefined) throw new Error(`${name} has no ID`);
    await env.client.delete().key(KEYS.memberKey(before.group, before.id));
    return { node, before };
  };
  const renewed = (node: ClusterNode, oldLease?: string) =>
    waitUntil(
      "the node back as a member under a new lease",
      () => {
        const s = node.status;
        return s.leaseId !== oldLease && s.id !== undefined && s.role !== "bootstrapping" ? s : undefined;
      },
      30_000,
    );

  test("a node that lost its member key comes back with the same ID, in the same group", async () => {
    const nodes = await env.factory.startMany(5);
    const withId = (id: number) => nodes.find((n) => n.status.id === id);
    const last = withId(4);
    if (!last) throw new Error("five nodes, IDs 0 to 4");
    // Free slots below it (0 and 1) that a returning node without a previous ID would fill first.
    await Promise.all([withId(0)?.stop(), withId(1)?.stop()]);
    const { node, before } = await loseMemberKey(last.settings.nodeName);
    const after = await renewed(node, before.leaseId);
    expect(after.id).toBe(4);
    expect(after.group).toBe(before.group);
    expect(after).toMatchObject({ previousId: 4, joinedVia: "reclaimed" });
    const members = (await env.client.getAll().prefix(KEYS.allMembersPrefix).exec()).kvs;
    expect(members.filter((kv) => kv.lease === after.leaseId).map((kv) => kv.key.toString())).toEqual([
      KEYS.memberKey(LAYOUT.nodeGroup(4), 4),
    ]);
  }, 90_000);

  test("a node whose ID was taken meanwhile joins with another and logs both IDs", async () => {
    const [node] = await env.factory.startMany(1);
    if (!node) throw new Error("one node");
    const { before } = await loseMemberKey(node.settings.nodeName);
    // The node must see its key gone first: a key re-created for ID 0 would look like its own.
    await waitUntil("the node dropping its session", () =>
      logs.records.some((r) => r.message.startsWith("own member key is gone")),
    );
    // Another node takes slot 0 before this one is back (it reconnects after at least 250 ms).
    const other = String(await env.client.lease(60, { autoKeepAlive: false }).grant());
    await env.client
      .put(KEYS.memberKey(0, 0))
      .value(JSON.stringify({ id: 0, name: "newcomer", address: "127.0.0.1:2" }))
      .lease(other);
    const after = await renewed(node, before.leaseId);
    expect(after.id).not.toBe(0);
    // Its status says so too: the ID it held before, and that it did not take it back.
    expect(after.previousId).toBe(0);
    expect(after.joinedVia).not.toBe("reclaimed");
    const warning = logs.records.find((r) => r.message.startsWith("joined with a different node ID"));
    expect(warning).toMatchObject({ id: after.id, previousId: 0, takenBy: "newcomer" });
    // Its reclaim's outcome was known: no late copy to fence off, so its lease was kept.
    expect(logs.records.some((r) => r.message.includes("revoking the lease"))).toBe(false);
  }, 90_000);

  test("its member key re-created for its ID under another lease is not taken for its own: it renews", async () => {
    const [node] = await env.factory.startMany(1);
    const before = node?.status;
    if (!node || before?.id !== 0) throw new Error("one node, ID 0");
    // One write, so no view can see the key absent in between: the ID is another lease's now.
    const other = String(await env.client.lease(60, { autoKeepAlive: false }).grant());
    await env.client
      .put(KEYS.memberKey(0, 0))
      .value(JSON.stringify({ id: 0, name: "newcomer", address: "127.0.0.1:2" }))
      .lease(other);
    const after = await renewed(node, before.leaseId);
    expect(after.id).not.toBe(0);
    expect(logs.records.some((r) => r.message.startsWith("own member key is held under another lease"))).toBe(
      true,
    );
  }, 90_000);
});

describe("sticky identity: a reclaim whose outcome is unknown", () => {
  test("a late copy of it, once the slot is taken and freed again, writes no second member key", async () => {
    const logs = recordingLogger();
    const etcd = await startEtcd();
    const client = etcd.client();
    const proxy = await TcpProxy.forEndpoint(etcd.endpoints[0] ?? "");
    const factory = new NodeFactory({
      endpoints: [proxy.endpoint],
      config: ONE_GROUPING,
      leaseTtlSeconds: 2,
      logger: logs.logger,
    });
    try {
      const [node] = await factory.startMany(1);
      if (node?.status.id !== 0) throw new Error("one node, ID 0");
      const member0 = KEYS.memberKey(0, 0);
      // The node renews its session and reclaims ID 0; that request is held on the wire, and the
      // node's next requests wait until the slot is taken by another lease.
      proxy.setMode("hold-request", { match: member0, afterwards: "stall-upstream" });
      await client.delete().key(member0);
      await waitUntil("the reclaim held on the wire", () => proxy.mode !== "hold-request", 30_000);
      const heldLease = node.status.leaseId;
      if (heldLease === undefined) throw new Error("the reclaim runs under a session");
      const otherLease = client.lease(60, { autoKeepAlive: false });
      const other = String(await otherLease.grant());
      await client
        .put(member0)
        .value(JSON.stringify({ id: 0, name: "newcomer", address: "127.0.0.1:2" }))
        .lease(other);
      proxy.setMode("pass");

      const { id: newId } = await waitUntil(
        "the node a member with another ID",
        () => {
          const { id, role } = node.status;
          return id !== undefined && id !== 0 && role !== "bootstrapping" ? { id } : undefined;
        },
        30_000,
      );
      // The slot is freed before any primary re-advertises it, and the late copy arrives.
      await otherLease.revoke();
      await proxy.releaseHeldRequest();

      const members = (await client.getAll().prefix(KEYS.allMembersPrefix).exec()).kvs;
      const under = (lease: string | undefined) =>
        members.filter((kv) => kv.lease === lease).map((kv) => kv.key.toString());
      expect(under(node.status.leaseId)).toEqual([KEYS.memberKey(LAYOUT.nodeGroup(newId), newId)]);
      expect(under(heldLease)).toEqual([]);
      expect(logs.records.some((r) => r.message.includes("revoking the lease"))).toBe(true);
    } finally {
      await factory.stopAll();
      await proxy.close();
      await etcd.stop();
    }
  }, 90_000);
});
