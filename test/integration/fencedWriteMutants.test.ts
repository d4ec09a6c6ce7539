import type { Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ClusterLayout } from "../../src/config/index.js";
import { FencedWriter } from "../../src/etcd/fencedWrite.js";
import {
  connectEtcd,
  FenceLostError,
  type FencingToken,
  WriteNotCommittedError,
  WriteOutcomeUnknownError,
} from "../../src/etcd/index.js";
import { silentLogger } from "../../src/logging.js";
import { ONE_GROUPING } from "../support/clusterNodes.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { proxiedEtcdPerTest } from "../support/proxiedEtcd.js";
import { recordingLogger } from "../support/recordingLogger.js";
import { waitUntil } from "../support/waitUntil.js";

/**
 * FencedWriter called directly, with marker keys the test chooses, so each way a write's outcome
 * is decided (its own reply, its marker, the settling transaction) can be driven against etcd.
 */
const KEYS = new ClusterLayout(ONE_GROUPING).keys;
const RECORD = JSON.stringify({ id: 0, name: "writer", address: "127.0.0.1:1" });
const CALL_TIMEOUT_MS = 5_000;

async function grantLease(client: Etcd3): Promise<string> {
  return String(await client.lease(60, { autoKeepAlive: false }).grant());
}

/** Puts the grouping's primary key under `leaseId`; its fence. */
async function holdPrimaryKey(client: Etcd3, grouping: number, leaseId: string): Promise<FencingToken> {
  const res = await client.put(KEYS.leaderKey(grouping, 1)).value(RECORD).lease(leaseId).exec();
  return { grouping, seat: 1, token: Number(res.header.revision) };
}

const markerKey = (grouping: number, name: string) => KEYS.writeMarkerKey(grouping, name);
const markersUnder = async (client: Etcd3, leaseId: string) =>
  (await client.getAll().prefix(KEYS.writeMarkerPrefix(0)).exec()).kvs.filter((kv) => kv.lease === leaseId);

describe("FencedWriter: how each outcome is decided", () => {
  let etcd: EtcdCluster;
  let client: Etcd3;

  beforeAll(async () => {
    etcd = await startEtcd();
    client = etcd.client();
  });

  afterAll(async () => {
    client.close();
    await etcd.stop();
  });

  const writer = (logger = silentLogger()) => new FencedWriter(client, CALL_TIMEOUT_MS, logger);
  const put = (key: string) => client.put(key).value("v");
  const storedValue = async (key: string) => (await client.get(key).exec()).kvs[0]?.value.toString();

  test("a committed write reports its revision in the result and in its header, and only its own operations' replies", async () => {
    const lease = await grantLease(client);
    const fence = await holdPrimaryKey(client, 0, lease);
    const result = await writer().write(fence, KEYS.leaderKey(0, 1), lease, markerKey(0, "plain"), [
      put("app/plain"),
    ]);
    const written = (await client.get("app/plain").exec()).kvs[0];
    expect(result.revision).toBe(Number(written?.mod_revision));
    expect(result.header).toEqual({ revision: String(result.revision) });
    expect(result.responses).toHaveLength(1);
  });

  test("a write whose marker already says aborted is not committed, and the error names the marker", async () => {
    const lease = await grantLease(client);
    const fence = await holdPrimaryKey(client, 1, lease);
    const marker = markerKey(1, "aborted-before");
    await client.put(marker).value("aborted").lease(lease).exec();
    const write = writer().write(fence, KEYS.leaderKey(1, 1), lease, marker, [put("app/after-abort")]);
    await expect(write).rejects.toBeInstanceOf(WriteNotCommittedError);
    await expect(write).rejects.toThrow(`${marker} says the write was aborted`);
    expect(await storedValue("app/after-abort")).toBeUndefined();
  });

  test("a write whose marker already says committed is reported committed at the marker's revision, without replies", async () => {
    const lease = await grantLease(client);
    const fence = await holdPrimaryKey(client, 2, lease);
    const marker = markerKey(2, "committed-before");
    const markerRevision = Number(
      (await client.put(marker).value("committed").lease(lease).exec()).header.revision,
    );
    const result = await writer().write(fence, KEYS.leaderKey(2, 1), lease, marker, [put("app/resent")]);
    expect(result).toEqual({
      revision: markerRevision,
      responses: undefined,
      header: { revision: String(markerRevision) },
    });
    // The marker, not this copy, is the write: this copy's compare failed and applied nothing.
    expect(await storedValue("app/resent")).toBeUndefined();
  });

  test("a marker this runtime never writes: the outcome is unknown, and one warning names the key and the value's first 64 characters", async () => {
    const lease = await grantLease(client);
    const fence = await holdPrimaryKey(client, 3, lease);
    const marker = markerKey(3, "foreign");
    const foreign = `${"x".repeat(64)}TAIL`;
    await client.put(marker).value(foreign).lease(lease).exec();
    const { logger, records } = recordingLogger();
    const failure = await writer(logger)
      .write(fence, KEYS.leaderKey(3, 1), lease, marker, [put("app/foreign")])
      .then(
        () => undefined,
        (err: unknown) => err,
      );
    expect(failure).toBeInstanceOf(WriteOutcomeUnknownError);
    expect((failure as WriteOutcomeUnknownError).markerKey).toBe(marker);
    expect(String((failure as WriteOutcomeUnknownError).settleError)).toBe(
      `Error: the marker holds "${"x".repeat(64)}"`,
    );
    expect(records.map(({ level, message, key, value }) => ({ level, message, key, value }))).toEqual([
      {
        level: "warn",
        message: "fenced-write marker has a value this runtime never writes",
        key: marker,
        value: "x".repeat(64),
      },
    ]);
    expect(await storedValue("app/foreign")).toBeUndefined();
  });

  test("a write under a leader key that is gone is refused with FenceLostError and changes nothing", async () => {
    const lease = await grantLease(client);
    const fence = await holdPrimaryKey(client, 4, lease);
    await client.delete().key(KEYS.leaderKey(4, 1)).exec();
    await expect(
      writer().write(fence, KEYS.leaderKey(4, 1), lease, markerKey(4, "no-leader"), [put("app/no-leader")]),
    ).rejects.toBeInstanceOf(FenceLostError);
    expect(await storedValue("app/no-leader")).toBeUndefined();
    expect(await storedValue(markerKey(4, "no-leader"))).toBeUndefined();
  });

  test("a write on a closed client certainly was not sent: it is reported not committed, not unknown", async () => {
    const own = etcd.client();
    const lease = await grantLease(client);
    const fence = await holdPrimaryKey(client, 5, lease);
    own.close();
    const closed = new FencedWriter(own, CALL_TIMEOUT_MS, silentLogger());
    await expect(
      closed.write(fence, KEYS.leaderKey(5, 1), lease, markerKey(5, "closed"), [
        own.put("app/closed").value("v"),
      ]),
    ).rejects.toBeInstanceOf(WriteNotCommittedError);
    expect(await storedValue("app/closed")).toBeUndefined();
  });

  test("the writer deletes earlier markers for its 8 most recently used leases, and forgets the markers of older ones", async () => {
    const leases = await Promise.all(Array.from({ length: 9 }, () => grantLease(client)));
    // One grouping per lease would need nine groupings; one leader key can be bound to one lease
    // only, so each lease gets its own leader key here (any key works as the fence's leader key).
    const fences = await Promise.all(
      leases.map(async (lease, i) => {
        const key = `app/leader-${i}`;
        const res = await client.put(key).value(RECORD).lease(lease).exec();
        return { key, fence: { grouping: 0, seat: 1 as const, token: Number(res.header.revision) } };
      }),
    );
    const writes = writer();
    let n = 0;
    const writeUnder = (i: number) => {
      const { key, fence } = fences[i] as (typeof fences)[number];
      n++;
      return writes.write(fence, key, leases[i] as string, markerKey(0, `lru-${i}-${n}`), [
        put(`app/lru-${n}`),
      ]);
    };
    const markersOf = async (i: number) => (await markersUnder(client, leases[i] as string)).length;

    // Leases 0..7: eight remembered. A second write under lease 0 deletes its first marker.
    for (let i = 0; i < 8; i++) await writeUnder(i);
    await writeUnder(0);
    expect(await markersOf(0)).toBe(1);
    // Lease 0 is now the most recent; lease 8 makes nine, so lease 1, the least recent, is forgotten:
    // its next write cannot delete its first marker (it expires with the lease).
    await writeUnder(8);
    await writeUnder(1);
    expect(await markersOf(1)).toBe(2);
    await writeUnder(0);
    expect(await markersOf(0)).toBe(1);
  });
});

describe("FencedWriter: settling a write whose reply was lost", () => {
  const env = proxiedEtcdPerTest();

  test("a settling transaction that fails on a broken link is retried until etcd answers: the committed write is reported committed", async () => {
    const lease = await grantLease(env.direct);
    const fence = await holdPrimaryKey(env.direct, 0, lease);
    const own = env.track(connectEtcd([env.proxy.endpoint]));
    env.proxy.setMode("drop-reply", { match: "app/settled-late", afterwards: "reset" });
    const write = new FencedWriter(own, 30_000, silentLogger()).write(
      fence,
      KEYS.leaderKey(0, 1),
      lease,
      markerKey(0, "settled-late"),
      [own.put("app/settled-late").value("v")],
    );
    await waitUntil(
      "the write to commit in etcd",
      async () => (await env.direct.get("app/settled-late").string()) === "v",
    );
    await waitUntil("the reply to be dropped", () => env.proxy.repliesDropped === 1);
    env.proxy.setMode("pass");
    const result = await write;
    expect(result.revision).toBe(
      Number((await env.direct.get("app/settled-late").exec()).kvs[0]?.mod_revision),
    );
  }, 120_000);

  test("once the lease is gone, settling stops at once: the outcome is unknown, and the error says the lease took the marker", async () => {
    const lease = await grantLease(env.direct);
    const fence = await holdPrimaryKey(env.direct, 0, lease);
    const own = env.track(connectEtcd([env.proxy.endpoint]));
    env.proxy.setMode("drop-reply", { match: "app/lease-gone", afterwards: "reset" });
    // A budget far longer than the test may wait: only stopping on the lost lease ends the call.
    const write = new FencedWriter(own, 600_000, silentLogger())
      .write(fence, KEYS.leaderKey(0, 1), lease, markerKey(0, "lease-gone"), [
        own.put("app/lease-gone").value("v"),
      ])
      .then(
        () => undefined,
        (err: unknown) => err,
      );
    await waitUntil(
      "the write to commit in etcd",
      async () => (await env.direct.get("app/lease-gone").string()) === "v",
    );
    await waitUntil("the reply to be dropped", () => env.proxy.repliesDropped === 1);
    await env.direct.leaseClient.leaseRevoke({ ID: lease });
    env.proxy.setMode("pass");
    const failure = await write;
    expect(failure).toBeInstanceOf(WriteOutcomeUnknownError);
    expect(String((failure as WriteOutcomeUnknownError).settleError)).toBe(
      `Error: lease ${lease} is gone, and with it the marker that would tell`,
    );
  }, 120_000);
});
