import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { ClusterLayout } from "../../src/config/index.js";
import { createClusterNode } from "../../src/runtime/clusterNode.js";
import { crashNode } from "../../src/runtime/testing.js";
import { SEED_CONFIG } from "../support/clusterNodes.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { recordingLogger } from "../support/recordingLogger.js";
import { waitUntil } from "../support/waitUntil.js";

const RECONNECTING = "opening a new etcd session after a delay";

describe("a node that cannot open a session backs off, and starts over once it has been a member for a TTL", () => {
  let etcd: EtcdCluster;

  beforeEach(async () => {
    etcd = await startEtcd();
  });

  afterEach(async () => {
    await etcd.stop();
  });

  test("the delays between attempts grow up to a TTL while etcd is down, and the first after a membership that lasted a TTL is short again", async () => {
    const member = etcd.members[0];
    if (member === undefined) throw new Error("no etcd member");
    const { logger, records } = recordingLogger();
    const ttlSeconds = 4;
    const node = createClusterNode({
      cluster: new ClusterLayout(SEED_CONFIG),
      settings: {
        leaseTtlSeconds: ttlSeconds,
        keepaliveIntervalMs: 1_000,
        etcdEndpoints: etcd.endpoints,
        nodeName: "patient",
        address: "127.0.0.1:1",
      },
      logger,
    });
    try {
      await member.stop();
      void node.start({ timeoutMs: 120_000 }).catch(() => undefined);
      const delays = () => records.filter((r) => r.message === RECONNECTING).map((r) => Number(r.inMs));
      await waitUntil("five attempts", () => delays().length >= 5, 60_000);
      const [first, second, third, fourth, fifth] = delays();
      // Each step doubles (500, 1000, 2000, then the TTL's 4000 ms) and is jittered within its upper
      // half, so no delay is shorter than the one before until the cap; from there each is in its upper half.
      expect(first).toBeLessThanOrEqual(500);
      expect(second).toBeGreaterThanOrEqual(first ?? Number.NaN);
      expect(third).toBeGreaterThanOrEqual(second ?? Number.NaN);
      expect(fourth).toBeGreaterThanOrEqual(third ?? Number.NaN);
      for (const capped of [fourth, fifth]) {
        expect(capped).toBeGreaterThanOrEqual(ttlSeconds * 500);
        expect(capped).toBeLessThanOrEqual(ttlSeconds * 1000);
      }

      await member.restart();
      await waitUntil("the node to be a member", () => node.id !== undefined, 60_000);
      // A membership that lasts a TTL starts the backoff over.
      await sleep(ttlSeconds * 1000 + 500);
      const before = delays().length;
      // Its lease revoked from outside: the node learns the lease is gone and opens a new session.
      const client = etcd.client();
      await waitUntil("the lease to be revoked", () =>
        client.leaseClient
          .leaseRevoke({ ID: node.status.leaseId ?? "0" })
          .then(() => true)
          .catch(() => false),
      );
      client.close();
      await waitUntil("an attempt after the membership was lost", () => delays().length > before, 60_000);
      expect(delays()[before]).toBeLessThanOrEqual(500);
    } finally {
      crashNode(node);
      await sleep(10);
    }
  }, 180_000);
});
