import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, expect, test } from "vitest";
import { type EtcdCluster, startEtcd, withDeadline } from "../support/etcdCluster.js";
import { TcpProxy } from "../support/tcpProxy.js";
import { Observer } from "./observer.js";

const KEYS = 50;

let etcd: EtcdCluster;
let proxy: TcpProxy;
let observer: Observer | undefined;
let dir: string;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "rdeebee-observer-"));
  etcd = await startEtcd({ name: "observer" });
  const first = etcd.endpoints[0];
  if (!first) throw new Error("no etcd endpoint");
  proxy = await TcpProxy.forEndpoint(first);
});

afterEach(async () => {
  await observer?.stop();
  observer = undefined;
  await proxy.close();
  await etcd.stop();
  rmSync(dir, { recursive: true, force: true });
});

test("the observer keeps every event when its watch is cut right after it is created, before the catch-up arrives", async () => {
  const direct = etcd.client({ defaultCallOptions: withDeadline });
  for (let i = 0; i < KEYS; i++) await direct.put(`k${i}`).value(String(i)).exec();
  const viaProxy = etcd.client({ hosts: proxy.endpoint, defaultCallOptions: withDeadline });
  observer = await Observer.start(viaProxy, join(dir, "observer.jsonl"));
  // etcd sends a new watch's past events from its next sync, up to 100 ms after the creation reply.
  proxy.setMode("reset");
  proxy.setMode("pass");
  await direct.put("after").value("the cut").exec();
  await observer.catchUp(direct);
  expect(await observer.verify(direct)).toEqual([]);
  expect(observer.events.filter((e) => e.key.startsWith("k"))).toHaveLength(KEYS);
});

test("verify() reports an event the observer did not keep", async () => {
  const direct = etcd.client({ defaultCallOptions: withDeadline });
  observer = await Observer.start(direct, join(dir, "observer.jsonl"));
  await direct.put("a").value("1").exec();
  await direct.put("b").value("2").exec();
  await observer.catchUp(direct);
  expect(await observer.verify(direct)).toEqual([]);
  observer.events.splice(
    observer.events.findIndex((e) => e.key === "a"),
    1,
  );
  expect(await observer.verify(direct)).toEqual([expect.stringContaining("a: etcd has mod revision")]);
});
