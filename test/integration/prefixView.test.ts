import type { Etcd3 } from "etcd3";
import { Etcd3 as Client } from "etcd3";
import type { Subscription } from "rxjs";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { type PrefixSnapshot, watchPrefix } from "../../src/etcd/index.js";
import { silentLogger } from "../../src/logging.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { recordingLogger } from "../support/recordingLogger.js";
import { TcpProxy } from "../support/tcpProxy.js";
import { waitUntil } from "../support/waitUntil.js";

const contents = (s: PrefixSnapshot | undefined) =>
  Object.fromEntries([...(s?.entries.values() ?? [])].map((e) => [e.key, e.value]));

describe("watchPrefix: a live view of a prefix that never loses a change", () => {
  let etcd: EtcdCluster;
  let writer: Etcd3;
  let proxy: TcpProxy;
  let viewer: Etcd3;
  let subscription: Subscription | undefined;
  const snapshots: PrefixSnapshot[] = [];

  beforeEach(async () => {
    etcd = await startEtcd();
    writer = etcd.client();
    proxy = await TcpProxy.forEndpoint(etcd.endpoints[0] ?? "");
    viewer = new Client({ hosts: [proxy.endpoint], dialTimeout: 1000 });
    snapshots.length = 0;
  });

  afterEach(async () => {
    subscription?.unsubscribe();
    viewer.close();
    await proxy.close();
    await etcd.stop();
  });

  const latest = () => snapshots.at(-1);
  const view = (logger = silentLogger()) => {
    subscription = watchPrefix(viewer, "p/", logger).subscribe((s) => snapshots.push(s));
  };

  test("lists existing keys, then follows puts and deletes in revision order, ignoring other prefixes", async () => {
    await writer.put("p/a").value("1");
    await writer.put("q/a").value("other prefix");
    view();
    await waitUntil("the initial list", () => snapshots.length > 0);
    expect(contents(latest())).toEqual({ "p/a": "1" });

    await writer.put("p/b").value("2");
    await writer.put("p/a").value("3");
    await writer.delete().key("p/b");
    await waitUntil("the changes", () => contents(latest())["p/a"] === "3" && !("p/b" in contents(latest())));
    const revisions = snapshots.map((s) => s.revision);
    expect([...revisions].sort((a, b) => a - b)).toEqual(revisions);
  });

  test("every event of a multi-key transaction (one revision) is applied", async () => {
    await writer.put("p/old").value("1");
    view();
    await waitUntil("the initial list", () => "p/old" in contents(latest()));
    await writer
      .if("p/old", "Create", ">", 0)
      .then(writer.put("p/new").value("2"), writer.delete().key("p/old"), writer.put("p/other").value("3"))
      .commit();
    await waitUntil("the transaction", () => "p/new" in contents(latest()));
    expect(contents(latest())).toEqual({ "p/new": "2", "p/other": "3" });
  });

  test("changes made while the connection is down arrive after it comes back", async () => {
    view();
    await waitUntil("the initial list", () => snapshots.length > 0);
    proxy.setMode("reset");
    for (let i = 0; i < 20; i++) await writer.put(`p/${i}`).value(String(i));
    await writer.delete().key("p/3");
    proxy.setMode("pass");
    await waitUntil("all 19 keys", () => Object.keys(contents(latest())).length === 19, 20_000);
    expect(contents(latest())["p/19"]).toBe("19");
    expect(contents(latest())["p/3"]).toBeUndefined();
  });

  test("a watch whose revision was compacted while disconnected is re-listed, and no change is lost", async () => {
    await writer.put("p/gone").value("x");
    const { logger, records } = recordingLogger();
    view(logger);
    await waitUntil("the initial list", () => "p/gone" in contents(latest()));
    proxy.setMode("reset");
    await writer.delete().key("p/gone");
    for (let i = 0; i < 10; i++) await writer.put(`p/${i}`).value(String(i));
    await writer.put("p/0").value("rewritten");
    const current = await writer.get("p/0").exec();
    await writer.kv.compact({ revision: current.header.revision, physical: true });
    proxy.setMode("pass");

    await waitUntil(
      "the view to match etcd",
      () => contents(latest())["p/0"] === "rewritten" && Object.keys(contents(latest())).length === 10,
      20_000,
    );
    expect(contents(latest())).not.toHaveProperty("p/gone");
    expect(contents(latest())).toEqual(await writer.getAll().prefix("p/").strings());
    expect(records.some((r) => r.message === "watch cancelled by etcd, re-listing")).toBe(true);
  });
});
