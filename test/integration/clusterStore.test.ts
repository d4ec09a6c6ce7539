import { Etcd3, EtcdLeaseInvalidError } from "etcd3";
import { describe, expect, test } from "vitest";
import { ClusterLayout } from "../../src/config/index.js";
import { ClaimAbandonedError } from "../../src/etcd/clusterStore.js";
import {
  ClusterStore,
  type ConnectOptions,
  connectEtcd,
  FenceLostError,
  type FencingToken,
  OutcomeUnknownError,
  WriteNotCommittedError,
  WriteOutcomeUnknownError,
} from "../../src/etcd/index.js";
import { silentLogger } from "../../src/logging.js";
import { ONE_GROUPING } from "../support/clusterNodes.js";
import { proxiedEtcdPerTest } from "../support/proxiedEtcd.js";

const LAYOUT = new ClusterLayout(ONE_GROUPING);
const KEYS = LAYOUT.keys;
const RECORD = { name: "store-test", address: "127.0.0.1:1" };
const CALL_TIMEOUT_MS = 1_000;
/** No default deadline and no gRPC keepalive: only the store's own deadlines can end a call. */
const BARE: ConnectOptions = { defaultCallOptions: {}, grpcOptions: { "grpc.keepalive_time_ms": -1 } };
const MARKERS_PREFIX = KEYS.writeMarkerPrefix(0);

describe("ClusterStore over a link that loses replies", () => {
  const env = proxiedEtcdPerTest();
  const track = (client: Etcd3) => env.track(client);
  /** `call`'s reply to `match` is lost and the link then goes dark: it must report an unknown outcome; the link heals. */
  const outcomeUnknownThenHealed = async (match: string, call: () => Promise<unknown>) => {
    env.proxy.setMode("drop-reply", { match, afterwards: "blackhole" });
    await expect(call()).rejects.toBeInstanceOf(OutcomeUnknownError);
    env.proxy.setMode("reset");
    env.proxy.setMode("pass");
  };
  const storeOver = (client: Etcd3) =>
    new ClusterStore(client, LAYOUT, silentLogger(), { callTimeoutMs: CALL_TIMEOUT_MS });
  /** The runtime's client, through the env.proxy. */
  const store = () => storeOver(track(connectEtcd([env.proxy.endpoint])));
  /** etcd3's default client re-sends a txn whose reply was lost: the store must see its own success. */
  const storeOverRetryingClient = () => storeOver(track(new Etcd3({ hosts: [env.proxy.endpoint] })));
  const grantLease = async () => String(await env.direct.lease(60, { autoKeepAlive: false }).grant());
  const keysUnder = async (prefix: string, leaseId: string) =>
    (await env.direct.getAll().prefix(prefix).exec()).kvs
      .filter((kv) => kv.lease === leaseId)
      .map((kv) => kv.key.toString());
  const kvOf = async (key: string) => (await env.direct.get(key).exec()).kvs[0];
  /** Puts a leader key under `leaseId` directly; its fence. */
  const holdLeaderKey = async (seat: 1 | 2, leaseId: string): Promise<FencingToken> => {
    const res = await env.direct
      .put(KEYS.leaderKey(0, seat))
      .value(JSON.stringify({ ...RECORD, id: 0 }))
      .lease(leaseId)
      .exec();
    return { grouping: 0, seat, token: Number(res.header.revision) };
  };
  const advertise = async (id: number) => {
    await env.direct.put(KEYS.idKey).value("3");
    await env.direct
      .put(KEYS.failoverKey(id))
      .value(JSON.stringify({ id, group: 0, advertisedBy: 0, token: 7 }));
  };

  describe("allocateFreshId", () => {
    const firstMember = KEYS.memberKey(0, 0);
    const memberOf = (id: number) => KEYS.memberKey(LAYOUT.nodeGroup(id), id);
    /**
     * The bytes of the ticket put writing `value` (key, value, prev_kv: PutRequest fields 1, 2
     * and 4), not found in the read of `id_key` before it.
     */
    const ticketPut = (value: number) =>
      Buffer.concat([
        Buffer.from(KEYS.idKey),
        Buffer.from([0x12, String(value).length]),
        Buffer.from(String(value)),
        Buffer.from([0x20, 0x01]),
      ]);
    /** `id_key`'s version: the tickets taken so far. */
    const ticketsTaken = async () => Number((await kvOf(KEYS.idKey))?.version ?? 0);

    test("a lost reply of the committed claim still reports that ID; the node holds exactly one", async () => {
      const lease = await grantLease();
      env.proxy.setMode("drop-reply", { match: firstMember });
      expect(await store().allocateFreshId(RECORD, lease)).toEqual({ kind: "allocated", id: 0 });
      expect(env.proxy.repliesDropped).toBe(1);
      expect(await keysUnder(KEYS.allMembersPrefix, lease)).toEqual([firstMember]);
      expect(await ticketsTaken()).toBe(1);
    });

    test("a re-sent claim whose compare fails on its own first attempt reports that ID", async () => {
      const lease = await grantLease();
      env.proxy.setMode("drop-reply", { match: firstMember });
      expect(await storeOverRetryingClient().allocateFreshId(RECORD, lease)).toEqual({
        kind: "allocated",
        id: 0,
      });
      expect(env.proxy.repliesDropped).toBe(1);
      expect(await keysUnder(KEYS.allMembersPrefix, lease)).toEqual([firstMember]);
    });

    test("a lost reply of a ticket burns that ticket: the next one is claimed, one member key", async () => {
      const lease = await grantLease();
      env.proxy.setMode("drop-reply", { match: ticketPut(1) });
      const ids = store();
      await expect(ids.allocateFreshId(RECORD, lease)).rejects.toThrow();
      expect(await ticketsTaken()).toBe(1);
      expect(await ids.allocateFreshId(RECORD, lease)).toEqual({ kind: "allocated", id: 1 });
      expect(await keysUnder(KEYS.allMembersPrefix, lease)).toEqual([memberOf(1)]);
    });

    test("an outcome etcd could not tell is settled by the next call, which reports the same ID", async () => {
      const lease = await grantLease();
      const ids = store();
      await outcomeUnknownThenHealed(firstMember, () => ids.allocateFreshId(RECORD, lease));
      expect(await ids.allocateFreshId(RECORD, lease)).toEqual({ kind: "allocated", id: 0 });
      expect(await keysUnder(KEYS.allMembersPrefix, lease)).toEqual([firstMember]);
      expect(await ticketsTaken()).toBe(1);
    });

    test("a claim after an allocation etcd could not tell reports the allocated ID, not another", async () => {
      const lease = await grantLease();
      const ids = store();
      await outcomeUnknownThenHealed(firstMember, () => ids.allocateFreshId(RECORD, lease));
      await advertise(2);
      expect(await ids.claimAdvertisedSlot(RECORD, lease)).toBe(0);
      expect(await keysUnder(KEYS.allMembersPrefix, lease)).toEqual([firstMember]);
    });

    test("an allocation under a lease that is gone fails at once and registers nothing", async () => {
      const lease = await grantLease();
      await env.direct.leaseClient.leaseRevoke({ ID: lease });
      await expect(store().allocateFreshId(RECORD, lease)).rejects.toBeInstanceOf(EtcdLeaseInvalidError);
      expect((await env.direct.getAll().prefix(KEYS.allMembersPrefix).keys()).length).toBe(0);
    });

    test("a late copy of a claim settled by its repeat finds the slot already this lease's: one member key", async () => {
      const lease = await grantLease();
      env.proxy.setMode("hold-request", { match: firstMember });
      expect(await store().allocateFreshId(RECORD, lease)).toEqual({ kind: "allocated", id: 0 });
      await env.proxy.releaseHeldRequest();
      expect(await keysUnder(KEYS.allMembersPrefix, lease)).toEqual([firstMember]);
    });

    test("a claim of unknown outcome whose slot another node took meanwhile revokes the lease, so its late copy never lands", async () => {
      const lease = await grantLease();
      const ids = store();
      env.proxy.setMode("hold-request", { match: firstMember, afterwards: "blackhole" });
      await expect(ids.allocateFreshId(RECORD, lease)).rejects.toBeInstanceOf(OutcomeUnknownError);
      env.proxy.setMode("reset");
      env.proxy.setMode("pass");
      const other = await grantLease();
      await env.direct
        .put(firstMember)
        .value(JSON.stringify({ ...RECORD, id: 0 }))
        .lease(other);
      await expect(ids.allocateFreshId(RECORD, lease)).rejects.toBeInstanceOf(ClaimAbandonedError);
      // The other node leaves; the held copy of the first claim reaches etcd only now.
      await env.direct.delete().key(firstMember);
      await env.proxy.releaseHeldRequest();
      expect(await keysUnder(KEYS.allMembersPrefix, lease)).toEqual([]);
      expect(Number((await env.direct.leaseClient.leaseTimeToLive({ ID: lease })).TTL)).toBe(-1);
    });

    test("tickets that meet live members (an id_key reset by hand) are skipped; the ID is still unique", async () => {
      const others = await grantLease();
      for (const id of [0, 1, 2])
        await env.direct
          .put(KEYS.memberKey(0, id))
          .value(JSON.stringify({ ...RECORD, id }))
          .lease(others);
      await env.direct.delete().key(KEYS.idKey);
      const lease = await grantLease();
      expect(await store().allocateFreshId(RECORD, lease)).toEqual({ kind: "allocated", id: 3 });
      expect(await keysUnder(KEYS.allMembersPrefix, lease)).toEqual([memberOf(3)]);
      expect(await ticketsTaken()).toBe(4);
    });

    test("a ticket's slot that a primary advertised before the claim is claimed with its advertisement", async () => {
      await env.direct
        .put(KEYS.failoverKey(0))
        .value(JSON.stringify({ id: 0, group: 0, advertisedBy: 1, token: 7 }));
      const lease = await grantLease();
      expect(await store().allocateFreshId(RECORD, lease)).toEqual({ kind: "allocated", id: 0 });
      expect(await kvOf(KEYS.failoverKey(0))).toBeUndefined();
    });

    test("a ticket at the capacity means full while someone leads (it advertises failed slots); nothing is registered", async () => {
      await env.direct.put(KEYS.idKey).value(String(LAYOUT.capacity));
      await holdLeaderKey(1, await grantLease());
      const lease = await grantLease();
      expect(await store().allocateFreshId(RECORD, lease)).toEqual({ kind: "full" });
      expect(await keysUnder(KEYS.allMembersPrefix, lease)).toEqual([]);
    });
  });

  describe("claimAdvertisedSlot", () => {
    const slotMember = KEYS.memberKey(0, 1);

    test("a lost reply of the committed claim still reports the slot", async () => {
      const lease = await grantLease();
      await advertise(1);
      env.proxy.setMode("drop-reply", { match: slotMember });
      expect(await store().claimAdvertisedSlot(RECORD, lease)).toBe(1);
      expect(env.proxy.repliesDropped).toBe(1);
      expect(await keysUnder(KEYS.allMembersPrefix, lease)).toEqual([slotMember]);
      expect(await kvOf(KEYS.failoverKey(1))).toBeUndefined();
    });

    test("a re-sent claim whose compare fails on its own first attempt reports the slot", async () => {
      const lease = await grantLease();
      await advertise(1);
      env.proxy.setMode("drop-reply", { match: slotMember });
      expect(await storeOverRetryingClient().claimAdvertisedSlot(RECORD, lease)).toBe(1);
      expect(await keysUnder(KEYS.allMembersPrefix, lease)).toEqual([slotMember]);
    });

    test("an allocation after a claim etcd could not tell reports the claimed slot, not a fresh ID", async () => {
      const lease = await grantLease();
      await advertise(1);
      const ids = store();
      await outcomeUnknownThenHealed(slotMember, () => ids.claimAdvertisedSlot(RECORD, lease));
      expect(await ids.allocateFreshId(RECORD, lease)).toEqual({ kind: "allocated", id: 1 });
      expect(await keysUnder(KEYS.allMembersPrefix, lease)).toEqual([slotMember]);
    });

    test("a late copy of a claim reported as not made never takes the slot", async () => {
      const lease = await grantLease();
      await advertise(1);
      env.proxy.setMode("hold-request", { match: slotMember });
      expect(await store().claimAdvertisedSlot(RECORD, lease)).toBeUndefined();
      await env.proxy.releaseHeldRequest();
      expect(await keysUnder(KEYS.allMembersPrefix, lease)).toEqual([]);
      expect(await kvOf(KEYS.failoverKey(1))).toBeDefined();
    });
  });

  describe("campaign and promote", () => {
    const primaryKey = KEYS.leaderKey(0, 1);
    const record = { ...RECORD, id: 0 };

    test("a lost reply of a won campaign reports it won, with the key's create revision", async () => {
      const lease = await grantLease();
      env.proxy.setMode("drop-reply", { match: primaryKey });
      const result = await store().campaign(0, 1, record, lease);
      const held = await kvOf(primaryKey);
      expect(env.proxy.repliesDropped).toBe(1);
      expect(held?.lease).toBe(lease);
      expect(result).toEqual({ kind: "won", token: Number(held?.create_revision) });
    });

    test("a re-sent campaign whose compare fails on its own first attempt reports it won", async () => {
      const lease = await grantLease();
      env.proxy.setMode("drop-reply", { match: primaryKey });
      const result = await storeOverRetryingClient().campaign(0, 1, record, lease);
      expect(result).toEqual({ kind: "won", token: Number((await kvOf(primaryKey))?.create_revision) });
    });

    test("a campaign for a key held by another lease is lost", async () => {
      const [mine, theirs] = [await grantLease(), await grantLease()];
      await holdLeaderKey(1, theirs);
      expect(await store().campaign(0, 1, record, mine)).toEqual({ kind: "lost" });
    });

    test("a lost reply of a committed promotion reports it won", async () => {
      const lease = await grantLease();
      const backup = await holdLeaderKey(2, lease);
      env.proxy.setMode("drop-reply", { match: primaryKey });
      const result = await store().promote(backup, record, lease);
      const held = await kvOf(primaryKey);
      expect(env.proxy.repliesDropped).toBe(1);
      expect(held?.lease).toBe(lease);
      expect(result).toEqual({ kind: "won", token: Number(held?.create_revision) });
      expect(await kvOf(KEYS.leaderKey(0, 2))).toBeUndefined();
    });

    test("a re-sent promotion whose compare fails on its own first attempt reports it won", async () => {
      const lease = await grantLease();
      const backup = await holdLeaderKey(2, lease);
      env.proxy.setMode("drop-reply", { match: primaryKey });
      const result = await storeOverRetryingClient().promote(backup, record, lease);
      expect(result).toEqual({ kind: "won", token: Number((await kvOf(primaryKey))?.create_revision) });
    });
  });

  describe("resign, deregister and advertiseFailedSlot", () => {
    test("a lost reply of a committed resignation reports it done", async () => {
      const lease = await grantLease();
      const fence = await holdLeaderKey(1, lease);
      env.proxy.setMode("drop-reply", { match: KEYS.leaderKey(0, 1) });
      expect(await store().resign(fence, lease)).toBe(true);
      expect(env.proxy.repliesDropped).toBe(1);
      expect(await kvOf(KEYS.leaderKey(0, 1))).toBeUndefined();
    });

    test("a lost reply of a committed deregistration reports it done", async () => {
      const lease = await grantLease();
      const key = KEYS.memberKey(0, 2);
      await env.direct
        .put(key)
        .value(JSON.stringify({ ...RECORD, id: 2 }))
        .lease(lease);
      env.proxy.setMode("drop-reply", { match: key });
      expect(await store().deregister(2, lease)).toBe(true);
      expect(env.proxy.repliesDropped).toBe(1);
      expect(await kvOf(key)).toBeUndefined();
    });

    test("a lost reply of a committed advertisement reports it advertised", async () => {
      const lease = await grantLease();
      const fence = await holdLeaderKey(1, lease);
      env.proxy.setMode("drop-reply", { match: KEYS.failoverKey(2) });
      expect(await store().advertiseFailedSlot(fence, lease, 2, 0)).toBe(true);
      expect(env.proxy.repliesDropped).toBe(1);
      expect(JSON.parse((await env.direct.get(KEYS.failoverKey(2)).string()) ?? "{}")).toMatchObject({
        id: 2,
        token: fence.token,
      });
    });

    test("a re-sent advertisement whose compare fails on its own first attempt reports it advertised", async () => {
      const lease = await grantLease();
      const fence = await holdLeaderKey(1, lease);
      env.proxy.setMode("drop-reply", { match: KEYS.failoverKey(2) });
      expect(await storeOverRetryingClient().advertiseFailedSlot(fence, lease, 2, 0)).toBe(true);
    });

    test("an advertisement by a deposed leader is refused with FenceLostError", async () => {
      const lease = await grantLease();
      const fence = await holdLeaderKey(1, lease);
      await env.direct.delete().key(KEYS.leaderKey(0, 1));
      await expect(store().advertiseFailedSlot(fence, lease, 2, 0)).rejects.toBeInstanceOf(FenceLostError);
      expect(await kvOf(KEYS.failoverKey(2))).toBeUndefined();
    });
  });

  describe("fencedTxn", () => {
    const write = (key: string) => (c: Etcd3) => [c.put(key).value("v")];

    test("a lost reply of a committed write reports it committed, at its revision", async () => {
      const lease = await grantLease();
      const fence = await holdLeaderKey(1, lease);
      env.proxy.setMode("drop-reply", { match: "app/lost-reply" });
      const result = await store().fencedTxn(fence, write("app/lost-reply"));
      expect(env.proxy.repliesDropped).toBe(1);
      const written = await kvOf("app/lost-reply");
      expect(written?.value.toString()).toBe("v");
      expect(result.revision).toBe(Number(written?.mod_revision));
      expect(result.responses).toBeUndefined();
    });

    test("a re-sent write whose compare fails on its own first attempt reports it committed", async () => {
      const lease = await grantLease();
      const fence = await holdLeaderKey(1, lease);
      env.proxy.setMode("drop-reply", { match: "app/resent" });
      const result = await storeOverRetryingClient().fencedTxn(fence, write("app/resent"));
      expect(result.revision).toBe(Number((await kvOf("app/resent"))?.mod_revision));
    });

    test("a late copy of a write reported as not committed never applies", async () => {
      const lease = await grantLease();
      const fence = await holdLeaderKey(1, lease);
      env.proxy.setMode("hold-request", { match: "app/late" });
      await expect(store().fencedTxn(fence, write("app/late"))).rejects.toBeInstanceOf(
        WriteNotCommittedError,
      );
      await env.proxy.releaseHeldRequest();
      expect(await kvOf("app/late")).toBeUndefined();
    });

    test("a write whose outcome etcd cannot tell in time is reported unknown, not refused", async () => {
      const lease = await grantLease();
      const fence = await holdLeaderKey(1, lease);
      env.proxy.setMode("drop-reply", { match: "app/unknown", afterwards: "blackhole" });
      await expect(store().fencedTxn(fence, write("app/unknown"))).rejects.toBeInstanceOf(
        WriteOutcomeUnknownError,
      );
      expect((await kvOf("app/unknown"))?.value.toString()).toBe("v");
    });

    test("a write under a lost fence is refused with FenceLostError and changes nothing", async () => {
      const [mine, theirs] = [await grantLease(), await grantLease()];
      const fence = await holdLeaderKey(1, mine);
      const ours = store();
      await expect(
        ours.fencedTxn({ ...fence, token: fence.token + 1_000 }, write("app/stale")),
      ).rejects.toBeInstanceOf(FenceLostError);
      await expect(ours.fencedTxn(fence, write("app/other-lease"), theirs)).rejects.toBeInstanceOf(
        FenceLostError,
      );
      expect(await kvOf("app/stale")).toBeUndefined();
      expect(await kvOf("app/other-lease")).toBeUndefined();
    });

    test("committed writes leave one marker behind, bound to the lease", async () => {
      const lease = await grantLease();
      const fence = await holdLeaderKey(1, lease);
      const writes = store();
      for (let i = 0; i < 4; i++) {
        const result = await writes.fencedTxn(fence, write(`app/seq-${i}`));
        expect(result.responses).toHaveLength(1);
      }
      const markers = (await env.direct.getAll().prefix(MARKERS_PREFIX).exec()).kvs;
      expect(markers).toHaveLength(1);
      expect(markers[0]?.lease).toBe(lease);
    });
  });

  test("every call fails at its deadline over a silent link; none hangs", async () => {
    const lease = await grantLease();
    const fence = await holdLeaderKey(1, lease);
    const backup = await holdLeaderKey(2, await grantLease());
    await advertise(1);
    const silent = storeOver(track(connectEtcd([env.proxy.endpoint], BARE)));
    expect(await silent.allocatedCount()).toBe(3);
    env.proxy.setMode("blackhole");
    const record = { ...RECORD, id: 0 };
    const calls: Record<string, () => Promise<unknown>> = {
      allocateFreshId: () => silent.allocateFreshId(RECORD, lease),
      allocatedCount: () => silent.allocatedCount(),
      claimAdvertisedSlot: () => silent.claimAdvertisedSlot(RECORD, lease),
      campaign: () => silent.campaign(0, 1, record, lease),
      promote: () => silent.promote(backup, record, lease),
      resign: () => silent.resign(fence, lease),
      deregister: () => silent.deregister(0, lease),
      advertiseFailedSlot: () => silent.advertiseFailedSlot(fence, lease, 2, 0),
      fencedTxn: () => silent.fencedTxn(fence, write("app/silent"), lease),
      fencedTxnLookingUpItsLease: () => silent.fencedTxn(fence, write("app/silent")),
    };
    for (const [name, call] of Object.entries(calls)) await expectDeadlineFailure(name, call());
  }, 240_000);

  test("a fresh-ID allocation whose reply never comes is settled after its deadline", async () => {
    const lease = await grantLease();
    env.proxy.setMode("drop-reply", { match: KEYS.memberKey(0, 0), keepConnection: true });
    const silent = storeOver(track(connectEtcd([env.proxy.endpoint], BARE)));
    expect(await silent.allocateFreshId(RECORD, lease)).toEqual({ kind: "allocated", id: 0 });
    expect(env.proxy.repliesDropped).toBe(1);
    expect(await keysUnder(KEYS.allMembersPrefix, lease)).toEqual([KEYS.memberKey(0, 0)]);
  });

  test("a slot claim whose reply never comes is settled after its deadline", async () => {
    const lease = await grantLease();
    await advertise(1);
    env.proxy.setMode("drop-reply", { match: KEYS.memberKey(0, 1), keepConnection: true });
    const silent = storeOver(track(connectEtcd([env.proxy.endpoint], BARE)));
    expect(await silent.claimAdvertisedSlot(RECORD, lease)).toBe(1);
    expect(env.proxy.repliesDropped).toBe(1);
    expect(await keysUnder(KEYS.allMembersPrefix, lease)).toEqual([KEYS.memberKey(0, 1)]);
  });

  /**
   * `call` failed at a deadline, and so did settling its outcome if it had to. Without a deadline
   * a call would wait until gRPC gives up on the connection, if ever, and fail UNAVAILABLE.
   */
  async function expectDeadlineFailure(name: string, call: Promise<unknown>): Promise<void> {
    const failure = await call.then(
      () => new Error(`${name} succeeded over a silent link`),
      (err: unknown) => err,
    );
    const failures =
      failure instanceof OutcomeUnknownError ? [failure.attemptError, failure.settleError] : [failure];
    for (const err of failures) expect(String(err), name).toMatch(/DEADLINE_EXCEEDED|deadline exceeded/i);
  }

  const write = (key: string) => (c: Etcd3) => [c.put(key).value("v")];
});
