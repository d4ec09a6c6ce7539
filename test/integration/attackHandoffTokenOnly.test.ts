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
 * removal in flight): each must be refused, since the key's lease is the new primary's. With a
 * compare on the token alone, each committed against the new primary's term.
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
    return { oldPrimary, fence, oldLease, newLease };
  };

  // A handed-off key keeps its token (create revision) under another lease: resign compares the lease too.
  test("the old primary's resign after its handoff leaves the new primary's key alone", async () => {
    const { oldPrimary, fence, oldLease, newLease } = await handedOff();
    const resigned = await oldPrimary.resign(fence, oldLease);
    const now = await kvOf(PRIMARY_KEY);
    expect(now?.lease).toBe(newLease);
    expect(resigned).toBe(false);
  });

  // The advertiser's fence is the token and the lease: an advertisement in flight after the handoff is refused.
  test("the old primary's failover advertisement after its handoff is refused", async () => {
    const { oldPrimary, fence, oldLease } = await handedOff();
    await expect(oldPrimary.advertiseFailedSlot(fence, oldLease, FAILED_SLOT, 1)).rejects.toBeInstanceOf(
      FenceLostError,
    );
    expect(await kvOf(KEYS.failoverKey(FAILED_SLOT))).toBeUndefined();
  });

  // The poisoned-seat removal is fenced on the remover's token and lease.
  test("the old primary's removal of a poisoned backup key after its handoff is refused", async () => {
    const { fence, oldLease } = await handedOff();
    const poisoned = await env.direct.put(BACKUP_KEY).value("not a node record").exec();
    const removal = removePoisonedLeaderKey(
      env.track(connectEtcd(env.etcd.endpoints)),
      LAYOUT,
      fence,
      oldLease,
      BACKUP_KEY,
      Number(poisoned.header.revision),
      CALL_TIMEOUT_MS,
    );
    await expect(removal).rejects.toBeInstanceOf(FenceLostError);
    expect(await kvOf(BACKUP_KEY)).toBeDefined();
  });
});
