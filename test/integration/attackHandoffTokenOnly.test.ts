import { describe, expect, test } from "vitest";
import { ClusterLayout } from "../../src/config/index.js";
import { ClusterStore, connectEtcd, FenceLostError, type FencingToken } from "../../src/etcd/index.js";
import { removePoisonedLeaderKey } from "../../src/etcd/repair.js";
import { silentLogger } from "../../src/logging.js";
import { ONE_GROUPING } from "../support/clusterNodes.js";
import { proxiedEtcdPerTest } from "../support/proxiedEtcd.js";

/*
 * Attack on the handoff's term identity. A handoff keeps the primary key's create revision, so a
 * term is (token, lease). Every operation below is the OLD primary's, issued after it handed its
 * seat off (a resign() racing its stop(), its advertiser's loop still in flight, a poisoned-seat
 * removal in flight): each compares only the token, so each commits against the NEW primary's term.
 */

const LAYOUT = new ClusterLayout(ONE_GROUPING);
const KEYS = LAYOUT.keys;
const PRIMARY_KEY = KEYS.leaderKey(0, 1);
const BACKUP_KEY = KEYS.leaderKey(0, 2);
const CALL_TIMEOUT_MS = 2_000;
const FAILED_SLOT = 3;
const record = (id: number) => ({ id, name: `node-${id}`, address: `127.0.0.1:${7000 + id}` });

describe("attack: the old primary's token-only compares after a handoff", () => {
  const env = proxiedEtcdPerTest();
  const store = () =>
    new ClusterStore(env.track(connectEtcd(env.etcd.endpoints)), LAYOUT, silentLogger(), {
      callTimeoutMs: CALL_TIMEOUT_MS,
    });
  const grantLease = async () => String(await env.direct.lease(60, { autoKeepAlive: false }).grant());
  const kvOf = async (key: string) => (await env.direct.get(key).exec()).kvs[0];

  /** Node 1 wins the primary seat, node 2 the backup seat (real campaigns), then node 1 hands off. */
  const handedOff = async () => {
    const [oldPrimary, newPrimary] = [store(), store()];
    const [oldLease, newLease] = [await grantLease(), await grantLease()];
    const p = await oldPrimary.campaign(0, 1, record(1), oldLease);
    const b = await newPrimary.campaign(0, 2, record(2), newLease);
    if (p.kind !== "won" || b.kind !== "won") throw new Error("the seats were not won");
    const fence: FencingToken = { grouping: 0, seat: 1, token: p.token };
    const backup = { token: b.token, lease: newLease, value: JSON.stringify(record(2)) };
    expect(await oldPrimary.handoff(fence, oldLease, backup)).toMatchObject({ kind: "handedOff" });
    const now = await kvOf(PRIMARY_KEY);
    expect(now?.lease).toBe(newLease);
    expect(Number(now?.create_revision)).toBe(fence.token);
    return { oldPrimary, fence, newLease };
  };

  // BUG (high): ClusterStore.resign compares only `Create == token`. After a handoff the new
  // primary's key has that very token, so the old primary's resign deletes the NEW primary's seat:
  // a node that no longer holds a seat removes another live node's office. Reached when resign()
  // races stop() (stop's handoff lands first) or when etcd3 re-sends the resign txn. Fix
  // (clusterStore.ts): compare the lease the store won the seat under as well, and count a key with
  // the token under another lease as "not held" when settling a lost reply.
  test.fails("the old primary's resign after its handoff leaves the new primary's key alone", async () => {
    const { oldPrimary, fence, newLease } = await handedOff();
    const resigned = await oldPrimary.resign(fence);
    const now = await kvOf(PRIMARY_KEY);
    expect(now?.lease).toBe(newLease);
    expect(resigned).toBe(false);
  });

  // BUG (medium): advertiseFailedSlot is fenced only on `Create == token`, so an advertisement the
  // old primary's advertiser still has in flight (it checks its scope once, before its loop over
  // the slots) commits after the handoff: a fenced write from a deposed primary. Its other compares
  // (member and advertisement absent) keep the advertisement itself true, but the fence rule is
  // broken and the new primary takes it for its own (advertisedWith compares the token only). Fix
  // (clusterStore.ts): add `Lease == <the lease the seat was won under>` to the txn and to the
  // settling read's "still the leader" test.
  test.fails("the old primary's failover advertisement after its handoff is refused", async () => {
    const { oldPrimary, fence } = await handedOff();
    await expect(oldPrimary.advertiseFailedSlot(fence, FAILED_SLOT, 1)).rejects.toBeInstanceOf(
      FenceLostError,
    );
    expect(await kvOf(KEYS.failoverKey(FAILED_SLOT))).toBeUndefined();
  });

  // BUG (low): removePoisonedLeaderKey fences the remover on `Create == token` only, so the old
  // primary's removal of a poisoned backup key commits after it handed the seat off. The removal
  // compares the poisoned key's mod revision, so only that poisoned value can go. Fix (repair.ts):
  // take the remover's lease and compare it too.
  test.fails("the old primary's removal of a poisoned backup key after its handoff is refused", async () => {
    const { fence } = await handedOff();
    const poisoned = await env.direct.put(BACKUP_KEY).value("not a node record").exec();
    const removal = removePoisonedLeaderKey(
      env.track(connectEtcd(env.etcd.endpoints)),
      LAYOUT,
      fence,
      BACKUP_KEY,
      Number(poisoned.header.revision),
      CALL_TIMEOUT_MS,
    );
    await expect(removal).rejects.toBeInstanceOf(FenceLostError);
    expect(await kvOf(BACKUP_KEY)).toBeDefined();
  });
});
