import { setTimeout as sleep } from "node:timers/promises";
import type { Etcd3 } from "etcd3";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { NodeFactory, ONE_SLOT, SEED_CONFIG } from "../support/clusterNodes.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { type LogRecord, recordingLogger } from "../support/recordingLogger.js";
import { waitUntil } from "../support/waitUntil.js";

const RECONNECTING = "opening a new etcd session after a delay";
const TTL_SECONDS = 2;

/**
 * Revokes, every 25 ms, each lease etcd holds except those `spare` names: a node whose lease is
 * revoked learns it at its next keepalive and opens a new session after its reconnect delay.
 */
function revokeLeasesExcept(client: Etcd3, spare: () => readonly (string | undefined)[]): () => void {
  let stopped = false;
  void (async () => {
    while (!stopped) {
      const leases = await client.leaseClient.leaseLeases({}).catch(() => ({ leases: [] }));
      for (const { ID } of leases.leases) {
        if (stopped || spare().includes(String(ID))) continue;
        await client.leaseClient.leaseRevoke({ ID }).catch(() => undefined);
      }
      await sleep(25);
    }
  })();
  return () => {
    stopped = true;
  };
}

/**
 * The reconnect backoff (949b3d7) starts over when the node is a member again. Attacks on that
 * reset: sessions that die before the node joins must keep backing off (they do), and so should
 * a node that joins and loses its lease again and again (it did not before 892609e).
 */
describe("attack: reconnect backoff under flapping sessions", () => {
  let etcd: EtcdCluster;
  let factory: NodeFactory;
  let records: LogRecord[];
  let admin: Etcd3;
  let stopRevoking: (() => void) | undefined;

  beforeEach(async () => {
    etcd = await startEtcd();
    admin = etcd.client();
    records = [];
  });

  afterEach(async () => {
    stopRevoking?.();
    stopRevoking = undefined;
    await factory.stopAll();
    admin.close();
    await etcd.stop();
  });

  const makeFactory = (config: typeof SEED_CONFIG) => {
    const recording = recordingLogger();
    records = recording.records;
    factory = new NodeFactory({
      endpoints: etcd.endpoints,
      config,
      leaseTtlSeconds: TTL_SECONDS,
      logger: recording.logger,
    });
  };
  const attempts = () =>
    records
      .filter((r) => r.message === RECONNECTING)
      .map((r) => ({ attempt: Number(r.attempt), inMs: Number(r.inMs) }));

  // Guards the reset's place: only membership starts the backoff over. Resetting it when a session
  // opens (a plausible refactor) turns this into a constant 250-500 ms loop of lease grants: red.
  test("sessions lost before the node joins keep doubling the delay: opening a session does not reset it", async () => {
    makeFactory(ONE_SLOT);
    const [holder] = await factory.startMany(1);
    if (holder === undefined) throw new Error("no node");
    await waitUntil("the holder to be primary", () => holder.role === "primary");
    const newcomer = factory.create("newcomer");
    newcomer.start({ timeoutMs: 120_000 }).catch(() => undefined); // never a member: stopped in afterEach
    await waitUntil("the newcomer to wait for a slot", () => newcomer.role === "bootstrapping");
    stopRevoking = revokeLeasesExcept(admin, () => [holder.status.leaseId]);

    await waitUntil("five reconnects of the newcomer", () => attempts().length >= 5, 90_000);
    const seen = attempts().slice(0, 5);
    console.log(`sessions lost before joining: ${JSON.stringify(seen)}`);
    expect(
      seen.map((a) => a.attempt),
      "each reconnect counts on",
    ).toEqual([1, 2, 3, 4, 5]);
    // Steps of 500, 1000, 2000 (the TTL), 2000 ms, each jittered within its upper half.
    expect(seen[2]?.inMs).toBeGreaterThanOrEqual(1_000);
    expect(seen[4]?.inMs).toBeGreaterThanOrEqual(1_000);
    expect(newcomer.id).toBeUndefined();
    expect(holder.role).toBe("primary");
  }, 150_000);

  // Guards 892609e: before it, the reset at membership let a node whose lease was lost right after
  // every join loop at a constant rate (measured: 24 lease grants, ID claims and member keys in
  // 10 s, every reconnect "attempt 1", 250-500 ms). The backoff now starts over only after a
  // membership that lasted a TTL; resetting it at every join again turns this red.
  test("a node that loses its lease again and again right after joining backs off further each time", async () => {
    makeFactory(SEED_CONFIG);
    const node = factory.create("flapper");
    await node.start({ timeoutMs: 30_000 });
    stopRevoking = revokeLeasesExcept(admin, () => []);
    await waitUntil("six reconnects", () => attempts().length >= 6, 60_000);
    const seen = attempts().slice(0, 6);
    console.log(`joined and lost again and again: ${JSON.stringify(seen)}`);
    expect(
      Math.max(...seen.map((a) => a.attempt)),
      "the reconnect delay grows while no membership lasts",
    ).toBeGreaterThanOrEqual(4);
  }, 90_000);
});
