import { performance } from "node:perf_hooks";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { silentLogger } from "../../src/logging.js";
import { type ClusterNode, createClusterNode } from "../../src/runtime/clusterNode.js";
import { crashNode } from "../../src/runtime/testing.js";
import { createServer, type RunningServer } from "../../src/server/httpServer.js";
import { KvStore } from "../../src/server/kvStore.js";
import { createMetrics, type ServerMetrics } from "../../src/server/metrics.js";
import type { Readiness } from "../../src/server/readiness.js";
import { NodeFactory, ONE_GROUPING } from "../support/clusterNodes.js";
import { proxiedEtcdPerTest } from "../support/proxiedEtcd.js";
import { waitUntil } from "../support/waitUntil.js";

const TTL_SECONDS = 2;
/** A node's span and the test's view of the same two moments differ by event delivery only. */
const AGREEMENT_SECONDS = 0.5;

interface Served {
  node: ClusterNode;
  store: KvStore;
  metrics: ServerMetrics;
  server: RunningServer;
}

describe("readiness of the example server, with the node's link to etcd cut", () => {
  const env = proxiedEtcdPerTest();
  let served: Served[];

  beforeEach(() => {
    served = [];
  });

  afterEach(async () => {
    env.proxy.setMode("pass");
    for (const s of served) {
      await s.server.close();
      s.store.close();
      s.metrics.close();
    }
    await Promise.all(served.map((s) => s.node.stop().catch(() => crashNode(s.node))));
  });

  async function serve(name: string, endpoint: string): Promise<Served> {
    const factory = new NodeFactory({
      endpoints: [endpoint],
      config: ONE_GROUPING,
      leaseTtlSeconds: TTL_SECONDS,
    });
    const node = createClusterNode({
      cluster: factory.layout,
      settings: factory.settings(name),
      logger: silentLogger(),
    });
    const metrics = createMetrics(node);
    const store = new KvStore(node);
    const server = await createServer({ node, store, metrics, port: 0 });
    const entry = { node, store, metrics, server };
    served.push(entry);
    return entry;
  }

  const get = (s: Served, path: string) => fetch(`${s.server.url}${path}`);
  const readyz = async (s: Served) => {
    const res = await get(s, "/readyz");
    return { status: res.status, body: (await res.json()) as Readiness };
  };

  test("/readyz is 503 while the node is suspended and /healthz stays 200; reads fail at their deadline; ready again once the link is back", async () => {
    const cut = await serve("cut-off", env.proxy.endpoint);
    const before = await readyz(cut);
    expect(before.status, "not ready before it has joined").toBe(503);
    expect(before.body).toMatchObject({ ready: false, id: null });

    await cut.node.start();
    await waitUntil("the node behind the proxy to be primary", () => cut.node.role === "primary");
    const other = await serve("other", env.etcd.endpoints[0] ?? "");
    await other.node.start();
    await waitUntil("the other node to be backup", () => other.node.role === "backup");
    expect(await readyz(cut)).toEqual({
      status: 200,
      body: { ready: true, role: "primary", seat: "primary", id: 0, group: 0, grouping: 0, node: "cut-off" },
    });
    expect((await readyz(other)).body).toMatchObject({ ready: true, role: "backup", seat: "backup", id: 1 });
    expect((await fetch(`${cut.server.url}/kv/k`, { method: "PUT", body: "v1" })).status).toBe(200);

    let suspendedAt: number | undefined;
    let newPrimarySeenAt: number | undefined;
    const subscriptions = [
      cut.node.role$.subscribe((role) => {
        if (role === "suspended") suspendedAt ??= performance.now();
      }),
      cut.node.leaders$.subscribe((leaders) => {
        if (suspendedAt !== undefined && leaders?.primary && leaders.primary.record?.id !== 0)
          newPrimarySeenAt ??= performance.now();
      }),
    ];
    try {
      env.proxy.setMode("blackhole");
      await waitUntil("the cut-off node to suspend", () => suspendedAt !== undefined);
      const suspended = await readyz(cut);
      expect(suspended.status).toBe(503);
      expect(suspended.body).toMatchObject({ ready: false, role: "suspended", id: 0 });
      const health = await get(cut, "/healthz");
      expect(health.status, "the process is up and the node not stopped").toBe(200);
      const read = await get(cut, "/kv/k");
      expect(read.status, "a read answers at its deadline, not never").toBe(503);
      expect(await read.json()).toMatchObject({ error: "etcd_unavailable", reason: "etcd-error" });

      await waitUntil(
        "the other node to take over once the lease expired",
        () => other.node.role === "primary",
      );
      expect((await (await get(other, "/kv/k")).json()) as object).toMatchObject({ value: "v1" });
      env.proxy.setMode("reset");
      env.proxy.setMode("pass");
      await waitUntil("the cut-off node to be ready again", async () => (await readyz(cut)).status === 200);
      const back = await readyz(cut);
      expect(back.body.seat, "it came back as a follower or the backup").not.toBe("primary");

      // Its fault began when its own lease passed the local deadline, not when a key went: it never saw one go.
      const seenAt = await waitUntil("the cut-off node to see the new primary", () => newPrimarySeenAt);
      const text = await cut.metrics.text();
      const line = (name: string) =>
        Number(
          text
            .split("\n")
            .find((l) => l.startsWith(`${name} `))
            ?.split(" ")[1],
        );
      expect(line("rdeebee_fault_to_new_primary_seconds_count")).toBe(1);
      const span = (seenAt - (suspendedAt ?? seenAt)) / 1000;
      const recorded = line("rdeebee_fault_to_new_primary_seconds_sum");
      expect(
        Math.abs(recorded - span),
        `recorded ${recorded} s, suspended to new primary ${span} s`,
      ).toBeLessThan(AGREEMENT_SECONDS);
    } finally {
      for (const s of subscriptions) s.unsubscribe();
    }
  });
});
