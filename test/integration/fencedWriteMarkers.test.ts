import type { Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ClusterLayout } from "../../src/config/index.js";
import { ClusterStore, FenceLostError, type FencingToken } from "../../src/etcd/index.js";
import { silentLogger } from "../../src/logging.js";
import { SEED_CONFIG } from "../support/clusterNodes.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";

const LAYOUT = new ClusterLayout(SEED_CONFIG);
const KEYS = LAYOUT.keys;
/** Each test uses its own grouping's leader key and marker prefix, so they share one etcd. */
const RECORD = { id: 0, name: "writer", address: "127.0.0.1:1" };

describe("fenced writes: fences and markers", () => {
  let etcd: EtcdCluster;
  let client: Etcd3;

  beforeAll(async () => {
    etcd = await startEtcd();
    client = etcd.client();
  });

  afterAll(async () => {
    await etcd.stop();
  });

  const grantLease = async () => String(await client.lease(60, { autoKeepAlive: false }).grant());
  const holdPrimaryKey = async (grouping: number, leaseId: string): Promise<FencingToken> => {
    const res = await client
      .put(KEYS.leaderKey(grouping, 1))
      .value(JSON.stringify(RECORD))
      .lease(leaseId)
      .exec();
    return { grouping, seat: 1, token: Number(res.header.revision) };
  };
  const markersOf = async (grouping: number) =>
    (await client.getAll().prefix(KEYS.writeMarkerPrefix(grouping)).exec()).kvs;
  const store = () => new ClusterStore(client, LAYOUT, silentLogger(), { callTimeoutMs: 5_000 });
  const write = (key: string) => (c: Etcd3) => [c.put(key).value("v")];

  test("a write naming the leader key's own lease but a stale token is refused with FenceLostError and changes nothing", async () => {
    const lease = await grantLease();
    const fence = await holdPrimaryKey(0, lease);
    await expect(
      store().fencedTxn({ ...fence, token: fence.token - 1 }, write("app/stale-token"), lease),
    ).rejects.toBeInstanceOf(FenceLostError);
    expect((await client.get("app/stale-token").exec()).kvs).toEqual([]);
    expect(await markersOf(0)).toEqual([]);
  });

  test("markers of concurrent writes are deleted by later writes, at most 16 a write, until one is left", async () => {
    const lease = await grantLease();
    const fence = await holdPrimaryKey(1, lease);
    const writes = store();
    // Started together, none of them knows another's marker: 20 are left.
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => writes.fencedTxn(fence, write(`app/concurrent-${i}`), lease)),
    );
    const all = await markersOf(1);
    expect(all).toHaveLength(20);
    expect(all.every((kv) => kv.lease === lease && kv.value.toString() === "committed")).toBe(true);
    await writes.fencedTxn(fence, write("app/next"), lease);
    expect(await markersOf(1)).toHaveLength(20 - 16 + 1);
    await writes.fencedTxn(fence, write("app/after-next"), lease);
    expect(await markersOf(1)).toHaveLength(1);
  });
});
