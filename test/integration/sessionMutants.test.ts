import type { Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { EtcdSession, type SessionHealth } from "../../src/etcd/index.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { recordingLogger } from "../support/recordingLogger.js";
import { waitUntil } from "../support/waitUntil.js";

/** Long enough that the local deadline cannot pass while the test runs: only etcd's answer ends the session. */
const TTL_SECONDS = 120;

describe("EtcdSession when etcd says its lease is gone", () => {
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

  test("a lease revoked behind the session's back makes it lost at its next keepalive, long before its deadline, with one warning naming the lease", async () => {
    const { logger, records } = recordingLogger();
    const session = await EtcdSession.open(
      client,
      { ttlSeconds: TTL_SECONDS, keepaliveIntervalMs: 100 },
      logger,
    );
    const seen: SessionHealth[] = [];
    let completed = false;
    session.health$.subscribe({ next: (health) => seen.push(health), complete: () => (completed = true) });
    try {
      await waitUntil("a first acknowledged keepalive", () => session.keepaliveAttempts > 1);
      await client.leaseClient.leaseRevoke({ ID: session.leaseId });
      await waitUntil("the session to be lost", () => session.health === "lost", 60_000);
      expect(session.isValid()).toBe(false);
      expect(session.remainingMs()).toBeGreaterThan(0);
      expect(seen).toEqual(["valid", "lost"]);
      expect(completed).toBe(true);
      expect(records.filter((r) => r.level === "warn")).toEqual([
        expect.objectContaining({ message: "lease is gone in etcd", lease: session.leaseId }),
      ]);
      // Lost is final: no keepalive goes out any more.
      const attempts = session.keepaliveAttempts;
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(session.keepaliveAttempts).toBe(attempts);
    } finally {
      session.abandon();
    }
  }, 120_000);
});
