import { setTimeout as sleep } from "node:timers/promises";
import { ClientClosedError, Etcd3, EtcdLeaseInvalidError } from "etcd3";
import { describe, expect, test } from "vitest";
import { scrape, total } from "../../bench/scale/etcdMetrics.js";
import { ClusterLayout } from "../../src/config/index.js";
import {
  ClaimAbandonedError,
  ClusterStore,
  connectEtcd,
  FenceLostError,
  type FencingToken,
  OutcomeUnknownError,
  readIdHighWaterMark,
  WriteNotCommittedError,
  WriteOutcomeUnknownError,
} from "../../src/etcd/index.js";
import { type Logger, silentLogger } from "../../src/logging.js";
import { ONE_GROUPING, SEED_CONFIG } from "../support/clusterNodes.js";
import { proxiedEtcdPerTest } from "../support/proxiedEtcd.js";
import { recordingLogger } from "../support/recordingLogger.js";
import { waitUntil } from "../support/waitUntil.js";

/**
 * ClusterStore's compares, guards and error paths, one rule a test, each against a real etcd: the
 * killers of the mutants `MUTATION_TESTS=store` found surviving (docs/mutation.md).
 */
/** Ten groups of three in four groupings: 30 slots, so that ads of slots 2 and 10 sort apart. */
const LAYOUT = new ClusterLayout(SEED_CONFIG);
const KEYS = LAYOUT.keys;
/** Nine slots, one grouping: small enough to fill. */
const SMALL = new ClusterLayout(ONE_GROUPING);
const RECORD = { name: "mutant-killer", address: "127.0.0.1:1" };
const CALL_TIMEOUT_MS = 1_000;

class Succeeded {
  constructor(readonly value: unknown) {}
}

describe("ClusterStore's options", () => {
  test("a call deadline that is not positive is refused, naming callTimeoutMs; without one the default holds", () => {
    const client = new Etcd3({ hosts: "127.0.0.1:1" });
    try {
      for (const callTimeoutMs of [0, -1, Number.NaN])
        expect(() => new ClusterStore(client, LAYOUT, silentLogger(), { callTimeoutMs })).toThrow(
          new RangeError(`callTimeoutMs must be positive, got ${callTimeoutMs}`),
        );
      expect(() => new ClusterStore(client, LAYOUT, silentLogger(), { callTimeoutMs: 1 })).not.toThrow();
      expect(() => new ClusterStore(client, LAYOUT, silentLogger())).not.toThrow();
    } finally {
      client.close();
    }
  });
});

describe("ClusterStore against etcd: what each compare, guard and error path decides", () => {
  const env = proxiedEtcdPerTest();
  const storeOver = (client: Etcd3, logger: Logger = silentLogger(), layout = LAYOUT) =>
    new ClusterStore(client, layout, logger, { callTimeoutMs: CALL_TIMEOUT_MS });
  /** The runtime's client, through the proxy. */
  const store = (logger?: Logger, layout?: ClusterLayout) =>
    storeOver(env.track(connectEtcd([env.proxy.endpoint])), logger, layout);
  const direct = (layout = LAYOUT) => storeOver(env.direct, silentLogger(), layout);
  const grantLease = async () => String(await env.direct.lease(60, { autoKeepAlive: false }).grant());
  const kvOf = async (key: string) => (await env.direct.get(key).exec()).kvs[0];
  const keysUnder = async (prefix: string) =>
    (await env.direct.getAll().prefix(prefix).exec()).kvs.map((kv) => ({
      key: kv.key.toString(),
      lease: kv.lease,
    }));
  const putMember = (id: number, leaseId: string, layout = LAYOUT) =>
    env.direct
      .put(layout.keys.memberKey(layout.nodeGroup(id), id))
      .value(JSON.stringify({ ...RECORD, id }))
      .lease(leaseId)
      .exec();
  /** Puts a leader key under `leaseId` directly (a new key, so a new token); its fence. */
  const holdLeaderKey = async (grouping: number, seat: 1 | 2, leaseId: string): Promise<FencingToken> => {
    await env.direct.delete().key(KEYS.leaderKey(grouping, seat));
    const res = await env.direct
      .put(KEYS.leaderKey(grouping, seat))
      .value(JSON.stringify({ ...RECORD, id: 0 }))
      .lease(leaseId)
      .exec();
    return { grouping, seat, token: Number(res.header.revision) };
  };
  const putAd = (
    id: number,
    value: unknown = { id, group: LAYOUT.nodeGroup(id), advertisedBy: 0, token: 7 },
  ) =>
    env.direct
      .put(KEYS.failoverKey(id))
      .value(typeof value === "string" ? value : JSON.stringify(value))
      .exec();
  /** The link comes back: the dark connection is cut, so the client dials a new one. */
  const linkBack = () => {
    env.proxy.setMode("reset");
    env.proxy.setMode("pass");
  };
  /** How `call` failed; a `Succeeded` when it did not. */
  const failureOf = (call: Promise<unknown>) =>
    call.then(
      (value) => new Succeeded(value),
      (err: unknown) => err,
    );
  const txnsHandled = async () =>
    total(await scrape(env.etcd.endpoints[0] ?? ""), "grpc_server_handled_total", { grpc_method: "Txn" });
  const record = { ...RECORD, id: 0 };
  const write = (key: string) => (c: Etcd3) => [c.put(key).value("v")];

  describe("id_key", () => {
    test("readIdHighWaterMark: absent, a count, and a value that is not one, each at the revision read", async () => {
      const absent = await readIdHighWaterMark(env.direct, LAYOUT, CALL_TIMEOUT_MS);
      expect(absent).toEqual({ revision: absent.revision, allocated: 0 });
      expect(absent).not.toHaveProperty("problem");
      expect(absent.value).toBeUndefined();
      const put = await env.direct.put(KEYS.idKey).value("5").exec();
      expect(await readIdHighWaterMark(env.direct, LAYOUT, CALL_TIMEOUT_MS)).toEqual({
        revision: Number(put.header.revision),
        value: "5",
        allocated: 5,
      });
      await env.direct.put(KEYS.idKey).value("garbage").exec();
      const bad = await readIdHighWaterMark(env.direct, LAYOUT, CALL_TIMEOUT_MS);
      expect(bad).toMatchObject({ value: "garbage", allocated: 2 });
      expect(typeof bad.problem).toBe("string");
    });

    test("a bad counter is read as its version, with one warning naming the key and the value's first 64 characters; a good one warns nothing", async () => {
      const { logger, records } = recordingLogger();
      await env.direct.put(KEYS.idKey).value("3").exec();
      expect(await store(logger).allocatedCount()).toBe(3);
      expect(records).toEqual([]);
      await env.direct
        .put(KEYS.idKey)
        .value(`${"x".repeat(64)}TAIL`)
        .exec();
      expect(await store(logger).allocatedCount()).toBe(2);
      expect(records.map(({ level, message, key, value }) => ({ level, message, key, value }))).toEqual([
        { level: "warn", message: "ignoring bad node ID counter", key: KEYS.idKey, value: "x".repeat(64) },
      ]);
    });

    test("each ticket writes the count so far to id_key, so that a reader of the value alone sees it", async () => {
      const ids = store();
      for (let i = 0; i < 3; i++)
        expect(await ids.allocateFreshId(RECORD, await grantLease())).toEqual({ kind: "allocated", id: i });
      const idKey = await kvOf(KEYS.idKey);
      expect(idKey?.value.toString()).toBe("3");
      expect(Number(idKey?.version)).toBe(3);
    });
  });

  describe("allocateFreshId", () => {
    test("an allocation its session no longer wants stops before taking a ticket", async () => {
      await expect(store().allocateFreshId(RECORD, await grantLease(), () => false)).rejects.toThrow(
        new Error("fresh-ID allocation abandoned: its session is over"),
      );
      expect(await kvOf(KEYS.idKey)).toBeUndefined();
    });

    test("a full cluster nobody leads: the lowest free slot is claimed in one transaction, with one warning, and id_key is left alone", async () => {
      const others = await grantLease();
      for (let id = 0; id < SMALL.capacity; id++)
        if (id !== 4 && id !== 6) await putMember(id, others, SMALL);
      // Under the members prefix but not a member key of this layout: not counted, not a slot.
      await env.direct.put(SMALL.keys.memberKey(0, 99)).value("{}").lease(others).exec();
      await env.direct.put(SMALL.keys.idKey).value(String(SMALL.capacity)).exec();
      const idKeyBefore = await kvOf(SMALL.keys.idKey);
      const { logger, records } = recordingLogger();
      const lease = await grantLease();
      const txnsBefore = await txnsHandled();
      expect(await store(logger, SMALL).allocateFreshId(RECORD, lease)).toEqual({ kind: "allocated", id: 4 });
      expect(await txnsHandled()).toBe(txnsBefore + 1);
      expect((await keysUnder(SMALL.keys.allMembersPrefix)).filter((m) => m.lease === lease)).toEqual([
        { key: SMALL.keys.memberKey(1, 4), lease },
      ]);
      expect(records).toEqual([
        {
          level: "warn",
          message: "cluster is full and nobody leads it; claiming a free slot directly",
          members: SMALL.capacity - 2,
        },
      ]);
      expect((await kvOf(SMALL.keys.idKey))?.mod_revision).toBe(idKeyBefore?.mod_revision);
    });

    test("a full cluster nobody leads: a free slot another node claims between the read of the member keys and the claim costs only that claim; the next free one is taken", async () => {
      const others = await grantLease();
      for (let id = 0; id < SMALL.capacity; id++)
        if (id !== 4 && id !== 6) await putMember(id, others, SMALL);
      await env.direct.put(SMALL.keys.idKey).value(String(SMALL.capacity)).exec();
      const { logger, records } = recordingLogger();
      const slow = new ClusterStore(env.track(connectEtcd([env.proxy.endpoint])), SMALL, logger, {
        callTimeoutMs: 20_000,
      });
      // Every chunk a second late each way: the claim sent after the warning reaches etcd a second later.
      env.proxy.setMode("delay", { delayMs: 1_000 });
      const allocation = slow.allocateFreshId(RECORD, await grantLease());
      await waitUntil("the member keys read", () => records.length > 0, 60_000, 5);
      await putMember(4, others, SMALL);
      expect(await allocation).toEqual({ kind: "allocated", id: 6 });
      env.proxy.setMode("pass");
    }, 120_000);

    test("a full cluster whose only leader key has no lease (poisoned) is led by nobody; one leased leader key among them leads it", async () => {
      const others = await grantLease();
      for (let id = 0; id < SMALL.capacity; id++) if (id !== 4) await putMember(id, others, SMALL);
      await env.direct.put(SMALL.keys.idKey).value(String(SMALL.capacity)).exec();
      await env.direct.put(SMALL.keys.leaderKey(0, 1)).value("{}").exec();
      await env.direct.put(SMALL.keys.leaderKey(0, 2)).value("{}").lease(others).exec();
      expect(await store(silentLogger(), SMALL).allocateFreshId(RECORD, await grantLease())).toEqual({
        kind: "full",
      });
      await env.direct.delete().key(SMALL.keys.leaderKey(0, 2)).exec();
      expect(await store(silentLogger(), SMALL).allocateFreshId(RECORD, await grantLease())).toEqual({
        kind: "allocated",
        id: 4,
      });
    });

    test("a full cluster nobody leads with every slot held is full: nothing registered beyond its slots", async () => {
      const others = await grantLease();
      for (let id = 0; id < SMALL.capacity; id++) await putMember(id, others, SMALL);
      await env.direct.put(SMALL.keys.idKey).value(String(SMALL.capacity)).exec();
      const lease = await grantLease();
      expect(await store(silentLogger(), SMALL).allocateFreshId(RECORD, lease)).toEqual({ kind: "full" });
      expect((await keysUnder(SMALL.keys.allMembersPrefix)).filter((m) => m.lease === lease)).toEqual([]);
    });

    test("a claim whose slot was taken while its outcome was unknown: the lease is revoked, one warning, and the error names ID and lease", async () => {
      const { logger, records } = recordingLogger();
      const lease = await grantLease();
      const ids = store(logger);
      const firstMember = KEYS.memberKey(0, 0);
      env.proxy.setMode("hold-request", { match: firstMember, afterwards: "blackhole" });
      await expect(ids.allocateFreshId(RECORD, lease)).rejects.toBeInstanceOf(OutcomeUnknownError);
      linkBack();
      await putMember(0, await grantLease());
      const err = await failureOf(ids.allocateFreshId(RECORD, lease));
      expect(err).toBeInstanceOf(ClaimAbandonedError);
      expect(err).toMatchObject({ name: "ClaimAbandonedError", id: 0, leaseId: lease });
      expect((err as Error).message).toBe(
        `lease ${lease} revoked: a claim of node ID 0 under it had an unknown outcome and the slot is now another node's`,
      );
      expect(records.map((r) => ({ level: r.level, message: r.message, id: r.id, lease: r.lease }))).toEqual([
        {
          level: "warn",
          message:
            "a claim whose reply was lost found its slot taken; revoking the lease so that it cannot land late",
          id: 0,
          lease,
        },
      ]);
      await env.proxy.releaseHeldRequest();
    });
  });

  describe("an outcome etcd cannot tell names its operation", () => {
    /** `call`'s request matching `match` gets no reply and the link goes dark: OutcomeUnknownError named `operation`. */
    const unknownOutcome = async (match: string, operation: string, call: () => Promise<unknown>) => {
      env.proxy.setMode("drop-reply", { match, afterwards: "blackhole" });
      const err = await failureOf(call());
      expect(err).toBeInstanceOf(OutcomeUnknownError);
      expect((err as OutcomeUnknownError).operation).toBe(operation);
      linkBack();
    };

    test("claims of a ticket and of an advertised slot", async () => {
      await unknownOutcome(KEYS.memberKey(0, 0), "claim of ticket 0", async () =>
        store().allocateFreshId(RECORD, await grantLease()),
      );
      await env.direct.put(KEYS.idKey).value("3").exec();
      await putAd(1);
      await unknownOutcome(KEYS.memberKey(0, 1), "claim of failed slot 1", async () =>
        store().claimAdvertisedSlot(RECORD, await grantLease()),
      );
    });

    test("campaign and promotion", async () => {
      const lease = await grantLease();
      await unknownOutcome(KEYS.leaderKey(1, 1), `campaign for ${KEYS.leaderKey(1, 1)}`, () =>
        store().campaign(1, 1, record, lease),
      );
      const backup = await holdLeaderKey(0, 2, lease);
      await unknownOutcome(KEYS.leaderKey(0, 1), `promotion to ${KEYS.leaderKey(0, 1)}`, () =>
        store().promote(backup, record, lease),
      );
    });

    test("a stopping primary's resignation", async () => {
      const lease = await grantLease();
      const fence = await holdLeaderKey(0, 1, lease);
      await unknownOutcome(KEYS.leaderKey(0, 1), `resignation from ${KEYS.leaderKey(0, 1)}`, () =>
        store().handoff(fence, lease, undefined),
      );
    });

    test("resignation, deregistration and advertisement", async () => {
      const lease = await grantLease();
      const fence = await holdLeaderKey(0, 1, lease);
      await unknownOutcome(KEYS.failoverKey(2), "advertisement of slot 2", () =>
        store().advertiseFailedSlot(fence, lease, 2, 0),
      );
      await unknownOutcome(KEYS.leaderKey(0, 1), `resignation from ${KEYS.leaderKey(0, 1)}`, () =>
        store().resign(fence, lease),
      );
      await putMember(5, lease);
      await unknownOutcome(KEYS.memberKey(1, 5), `deregistration of ${KEYS.memberKey(1, 5)}`, () =>
        store().deregister(5, lease),
      );
    });
  });

  describe("requests that certainly did not apply are reported as they are", () => {
    test("on a closed client every write fails with ClientClosedError, not an unknown outcome", async () => {
      const lease = await grantLease();
      const fence = await holdLeaderKey(0, 1, lease);
      await putMember(5, lease);
      const closed = env.track(connectEtcd([env.proxy.endpoint]));
      const ids = storeOver(closed);
      closed.close();
      for (const call of [
        () => ids.resign(fence, lease),
        () => ids.deregister(5, lease),
        () => ids.advertiseFailedSlot(fence, lease, 2, 0),
        () => ids.campaign(1, 1, record, lease),
        () => ids.handoff(fence, lease, undefined),
        () => ids.handoff(fence, lease, { token: fence.token, lease, value: "{}" }),
      ])
        expect(await failureOf(call())).toBeInstanceOf(ClientClosedError);
      expect(await kvOf(KEYS.leaderKey(0, 1))).toBeDefined();
      expect(await kvOf(KEYS.memberKey(1, 5))).toBeDefined();
    });

    test("under a lease that is gone, claims, campaigns and promotions fail with EtcdLeaseInvalidError and change nothing", async () => {
      const lease = await grantLease();
      const backup = await holdLeaderKey(0, 2, await grantLease());
      await env.direct.leaseClient.leaseRevoke({ ID: lease });
      await env.direct.put(KEYS.idKey).value("3").exec();
      await putAd(1);
      const adBefore = await kvOf(KEYS.failoverKey(1));
      const ids = store();
      await expect(ids.claimAdvertisedSlot(RECORD, lease)).rejects.toBeInstanceOf(EtcdLeaseInvalidError);
      await expect(ids.campaign(1, 1, record, lease)).rejects.toBeInstanceOf(EtcdLeaseInvalidError);
      await expect(ids.promote(backup, record, lease)).rejects.toBeInstanceOf(EtcdLeaseInvalidError);
      expect((await kvOf(KEYS.failoverKey(1)))?.mod_revision).toBe(adBefore?.mod_revision);
      expect(await keysUnder(KEYS.allMembersPrefix)).toEqual([]);
      expect(await kvOf(KEYS.leaderKey(1, 1))).toBeUndefined();
      expect(await kvOf(KEYS.leaderKey(0, 1))).toBeUndefined();
    });
  });

  describe("claimAdvertisedSlot", () => {
    test("advertisements are tried in ID order, not key order", async () => {
      await env.direct.put(KEYS.idKey).value("20").exec();
      await putAd(10);
      await putAd(2);
      const lease = await grantLease();
      expect(await store().claimAdvertisedSlot(RECORD, lease)).toBe(2);
      expect(await kvOf(KEYS.failoverKey(10))).toBeDefined();
    });

    test("an advertised slot that has a member is not claimed: the next one is", async () => {
      await env.direct.put(KEYS.idKey).value("20").exec();
      await putMember(2, await grantLease());
      await putAd(2);
      await putAd(10);
      const lease = await grantLease();
      expect(await store().claimAdvertisedSlot(RECORD, lease)).toBe(10);
      expect(await kvOf(KEYS.failoverKey(2))).toBeDefined();
      expect((await keysUnder(KEYS.allMembersPrefix)).filter((m) => m.lease === lease)).toEqual([
        { key: KEYS.memberKey(3, 10), lease },
      ]);
    });

    test("advertisements of slots never handed out are ignored, each with a warning naming its key", async () => {
      await env.direct.put(KEYS.idKey).value("3").exec();
      await putAd(3);
      await env.direct.put(`${KEYS.failoverPrefix}not-a-slot`).value("{}").exec();
      const { logger, records } = recordingLogger();
      const lease = await grantLease();
      expect(await store(logger).claimAdvertisedSlot(RECORD, lease)).toBeUndefined();
      expect(records).toEqual([
        {
          level: "warn",
          message: "ignoring failover advertisement for a slot never handed out",
          key: KEYS.failoverKey(3),
        },
        {
          level: "warn",
          message: "ignoring failover advertisement for a slot never handed out",
          key: `${KEYS.failoverPrefix}not-a-slot`,
        },
      ]);
      expect(await kvOf(KEYS.failoverKey(3))).toBeDefined();
      expect(await keysUnder(KEYS.allMembersPrefix)).toEqual([]);
    });

    test("an advertisement with a bad value is claimed by its key, with a warning naming key and problem; a good one warns nothing", async () => {
      await env.direct.put(KEYS.idKey).value("3").exec();
      await putAd(1);
      const { logger, records } = recordingLogger();
      expect(await store(logger).claimAdvertisedSlot(RECORD, await grantLease())).toBe(1);
      expect(records).toEqual([]);
      await putAd(2, "not json");
      expect(await store(logger).claimAdvertisedSlot(RECORD, await grantLease())).toBe(2);
      expect(records).toHaveLength(1);
      expect(records[0]).toMatchObject({
        level: "warn",
        message: "failover advertisement has a bad value; claiming by key",
        key: KEYS.failoverKey(2),
      });
      expect(typeof records[0]?.problem === "string" && records[0].problem !== "").toBe(true);
    });

    test("a claim that never reached etcd is settled by one rewrite of the advertisement: not claimed, and its late copy fails", async () => {
      await env.direct.put(KEYS.idKey).value("3").exec();
      await putAd(1);
      const lease = await grantLease();
      env.proxy.setMode("hold-request", { match: KEYS.memberKey(0, 1) });
      const txnsBefore = await txnsHandled();
      expect(await store().claimAdvertisedSlot(RECORD, lease)).toBeUndefined();
      expect(await txnsHandled()).toBe(txnsBefore + 1);
      await env.proxy.releaseHeldRequest();
      expect(await keysUnder(KEYS.allMembersPrefix)).toEqual([]);
      expect(await kvOf(KEYS.failoverKey(1))).toBeDefined();
    });

    test("a claim of unknown outcome whose slot another node claimed meanwhile is settled as not made", async () => {
      await env.direct.put(KEYS.idKey).value("3").exec();
      await putAd(1);
      const lease = await grantLease();
      const ids = store();
      env.proxy.setMode("hold-request", { match: KEYS.memberKey(0, 1), afterwards: "blackhole" });
      await expect(ids.claimAdvertisedSlot(RECORD, lease)).rejects.toBeInstanceOf(OutcomeUnknownError);
      linkBack();
      const other = await grantLease();
      expect(await direct().claimAdvertisedSlot(RECORD, other)).toBe(1);
      expect(await ids.claimAdvertisedSlot(RECORD, lease)).toBeUndefined();
      await env.proxy.releaseHeldRequest();
      expect(await keysUnder(KEYS.allMembersPrefix)).toEqual([{ key: KEYS.memberKey(0, 1), lease: other }]);
    });
  });

  describe("campaign and promote", () => {
    test("a node never holds both seats of a grouping: with one seat, its campaign for the other is lost", async () => {
      const [mine, theirs] = [await grantLease(), await grantLease()];
      await holdLeaderKey(0, 1, mine);
      expect(await store().campaign(0, 2, record, mine)).toEqual({ kind: "lost" });
      await holdLeaderKey(1, 2, mine);
      expect(await store().campaign(1, 1, record, mine)).toEqual({ kind: "lost" });
      expect(await kvOf(KEYS.leaderKey(0, 2))).toBeUndefined();
      expect(await kvOf(KEYS.leaderKey(1, 1))).toBeUndefined();
      const won = await store().campaign(0, 2, record, theirs);
      expect(won).toEqual({
        kind: "won",
        token: Number((await kvOf(KEYS.leaderKey(0, 2)))?.create_revision),
      });
    });

    test("a backup is promoted: the primary key under its lease, its token the key's create revision, the backup key gone", async () => {
      const lease = await grantLease();
      const backup = await holdLeaderKey(0, 2, lease);
      const result = await store().promote(backup, record, lease);
      const primary = await kvOf(KEYS.leaderKey(0, 1));
      expect(primary?.lease).toBe(lease);
      expect(result).toEqual({ kind: "won", token: Number(primary?.create_revision) });
      expect(await kvOf(KEYS.leaderKey(0, 2))).toBeUndefined();
    });

    test("a promotion with a stale backup token, or with a primary in place, is lost and changes nothing", async () => {
      const lease = await grantLease();
      const stale = await holdLeaderKey(0, 2, lease);
      const backup = await holdLeaderKey(0, 2, lease);
      expect(await store().promote(stale, record, lease)).toEqual({ kind: "lost" });
      expect(await kvOf(KEYS.leaderKey(0, 1))).toBeUndefined();
      await holdLeaderKey(0, 1, await grantLease());
      expect(await store().promote(backup, record, lease)).toEqual({ kind: "lost" });
      expect(Number((await kvOf(KEYS.leaderKey(0, 2)))?.create_revision)).toBe(backup.token);
    });
  });

  describe("resign and deregister", () => {
    test("a key held under another lease is neither resigned nor deregistered", async () => {
      const [mine, theirs] = [await grantLease(), await grantLease()];
      const fence = await holdLeaderKey(0, 1, theirs);
      await putMember(5, theirs);
      expect(await store().resign(fence, mine)).toBe(false);
      expect(await store().deregister(5, mine)).toBe(false);
      expect((await kvOf(KEYS.leaderKey(0, 1)))?.lease).toBe(theirs);
      expect((await kvOf(KEYS.memberKey(1, 5)))?.lease).toBe(theirs);
    });

    test("a resignation or deregistration that never reached etcd is not reported done", async () => {
      const lease = await grantLease();
      const fence = await holdLeaderKey(0, 1, lease);
      env.proxy.setMode("hold-request", { match: KEYS.leaderKey(0, 1) });
      await expect(store().resign(fence, lease)).rejects.toThrow();
      expect((await kvOf(KEYS.leaderKey(0, 1)))?.lease).toBe(lease);
      await env.proxy.releaseHeldRequest();
      await putMember(5, lease);
      env.proxy.setMode("hold-request", { match: KEYS.memberKey(1, 5) });
      await expect(store().deregister(5, lease)).rejects.toThrow();
      expect((await kvOf(KEYS.memberKey(1, 5)))?.lease).toBe(lease);
      await env.proxy.releaseHeldRequest();
    });
  });

  describe("handoff", () => {
    test("a resignation whose reply was lost, read back after another node took the seat, is resigned", async () => {
      const lease = await grantLease();
      const fence = await holdLeaderKey(0, 1, lease);
      const slowReads = new ClusterStore(
        env.track(connectEtcd([env.proxy.endpoint])),
        LAYOUT,
        silentLogger(),
        {
          callTimeoutMs: 10_000,
        },
      );
      env.proxy.setMode("drop-reply", { match: KEYS.leaderKey(0, 1), afterwards: "blackhole" });
      const stopping = failureOf(slowReads.handoff(fence, lease, undefined));
      await waitUntil("the resignation applied and its reply dropped", () => env.proxy.repliesDropped === 1);
      const next = await holdLeaderKey(0, 1, await grantLease());
      linkBack();
      const result = await stopping;
      expect(result).toBeInstanceOf(Succeeded);
      expect((result as Succeeded).value).toEqual({ kind: "resigned" });
      expect(Number((await kvOf(KEYS.leaderKey(0, 1)))?.create_revision)).toBe(next.token);
    });
  });

  describe("advertiseFailedSlot", () => {
    test("a slot that has a member is not advertised: false, and nothing written", async () => {
      const lease = await grantLease();
      const fence = await holdLeaderKey(0, 1, lease);
      await putMember(2, await grantLease());
      expect(await store().advertiseFailedSlot(fence, lease, 2, 0)).toBe(false);
      expect(await kvOf(KEYS.failoverKey(2))).toBeUndefined();
    });

    test("an advertisement already there that is not this leader's (another token, a bad value) counts as not advertised", async () => {
      const lease = await grantLease();
      const fence = await holdLeaderKey(0, 1, lease);
      await putAd(2, { id: 2, group: 0, advertisedBy: 1, token: fence.token + 1 });
      expect(await store().advertiseFailedSlot(fence, lease, 2, 0)).toBe(false);
      await putAd(2, "not json");
      expect(await store().advertiseFailedSlot(fence, lease, 2, 0)).toBe(false);
      expect((await kvOf(KEYS.failoverKey(2)))?.value.toString()).toBe("not json");
    });

    test("a leader key re-created under the same lease (another token) refuses the advertisement", async () => {
      const lease = await grantLease();
      const fence = await holdLeaderKey(0, 1, lease);
      await holdLeaderKey(0, 1, lease);
      const err = await failureOf(store().advertiseFailedSlot(fence, lease, 2, 0));
      expect(err).toBeInstanceOf(FenceLostError);
      expect(err).toMatchObject({
        name: "FenceLostError",
        fence,
        message: `leader key of grouping 0 seat 1 no longer has create revision ${fence.token}`,
      });
      expect(await kvOf(KEYS.failoverKey(2))).toBeUndefined();
    });

    test("an advertisement that never reached etcd is not reported done, nor as nothing to advertise", async () => {
      const lease = await grantLease();
      const fence = await holdLeaderKey(0, 1, lease);
      env.proxy.setMode("hold-request", { match: KEYS.failoverKey(2) });
      const err = await failureOf(store().advertiseFailedSlot(fence, lease, 2, 0));
      expect(err).not.toBeInstanceOf(Succeeded);
      expect(err).not.toBeInstanceOf(OutcomeUnknownError);
      expect(err).not.toBeInstanceOf(FenceLostError);
      expect(await kvOf(KEYS.failoverKey(2))).toBeUndefined();
      await env.proxy.releaseHeldRequest();
    });
  });

  describe("fencedTxn looking up its lease", () => {
    test("a leader key without a lease, or gone, is a lost fence: nothing written", async () => {
      const put = await env.direct.put(KEYS.leaderKey(0, 1)).value(JSON.stringify(record)).exec();
      const leaseless: FencingToken = { grouping: 0, seat: 1, token: Number(put.header.revision) };
      await expect(store().fencedTxn(leaseless, write("app/leaseless"))).rejects.toBeInstanceOf(
        FenceLostError,
      );
      await env.direct.delete().key(KEYS.leaderKey(0, 1));
      await expect(store().fencedTxn(leaseless, write("app/gone"))).rejects.toBeInstanceOf(FenceLostError);
      expect(await kvOf("app/leaseless")).toBeUndefined();
      expect(await kvOf("app/gone")).toBeUndefined();
    });

    test("each fence's lease is its own: a fence won under one lease does not lend it to another grouping's", async () => {
      const [earlier, current] = [await grantLease(), await grantLease()];
      const ids = store();
      const won = await ids.campaign(0, 1, record, earlier);
      if (won.kind !== "won") throw new Error("the seat was vacant");
      const held = await holdLeaderKey(1, 1, current);
      const result = await ids.fencedTxn(held, write("app/grouping-1"));
      expect(result.revision).toBe(Number((await kvOf("app/grouping-1"))?.mod_revision));
    });

    test("a store remembers the leases of the 64 fences it won last, and looks older ones up", async () => {
      const lease = await grantLease();
      const ids = store();
      const won = await ids.campaign(0, 1, record, lease);
      if (won.kind !== "won") throw new Error("the seat was vacant");
      const first: FencingToken = { grouping: 0, seat: 1, token: won.token };
      const winAndResign = async () => {
        const again = await ids.campaign(1, 1, record, lease);
        if (again.kind !== "won") throw new Error("the seat was vacant");
        expect(await ids.resign({ grouping: 1, seat: 1, token: again.token }, lease)).toBe(true);
      };
      /** Over a silent link: a remembered lease goes straight to the write (its outcome then unknown), a looked-up one fails the lookup. */
      const failureOverSilentLink = async () => {
        env.proxy.setMode("blackhole");
        const err = await failureOf(ids.fencedTxn(first, write("app/remembered")));
        linkBack();
        // The client dials again: its first calls may still fail.
        for (let attempt = 0; ; attempt++) {
          try {
            await ids.allocatedCount();
            break;
          } catch (readErr) {
            if (attempt >= 50) throw readErr;
            await sleep(100);
          }
        }
        return err;
      };
      for (let i = 0; i < 63; i++) await winAndResign();
      expect(await failureOverSilentLink()).toBeInstanceOf(WriteOutcomeUnknownError);
      await winAndResign();
      const forgotten = await failureOverSilentLink();
      expect(forgotten).toBeInstanceOf(WriteNotCommittedError);
      expect(forgotten).not.toBeInstanceOf(WriteOutcomeUnknownError);
    }, 120_000);
  });
});
