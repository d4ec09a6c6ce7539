import { performance } from "node:perf_hooks";
import type { Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type ConnectOptions, connectEtcd, EtcdSession, type SessionHealth } from "../../src/etcd/index.js";
import { silentLogger } from "../../src/logging.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { proxiedEtcdPerTest } from "../support/proxiedEtcd.js";
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

describe("EtcdSession's default call deadline", () => {
  const env = proxiedEtcdPerTest();
  /** No default deadline and no gRPC keepalive: only the session's own deadline can end a call. */
  const BARE: ConnectOptions = { defaultCallOptions: {}, grpcOptions: { "grpc.keepalive_time_ms": -1 } };
  /** TTL 2 s, default margin 200 ms: a grant sent later than TTL − margin would be born expired. */
  const DEFAULT_DEADLINE_MS = 2_000 - 200;
  /** Date-based deadlines and performance.now() tick apart by up to a millisecond or so. */
  const CLOCK_SLACK_MS = 20;

  test("without a call timeout, a grant over a silent link fails at TTL − margin, not sooner and not never", async () => {
    const client = env.track(connectEtcd([env.proxy.endpoint], BARE));
    env.proxy.setMode("blackhole");
    const started = performance.now();
    const grant = EtcdSession.open(client, { ttlSeconds: 2, keepaliveIntervalMs: 500 }, silentLogger());
    await expect(grant).rejects.toThrow(/DEADLINE_EXCEEDED|deadline exceeded/i);
    expect(performance.now() - started).toBeGreaterThanOrEqual(DEFAULT_DEADLINE_MS - CLOCK_SLACK_MS);
  }, 60_000);

  test("without a call timeout, a revoke over a silent link fails at TTL − margin, not sooner and not never", async () => {
    const client = env.track(connectEtcd([env.proxy.endpoint], BARE));
    const session = await EtcdSession.open(
      client,
      { ttlSeconds: 2, keepaliveIntervalMs: 500 },
      silentLogger(),
    );
    env.proxy.setMode("blackhole");
    const started = performance.now();
    await expect(session.revoke()).rejects.toThrow(/DEADLINE_EXCEEDED|deadline exceeded/i);
    expect(performance.now() - started).toBeGreaterThanOrEqual(DEFAULT_DEADLINE_MS - CLOCK_SLACK_MS);
    expect(session.health).toBe("lost");
  }, 60_000);
});

describe("EtcdSession's keepalive retries", () => {
  const env = proxiedEtcdPerTest();

  test("each failed keepalive is logged with the lease, the failures in a row and a jittered backoff that starts at 50–100 ms and grows up to the interval", async () => {
    const { logger, records } = recordingLogger();
    const client = env.track(connectEtcd([env.proxy.endpoint]));
    const interval = 400;
    const session = await EtcdSession.open(client, { ttlSeconds: 10, keepaliveIntervalMs: interval }, logger);
    try {
      await waitUntil("a first acknowledged keepalive", () => session.keepaliveAttempts > 1);
      env.proxy.setMode("reset");
      const retries = () => records.filter((r) => r.message === "keepalive failed, retrying");
      await waitUntil("six failed keepalives", () => retries().length >= 6, 60_000);
      const six = retries().slice(0, 6);
      for (const r of six) {
        expect(r).toMatchObject({ level: "debug", lease: session.leaseId });
        expect(typeof r.error === "string" && r.error !== "").toBe(true);
      }
      expect(six.map((r) => r.failures)).toEqual([1, 2, 3, 4, 5, 6]);
      const delays = six.map((r) => r.retryInMs as number);
      // Full jitter in [50, min(interval, 100 · 2^(failures − 1))]: the first at most 100 ms.
      expect(delays[0]).toBeGreaterThanOrEqual(50);
      expect(delays[0]).toBeLessThanOrEqual(100);
      expect(delays[1]).toBeLessThanOrEqual(200);
      for (const delay of delays) expect(delay).toBeLessThanOrEqual(interval);
      // Uniform draws: six all at the 50 ms floor would mean no room to back off at all.
      expect(delays.some((delay) => delay > 50)).toBe(true);
    } finally {
      session.abandon();
    }
  }, 120_000);
});
