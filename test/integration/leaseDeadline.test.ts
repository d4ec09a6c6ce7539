import { performance } from "node:perf_hooks";
import type { Etcd3 } from "etcd3";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { ClusterLayout } from "../../src/config/index.js";
import { FenceLostError } from "../../src/etcd/index.js";
import { silentLogger } from "../../src/logging.js";
import { type ClusterNode, createClusterNode } from "../../src/runtime/clusterNode.js";
import { crashNode } from "../../src/runtime/testing.js";
import {
  type NodeFactory,
  ONE_GROUPING,
  startEtcdWithNodes,
  stopEtcdWithNodes,
} from "../support/clusterNodes.js";
import type { EtcdCluster } from "../support/etcdCluster.js";
import { TcpProxy } from "../support/tcpProxy.js";
import { waitUntil } from "../support/waitUntil.js";

/** Its 300 ms margin leaves room for a loaded event loop between the deadline and the step-down. */
const TTL_SECONDS = 3;

describe("local lease deadline", () => {
  let etcd: EtcdCluster;
  let client: Etcd3;
  let proxy: TcpProxy;
  let factory: NodeFactory;
  let cutOff: ClusterNode | undefined;

  beforeEach(async () => {
    ({ etcd, client, factory } = await startEtcdWithNodes({
      config: ONE_GROUPING,
      leaseTtlSeconds: TTL_SECONDS,
    }));
    proxy = await TcpProxy.forEndpoint(etcd.endpoints[0] ?? "");
  });

  afterEach(async () => {
    await cutOff?.stop().catch(() => crashNode(cutOff));
    cutOff = undefined;
    await proxy.close();
    await stopEtcdWithNodes({ etcd, factory });
  });

  test("a primary whose keepalives are cut steps down before etcd expires its lease, then rejoins", async () => {
    const layout = new ClusterLayout(ONE_GROUPING);
    const settings = { ...factory.settings("behind-proxy"), etcdEndpoints: [proxy.endpoint] };
    cutOff = createClusterNode({ cluster: layout, settings, logger: silentLogger() });
    await cutOff.start();
    await waitUntil("the first node to be primary", () => cutOff?.role === "primary");
    const others = await factory.startMany(2);
    await waitUntil("a backup", () => others.some((n) => n.role === "backup"));

    const memberKey = layout.keys.memberKey(0, cutOff.id ?? -1);
    // One clock for every event: the send time of each acknowledged keepalive (etcd renewed the
    // lease after that, so it cannot expire it before send time + TTL), the step-down, the deletion.
    let lastAckedSentAt: number | undefined;
    let suspendedAt: number | undefined;
    let expiredAt: number | undefined;
    const acks = cutOff.keepaliveRoundTrips$.subscribe((roundTripMs) => {
      lastAckedSentAt = performance.now() - roundTripMs;
    });
    const roles = cutOff.role$.subscribe((role) => {
      if (role === "suspended" && suspendedAt === undefined) suspendedAt = performance.now();
    });
    const watcher = await client.watch().key(memberKey).create();
    watcher.on("delete", () => {
      expiredAt ??= performance.now();
    });
    await waitUntil("an acknowledged keepalive", () => lastAckedSentAt !== undefined);

    proxy.setMode("blackhole");
    await waitUntil(
      "the node to step down and etcd to expire its lease, in either order",
      () => suspendedAt !== undefined && expiredAt !== undefined,
      TTL_SECONDS * 10_000,
    );
    acks.unsubscribe();
    roles.unsubscribe();
    await watcher.cancel();

    const earliestExpiry = (lastAckedSentAt ?? 0) + TTL_SECONDS * 1000;
    expect(expiredAt, "etcd expired the lease before it could have").toBeGreaterThanOrEqual(earliestExpiry);
    expect(suspendedAt, "the node stepped down only once etcd could expire its lease").toBeLessThan(
      earliestExpiry,
    );
    await waitUntil("the backup to be promoted", () => others.some((n) => n.role === "primary"));

    proxy.setMode("reset");
    proxy.setMode("pass");
    await waitUntil(
      "the cut-off node to rejoin with a new session",
      () =>
        cutOff?.status.id !== undefined &&
        cutOff.role !== "suspended" &&
        cutOff.role !== "connecting" &&
        cutOff.role !== "bootstrapping",
      20_000,
    );
    expect(cutOff.role).not.toBe("primary");
  });

  test("a primary whose etcd link goes silent mid-write gets an error for the write, never a hang or a refusal, and steps down", async () => {
    const layout = new ClusterLayout(ONE_GROUPING);
    const settings = { ...factory.settings("silent-link"), etcdEndpoints: [proxy.endpoint] };
    cutOff = createClusterNode({ cluster: layout, settings, logger: silentLogger() });
    await cutOff.start();
    await waitUntil("the node to be primary", () => cutOff?.role === "primary");

    proxy.setMode("blackhole");
    const failure = await cutOff
      .fencedTxn((c) => [c.put("app/silent").value("v")])
      .then(
        () => undefined,
        (err: unknown) => err,
      );
    expect(failure, "the write succeeded over a silent link").toBeInstanceOf(Error);
    // Over a silent link nothing can be known: the write is not reported as refused by the fence.
    expect(failure).not.toBeInstanceOf(FenceLostError);
    await waitUntil("the node to step down", () => cutOff?.role !== "primary", TTL_SECONDS * 10_000);
  });
});
