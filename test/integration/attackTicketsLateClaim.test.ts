import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, test } from "vitest";
import { ClusterLayout } from "../../src/config/index.js";
import { ClaimAbandonedError } from "../../src/etcd/clusterStore.js";
import { ClusterStore, connectEtcd, OutcomeUnknownError } from "../../src/etcd/index.js";
import { silentLogger } from "../../src/logging.js";
import { SEED_CONFIG } from "../support/clusterNodes.js";
import { proxiedEtcdPerTest } from "../support/proxiedEtcd.js";

/** One grouping of two groups of three. */
const LAYOUT = new ClusterLayout({ ...SEED_CONFIG, groups: 2, group_size: 3, reads: 2 });
const KEYS = LAYOUT.keys;
const record = (name: string) => ({ name, address: "127.0.0.1:1" });

/**
 * The backed-out design's bug (docs/scale.md): a claim delayed in the network lands after its slot
 * was taken by another node and freed again, so one lease ends up with a member key it gave up on.
 * Under tickets the claim's only compare is "member key absent", so a late copy would land once
 * the slot is free; the store revokes the claim's lease when it finds the slot under another
 * lease. Here the ticket's slot is advertised by a primary (a ticket issued and not claimed),
 * claimed by a waiting node, and freed; then the held claim arrives.
 */
describe("a ticket claim that arrives late", () => {
  const env = proxiedEtcdPerTest();
  const lease = async () => String(await env.direct.lease(60, { autoKeepAlive: false }).grant());
  /** The link comes back: the dark connection is cut, so the client dials a new one. */
  const linkBack = () => {
    env.proxy.setMode("reset");
    env.proxy.setMode("pass");
  };
  /** As the runtime does (ETCD_FAILED, backoff, again): a failed allocation is tried again. */
  const allocateAgain = async (store: ClusterStore, name: string, leaseId: string) => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await store.allocateFreshId(record(name), leaseId);
      } catch (err) {
        if (err instanceof ClaimAbandonedError || attempt >= 20) throw err;
        await sleep(100);
      }
    }
  };
  const memberKeys = async () =>
    (await env.direct.getAll().prefix(KEYS.allMembersPrefix).exec()).kvs.map((kv) => ({
      key: kv.key.toString(),
      lease: kv.lease,
    }));

  test("is refused after its slot was advertised, claimed by another node and freed", async () => {
    const slow = env.track(connectEtcd([env.proxy.endpoint]));
    const slowLease = await lease();
    const slowStore = new ClusterStore(slow, LAYOUT, silentLogger(), { callTimeoutMs: 1_000 });
    const direct = new ClusterStore(env.direct, LAYOUT, silentLogger(), { callTimeoutMs: 1_000 });

    // The ticket put passes; the claim of slot 0 is held on the wire and the link then goes dark,
    // so the repeated claim that would settle it cannot reach etcd either.
    env.proxy.setMode("hold-request", { match: KEYS.memberKey(0, 0), afterwards: "blackhole" });
    await expect(slowStore.allocateFreshId(record("slow"), slowLease)).rejects.toBeInstanceOf(
      OutcomeUnknownError,
    );
    expect(await memberKeys()).toEqual([]);

    // A primary (ticket 1) sees slot 0 handed out with no member and advertises it.
    const primaryLease = await lease();
    expect(await direct.allocateFreshId(record("primary"), primaryLease)).toEqual({
      kind: "allocated",
      id: 1,
    });
    const won = await direct.campaign(0, 1, { ...record("primary"), id: 1 }, primaryLease);
    if (won.kind !== "won") throw new Error("the primary seat was vacant");
    expect(
      await direct.advertiseFailedSlot({ grouping: 0, seat: 1, token: won.token }, primaryLease, 0, 1),
    ).toBe(true);
    // A node waiting on a full cluster claims it.
    const waiterLease = await lease();
    expect(await direct.claimAdvertisedSlot(record("waiter"), waiterLease)).toBe(0);

    // The slow node's link comes back: its next allocation settles the earlier claim first,
    // finds slot 0 under the waiter's lease, and revokes its own lease.
    linkBack();
    await expect(allocateAgain(slowStore, "slow", slowLease)).rejects.toBeInstanceOf(ClaimAbandonedError);

    // The waiter dies: slot 0 is free again. Then the held claim arrives.
    await env.direct.leaseClient.leaseRevoke({ ID: waiterLease });
    await env.proxy.releaseHeldRequest();
    expect((await memberKeys()).filter((m) => m.lease === slowLease)).toEqual([]);
    expect(await memberKeys()).toEqual([{ key: KEYS.memberKey(0, 1), lease: primaryLease }]);
    expect(Number((await env.direct.leaseClient.leaseTimeToLive({ ID: slowLease })).TTL)).toBe(-1);
  });

  test("is refused when its node moved on to another ticket under the same lease", async () => {
    // A claim whose settlement failed is remembered per lease, so the next allocation under that
    // lease settles it before taking another ticket: the lease never holds two member keys.
    const slow = env.track(connectEtcd([env.proxy.endpoint]));
    const slowLease = await lease();
    const slowStore = new ClusterStore(slow, LAYOUT, silentLogger(), { callTimeoutMs: 1_000 });
    env.proxy.setMode("hold-request", { match: KEYS.memberKey(0, 0), afterwards: "blackhole" });
    await expect(slowStore.allocateFreshId(record("slow"), slowLease)).rejects.toBeInstanceOf(
      OutcomeUnknownError,
    );
    linkBack();
    // Slot 0 is still free: the settlement's repeated claim takes it, no second ticket is taken.
    expect(await allocateAgain(slowStore, "slow", slowLease)).toEqual({ kind: "allocated", id: 0 });
    await env.proxy.releaseHeldRequest();
    expect(await memberKeys()).toEqual([{ key: KEYS.memberKey(0, 0), lease: slowLease }]);
    expect(Number((await env.direct.get(KEYS.idKey).exec()).kvs[0]?.version)).toBe(1);
  });
});
