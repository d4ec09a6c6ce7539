import { afterEach, describe, expect, test } from "vitest";
import { type EtcdCluster, startEtcd, withDeadline } from "../support/etcdCluster.js";

let etcd: EtcdCluster | undefined;

afterEach(async () => {
  await etcd?.stop();
  etcd = undefined;
});

const SHORT_DEADLINE_MS = 500;

describe("etcd harness: the fault suite's nemeses", () => {
  test("compact() compacts to the current revision, or to a lower one it is given", async () => {
    etcd = await startEtcd({ name: "compact" });
    const client = etcd.client({ defaultCallOptions: withDeadline });
    const first = Number((await client.put("k").value("1").exec()).header.revision);
    await client.put("k").value("2").exec();
    const third = Number((await client.put("k").value("3").exec()).header.revision);

    expect(await etcd.compact(first + 1)).toBe(first + 1);
    await expect(client.get("k").revision(String(first)).string()).rejects.toThrow(/compacted/);
    expect(
      await client
        .get("k")
        .revision(String(first + 1))
        .string(),
    ).toBe("2");

    expect(await etcd.compact()).toBe(third);
    await expect(
      client
        .get("k")
        .revision(String(first + 1))
        .string(),
    ).rejects.toThrow(/compacted/);
    expect(await client.get("k").string()).toBe("3");
  });

  test("pause() stops a member answering until resume()", async () => {
    const cluster = await startEtcd({ name: "pause" });
    etcd = cluster;
    const member = cluster.members[0];
    if (!member) throw new Error("no member");
    // etcd3's circuit breaker stays open after a timeout, so every read gets a client of its own.
    const get = () =>
      cluster
        .client()
        .get("k")
        .options({ deadline: new Date(Date.now() + SHORT_DEADLINE_MS) })
        .string();
    await get();
    member.pause();
    expect(member.paused).toBe(true);
    await expect(get()).rejects.toThrow();
    member.resume();
    expect(member.paused).toBe(false);
    expect(await get()).toBeNull();
  });

  test("stopAll() and startAll() bring every member back on its data dir", async () => {
    etcd = await startEtcd({ members: 3, name: "restart-all" });
    const client = etcd.client({ defaultCallOptions: withDeadline });
    await client.put("kept").value("across a full restart").exec();
    await etcd.stopAll();
    expect(etcd.members.map((m) => m.running)).toEqual([false, false, false]);
    await etcd.startAll();
    expect(etcd.members.map((m) => m.running)).toEqual([true, true, true]);
    expect(await client.get("kept").string()).toBe("across a full restart");
  });
});
