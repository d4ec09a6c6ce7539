import { ClientClosedError, EtcdLeaseInvalidError } from "etcd3";
import { describe, expect, test } from "vitest";
import { ClusterLayout } from "../../src/config/index.js";
import { reclaimId } from "../../src/etcd/idClaims.js";
import { connectEtcd, type Etcd3, OutcomeUnknownError } from "../../src/etcd/index.js";
import { ONE_GROUPING } from "../support/clusterNodes.js";
import { proxiedEtcdPerTest } from "../support/proxiedEtcd.js";

/**
 * reclaimId's compare, guards and error paths against a real etcd, one rule a test: the killers of
 * its mutants for `MUTATION_TESTS=store` (docs/mutation.md). Its node-level uses are in
 * stickyIdentity*.test.ts.
 */
const LAYOUT = new ClusterLayout(ONE_GROUPING);
const KEYS = LAYOUT.keys;
const RECORD = { name: "returning", address: "127.0.0.1:1" };
const CALL_TIMEOUT_MS = 1_000;
const ID = 4;
const MEMBER = KEYS.memberKey(LAYOUT.nodeGroup(ID), ID);
const AD = KEYS.failoverKey(ID);

describe("reclaimId: what its compare, guards and error paths decide", () => {
  const env = proxiedEtcdPerTest();
  const grantLease = async () => String(await env.direct.lease(60, { autoKeepAlive: false }).grant());
  const reclaim = (client: Etcd3, leaseId: string, id = ID) =>
    reclaimId(client, LAYOUT, id, RECORD, leaseId, CALL_TIMEOUT_MS);
  const proxied = () => env.track(connectEtcd([env.proxy.endpoint]));
  const members = async () =>
    (await env.direct.getAll().prefix(KEYS.allMembersPrefix).exec()).kvs.map((kv) => ({
      key: kv.key.toString(),
      lease: kv.lease,
    }));
  const advertise = () =>
    env.direct
      .put(AD)
      .value(JSON.stringify({ id: ID, group: LAYOUT.nodeGroup(ID), advertisedBy: 0, token: 7 }))
      .exec();
  const failureOf = (call: Promise<unknown>) =>
    call.then(
      (value) => ({ succeeded: value }),
      (err: unknown) => err,
    );

  test("an ID outside the layout is refused before anything is sent, naming the range", async () => {
    const lease = await grantLease();
    for (const id of [LAYOUT.capacity, -1, 1.5])
      await expect(reclaim(env.direct, lease, id)).rejects.toThrow(
        new RangeError(`previous node ID ${id} is outside 0..${LAYOUT.capacity - 1}`),
      );
    expect(await members()).toEqual([]);
  });

  test("a free slot is reclaimed as free, an advertised one as advertised (the advertisement consumed)", async () => {
    expect(await reclaim(env.direct, await grantLease())).toEqual({ kind: "reclaimed", id: ID, via: "free" });
    await env.direct.delete().key(MEMBER).exec();
    await advertise();
    const lease = await grantLease();
    expect(await reclaim(env.direct, lease)).toEqual({ kind: "reclaimed", id: ID, via: "advertised" });
    expect(await members()).toEqual([{ key: MEMBER, lease }]);
    expect(JSON.parse((await env.direct.get(MEMBER).string()) ?? "")).toEqual({ ...RECORD, id: ID });
    expect((await env.direct.get(AD).exec()).kvs).toEqual([]);
  });

  test("a slot already under this lease (its own earlier request) is reclaimed; under another, taken with the holder's name if it has one", async () => {
    const lease = await grantLease();
    await env.direct
      .put(MEMBER)
      .value(JSON.stringify({ ...RECORD, id: ID }))
      .lease(lease)
      .exec();
    expect(await reclaim(env.direct, lease)).toEqual({ kind: "reclaimed", id: ID, via: "free" });
    const other = await grantLease();
    await env.direct
      .put(MEMBER)
      .value(JSON.stringify({ id: ID, name: "newcomer", address: "127.0.0.1:2" }))
      .lease(other)
      .exec();
    expect(await reclaim(env.direct, lease)).toEqual({ kind: "taken", id: ID, holder: "newcomer" });
    for (const value of ["not json", JSON.stringify({ id: ID })]) {
      await env.direct.put(MEMBER).value(value).lease(other).exec();
      expect(await reclaim(env.direct, lease)).toEqual({ kind: "taken", id: ID, holder: undefined });
    }
    expect((await env.direct.get(MEMBER).exec()).kvs[0]?.lease).toBe(other);
  });

  test("a request that certainly did not apply is reported as it is: a closed client, a lease that is gone", async () => {
    const client = proxied();
    client.close();
    expect(await failureOf(reclaim(client, await grantLease()))).toBeInstanceOf(ClientClosedError);
    const gone = await grantLease();
    await env.direct.leaseClient.leaseRevoke({ ID: gone });
    await advertise();
    expect(await failureOf(reclaim(proxied(), gone))).toBeInstanceOf(EtcdLeaseInvalidError);
    expect(await members()).toEqual([]);
    expect((await env.direct.get(AD).exec()).kvs).toHaveLength(1);
  });

  test("a lost reply of a reclaim that committed is read back: reclaimed, one member key", async () => {
    const lease = await grantLease();
    env.proxy.setMode("drop-reply", { match: MEMBER });
    expect(await reclaim(proxied(), lease)).toEqual({ kind: "reclaimed", id: ID, via: "free" });
    expect(env.proxy.repliesDropped).toBe(1);
    expect(await members()).toEqual([{ key: MEMBER, lease }]);
  });

  test("a lost reply that cannot be read back is an unknown outcome naming the reclaim", async () => {
    env.proxy.setMode("drop-reply", { match: MEMBER, afterwards: "blackhole" });
    const err = await failureOf(reclaim(proxied(), await grantLease()));
    expect(err).toBeInstanceOf(OutcomeUnknownError);
    expect((err as OutcomeUnknownError).operation).toBe(`reclaim of ID ${ID}`);
    // The read back's own failure, not a read that found the key missing.
    expect(String((err as OutcomeUnknownError).settleError)).toMatch(/DEADLINE_EXCEEDED|deadline exceeded/i);
  });

  test("a request that never reached etcd is not reported reclaimed: unknown, the member key not held yet", async () => {
    const lease = await grantLease();
    env.proxy.setMode("hold-request", { match: MEMBER });
    const err = await failureOf(reclaim(proxied(), lease));
    expect(err).toBeInstanceOf(OutcomeUnknownError);
    expect((err as OutcomeUnknownError).operation).toBe(`reclaim of ID ${ID}`);
    expect(String((err as OutcomeUnknownError).settleError)).toBe("Error: the member key is not held yet");
    expect(await members()).toEqual([]);
    // The late copy the caller must allow for: it lands, under the same lease.
    await env.proxy.releaseHeldRequest();
    expect(await members()).toEqual([{ key: MEMBER, lease }]);
  });
});
