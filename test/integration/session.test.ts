import { setTimeout as sleep } from "node:timers/promises";
import type { Etcd3 } from "etcd3";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { type ConnectOptions, connectEtcd, EtcdSession, type SessionOptions } from "../../src/etcd/index.js";
import { silentLogger } from "../../src/logging.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { TcpProxy } from "../support/tcpProxy.js";
import { waitUntil } from "../support/waitUntil.js";

const TTL_SECONDS = 2;
const INTERVAL_MS = Math.round((TTL_SECONDS * 1000) / 3);
const DEFAULT_MARGIN_MS = 200; // max(200 ms, 10% of a 2 s TTL)
/** No default deadline and no gRPC keepalive: only the session's own deadlines can end a call. */
const BARE: ConnectOptions = { defaultCallOptions: {}, grpcOptions: { "grpc.keepalive_time_ms": -1 } };

describe("EtcdSession", () => {
  let etcd: EtcdCluster;
  let proxy: TcpProxy;
  const clients: Etcd3[] = [];
  const sessions: EtcdSession[] = [];

  beforeEach(async () => {
    etcd = await startEtcd();
    proxy = await TcpProxy.forEndpoint(etcd.endpoints[0] ?? "");
  });

  afterEach(async () => {
    for (const session of sessions.splice(0)) session.abandon();
    for (const client of clients.splice(0)) client.close();
    await proxy.close();
    await etcd.stop();
  });

  const connect = (endpoint: string, options: ConnectOptions = {}) => {
    const client = connectEtcd([endpoint], options);
    clients.push(client);
    return client;
  };

  const open = async (client: Etcd3, options: Partial<SessionOptions> = {}) => {
    const session = await EtcdSession.open(
      client,
      { ttlSeconds: TTL_SECONDS, keepaliveIntervalMs: INTERVAL_MS, ...options },
      silentLogger(),
    );
    sessions.push(session);
    return session;
  };

  test("with etcd down, keepalives back off before and after the local deadline instead of looping", async () => {
    const session = await open(connect(etcd.endpoints[0] ?? ""));
    await waitUntil("a first acknowledged keepalive", () => session.keepaliveAttempts > 0);
    await etcd.members[0]?.stop();
    const before = session.keepaliveAttempts;
    await sleep(8_000);
    const attempts = session.keepaliveAttempts - before;
    expect(session.health).toBe("expiredLocally");
    // Full jitter between 50 ms and the 667 ms interval averages ~360 ms: about 25 attempts in 8 s.
    expect(attempts).toBeGreaterThan(5);
    expect(attempts).toBeLessThan(40);
  });

  test("the deadline counts from when an acknowledged keepalive was sent, minus the margin", async () => {
    const delayMs = 200;
    proxy.setMode("delay", { delayMs });
    const session = await open(connect(proxy.endpoint));
    expect(session.marginMs).toBe(DEFAULT_MARGIN_MS);
    const samples: { roundTripMs: number; remainingMs: number }[] = [];
    const sub = session.keepaliveRoundTrips$.subscribe((roundTripMs) =>
      samples.push({ roundTripMs, remainingMs: session.remainingMs() }),
    );
    try {
      await waitUntil("three acknowledged keepalives", () => samples.length >= 3, 20_000);
    } finally {
      sub.unsubscribe();
    }
    for (const { roundTripMs, remainingMs } of samples) {
      // Each chunk is held 200 ms each way, so every acknowledgement came at least 400 ms after it was sent.
      expect(roundTripMs).toBeGreaterThanOrEqual(2 * delayMs);
      expect(remainingMs).toBeLessThanOrEqual(TTL_SECONDS * 1000 - DEFAULT_MARGIN_MS - 2 * delayMs + 10);
      expect(Math.abs(remainingMs - (TTL_SECONDS * 1000 - DEFAULT_MARGIN_MS - roundTripMs))).toBeLessThan(10);
    }
  });

  test("a lease grant over a silent link fails at its deadline", async () => {
    proxy.setMode("blackhole");
    await expect(open(connect(proxy.endpoint, BARE), { callTimeoutMs: 1_000 })).rejects.toThrow();
  });

  test("over a silent link, each keepalive fails at its deadline and the next one is tried", async () => {
    const session = await open(connect(proxy.endpoint, BARE));
    await waitUntil("a first acknowledged keepalive", () => session.keepaliveAttempts > 0);
    proxy.setMode("blackhole");
    const before = session.keepaliveAttempts;
    await waitUntil("three more keepalive attempts", () => session.keepaliveAttempts >= before + 3, 30_000);
    expect(session.health).toBe("expiredLocally");
  });

  test("revoking over a silent link fails at its deadline", async () => {
    const session = await open(connect(proxy.endpoint, BARE), { callTimeoutMs: 1_000 });
    proxy.setMode("blackhole");
    await expect(session.revoke()).rejects.toThrow();
    expect(session.health).toBe("lost");
  });
});
