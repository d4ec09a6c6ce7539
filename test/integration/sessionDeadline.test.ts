import { performance } from "node:perf_hooks";
import type { Etcd3 } from "etcd3";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { EtcdSession, type SessionHealth, type SessionOptions } from "../../src/etcd/index.js";
import { type Logger, silentLogger } from "../../src/logging.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { recordingLogger } from "../support/recordingLogger.js";
import { waitUntil } from "../support/waitUntil.js";

/** Spins without yielding: no timer, keepalive reply or deadline check can run meanwhile. */
function blockEventLoopUntil(reached: () => boolean): void {
  while (!reached()) {
    // busy wait
  }
}

/** Milliseconds from each acknowledgement to the next keepalive sent, polled every few ms. */
async function delaysAfterAcks(session: EtcdSession, count: number): Promise<number[]> {
  const delays: number[] = [];
  let ackedAt: number | undefined;
  let attemptsAtAck = 0;
  const acks = session.keepaliveRoundTrips$.subscribe(() => {
    ackedAt = performance.now();
    attemptsAtAck = session.keepaliveAttempts;
  });
  try {
    await waitUntil(
      `${count} keepalives sent after an acknowledgement`,
      () => {
        if (ackedAt !== undefined && session.keepaliveAttempts > attemptsAtAck) {
          delays.push(performance.now() - ackedAt);
          ackedAt = undefined;
        }
        return delays.length >= count;
      },
      20_000,
      2,
    );
  } finally {
    acks.unsubscribe();
  }
  return delays;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

describe("EtcdSession's local deadline", () => {
  let etcd: EtcdCluster;
  let client: Etcd3;
  const sessions: EtcdSession[] = [];

  beforeAll(async () => {
    etcd = await startEtcd();
    client = etcd.client();
  });

  afterEach(() => {
    for (const session of sessions.splice(0)) session.abandon();
  });

  afterAll(async () => {
    await etcd.stop();
  });

  const open = async (options: SessionOptions, log: Logger = silentLogger()) => {
    const session = await EtcdSession.open(client, options, log);
    sessions.push(session);
    return session;
  };

  test("a new session is valid, its deadline counted from when the grant was sent: TTL − margin", async () => {
    const ttlSeconds = 3;
    const marginMs = 300;
    const before = performance.now();
    const session = await open({ ttlSeconds, keepaliveIntervalMs: 1_000, marginMs });
    const after = performance.now();
    const remainingMs = session.remainingMs();
    const readAt = performance.now();
    expect(session.health).toBe("valid");
    expect(session.isValid()).toBe(true);
    // The grant was sent between `before` and `after`.
    expect(remainingMs).toBeGreaterThanOrEqual(before + ttlSeconds * 1000 - marginMs - readAt);
    expect(remainingMs).toBeLessThanOrEqual(after + ttlSeconds * 1000 - marginMs - readAt + 1);
  });

  test("the margin defaults to 10 % of the TTL, and never less than 200 ms; a given margin is kept", async () => {
    expect((await open({ ttlSeconds: 5, keepaliveIntervalMs: 1_000 })).marginMs).toBe(500);
    expect((await open({ ttlSeconds: 1, keepaliveIntervalMs: 300 })).marginMs).toBe(200);
    expect((await open({ ttlSeconds: 5, keepaliveIntervalMs: 1_000, marginMs: 123 })).marginMs).toBe(123);
  });

  test("once the deadline passes the session is not valid, even before its deadline timer has run", async () => {
    const session = await open({ ttlSeconds: 2, keepaliveIntervalMs: 600 });
    await waitUntil("an acknowledged keepalive", () => session.keepaliveAttempts > 0);
    const seen: SessionHealth[] = [];
    const sub = session.health$.subscribe((health) => seen.push(health));
    blockEventLoopUntil(() => session.remainingMs() < -5);
    expect(session.health, "the deadline timer ran: nothing was tested").toBe("valid");
    expect(session.isValid()).toBe(false);
    await waitUntil("the deadline timer to run", () => seen.includes("expiredLocally"));
    sub.unsubscribe();
  });

  test("the deadline passing turns the session expiredLocally with one warning naming the lease", async () => {
    const { logger, records } = recordingLogger();
    const session = await open({ ttlSeconds: 2, keepaliveIntervalMs: 600 }, logger);
    const seen: SessionHealth[] = [];
    const sub = session.health$.subscribe((health) => seen.push(health));
    blockEventLoopUntil(() => session.remainingMs() < -5);
    // The keepalive due meanwhile is acknowledged soon after, and makes it valid again.
    await waitUntil("expiredLocally, then valid again", () => seen.length >= 3);
    sub.unsubscribe();
    expect(seen).toEqual(["valid", "expiredLocally", "valid"]);
    const warnings = records.filter((r) => r.level === "warn");
    expect(warnings).toEqual([
      expect.objectContaining({
        message: "lease deadline passed without a keepalive acknowledgement",
        lease: session.leaseId,
      }),
    ]);
  });

  test("an abandoned or revoked session is never valid again, though its deadline has not passed", async () => {
    const abandoned = await open({ ttlSeconds: 5, keepaliveIntervalMs: 1_000 });
    abandoned.abandon();
    expect(abandoned.remainingMs()).toBeGreaterThan(0);
    expect(abandoned.health).toBe("lost");
    expect(abandoned.isValid()).toBe(false);
    const revoked = await open({ ttlSeconds: 5, keepaliveIntervalMs: 1_000 });
    await revoked.revoke();
    expect(revoked.remainingMs()).toBeGreaterThan(0);
    expect(revoked.isValid()).toBe(false);
  });

  test("keepalives go out every interval when the TTL leaves room for it", async () => {
    const session = await open({ ttlSeconds: 3, keepaliveIntervalMs: 300 });
    const delays = await delaysAfterAcks(session, 5);
    // Not sooner than the interval (a loop), nor at a third of what is left (~900 ms).
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(290);
    expect(median(delays)).toBeLessThan(700);
  });

  test("a keepalive goes out after a third of the validity left when the interval would leave less room", async () => {
    const session = await open({ ttlSeconds: 3, keepaliveIntervalMs: 5_000, marginMs: 300 });
    const health: SessionHealth[] = [];
    const sub = session.health$.subscribe((h) => health.push(h));
    const delays = await delaysAfterAcks(session, 3);
    sub.unsubscribe();
    // About (3000 − 300 − round trip) / 3 ≈ 900 ms: not the 5 s interval, nor a 50 ms loop.
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(500);
    expect(median(delays)).toBeLessThan(2_000);
    expect(health).toEqual(["valid"]);
  });
});
