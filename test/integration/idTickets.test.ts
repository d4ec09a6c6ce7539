import type { Etcd3 } from "etcd3";
import { describe, expect, test } from "vitest";
import { scrape, total } from "../../bench/scale/etcdMetrics.js";
import { ClusterLayout } from "../../src/config/index.js";
import { ClusterStore, connectEtcd } from "../../src/etcd/index.js";
import { silentLogger } from "../../src/logging.js";
import { SEED_CONFIG } from "../support/clusterNodes.js";
import { proxiedEtcdPerTest } from "../support/proxiedEtcd.js";

/** 200 slots: room for every racer and for the tickets lost replies burn. */
const LAYOUT = new ClusterLayout({ ...SEED_CONFIG, groups: 20, group_size: 10, reads: 5 });
const KEYS = LAYOUT.keys;
const RACERS = 100;
const CLIENTS = 4;
const CALL_TIMEOUT_MS = 3_000;

describe("fresh IDs by ticket, many allocations at once", () => {
  const env = proxiedEtcdPerTest();
  const grantLeases = (n: number) =>
    Promise.all(
      Array.from({ length: n }, async () =>
        String(await env.direct.lease(60, { autoKeepAlive: false }).grant()),
      ),
    );
  /** Member keys in etcd: lease → the IDs whose member key it holds. */
  const idsByLease = async () => {
    const byLease = new Map<string, number[]>();
    for (const kv of (await env.direct.getAll().prefix(KEYS.allMembersPrefix).exec()).kvs) {
      const id = Number(kv.key.toString().split("/").pop());
      byLease.set(kv.lease, [...(byLease.get(kv.lease) ?? []), id]);
    }
    return byLease;
  };
  /** Transactions and puts etcd has handled so far. */
  const writesHandled = async () => {
    const s = await scrape(env.etcd.endpoints[0] ?? "");
    return (
      total(s, "grpc_server_handled_total", { grpc_method: "Txn" }) +
      total(s, "grpc_server_handled_total", { grpc_method: "Put" })
    );
  };
  const race = async (clients: Etcd3[], leases: string[]) =>
    Promise.allSettled(
      leases.map((lease, i) => {
        const client = clients[i % clients.length] as Etcd3;
        const store = new ClusterStore(client, LAYOUT, silentLogger(), { callTimeoutMs: CALL_TIMEOUT_MS });
        return store.allocateFreshId({ name: `racer-${i}`, address: "127.0.0.1:1" }, lease);
      }),
    );

  test(`${RACERS} allocations at once: unique IDs, one member key per lease, no more than 2 writes each`, async () => {
    const clients = Array.from({ length: CLIENTS }, () => env.track(connectEtcd(env.etcd.endpoints)));
    const leases = await grantLeases(RACERS);
    const before = await writesHandled();
    const results = await race(clients, leases);
    const writes = (await writesHandled()) - before;

    const ids = results.map((r) =>
      r.status === "fulfilled" && r.value.kind === "allocated" ? r.value.id : -1,
    );
    expect(ids.filter((id) => id < 0)).toEqual([]);
    expect(new Set(ids).size).toBe(RACERS);
    const held = await idsByLease();
    for (const [i, lease] of leases.entries()) expect(held.get(lease)).toEqual([ids[i]]);
    // A ticket and a claim each: the tickets are dense, so no slot is ever found taken.
    expect(writes / RACERS).toBeLessThanOrEqual(2);
    expect([...ids].sort((a, b) => a - b)).toEqual(Array.from({ length: RACERS }, (_, i) => i));
  });

  test("racing allocations and failover claims of advertised slots never give one ID twice", async () => {
    const clients = Array.from({ length: CLIENTS }, () => env.track(connectEtcd(env.etcd.endpoints)));
    // Slots 0..29 handed out before (by the counter of old: its version is at least its value),
    // every third one advertised as failed by a primary.
    for (let handedOut = 1; handedOut <= 30; handedOut++)
      await env.direct.put(KEYS.idKey).value(String(handedOut));
    const advertised = Array.from({ length: 10 }, (_, i) => i * 3);
    for (const id of advertised)
      await env.direct
        .put(KEYS.failoverKey(id))
        .value(JSON.stringify({ id, group: LAYOUT.nodeGroup(id), advertisedBy: 1, token: 7 }));
    const leases = await grantLeases(60);
    const claimers = leases.slice(0, 30).map((lease, i) =>
      new ClusterStore(clients[i % CLIENTS] as Etcd3, LAYOUT, silentLogger(), {
        callTimeoutMs: CALL_TIMEOUT_MS,
      }).claimAdvertisedSlot({ name: `claimer-${i}`, address: "127.0.0.1:1" }, lease),
    );
    const [claims, fresh] = await Promise.all([Promise.all(claimers), race(clients, leases.slice(30))]);
    const claimed = claims.filter((id): id is number => id !== undefined);
    expect(claimed.sort((a, b) => a - b)).toEqual(advertised);
    const held = await idsByLease();
    for (const ids of held.values()) expect(ids).toHaveLength(1);
    const all = [...held.values()].flat();
    expect(new Set(all).size).toBe(all.length);
    expect(fresh.every((r) => r.status === "fulfilled" && r.value.kind === "allocated")).toBe(true);
  });

  test("lost replies of tickets and of claims during a race: still one member key per lease, unique IDs", async () => {
    const proxied = env.track(connectEtcd([env.proxy.endpoint]));
    const direct = env.track(connectEtcd(env.etcd.endpoints));
    const leases = await grantLeases(40);
    // One lost ticket reply, then one lost claim reply, while the rest of the crowd races on.
    // A ticket put: the key followed by its value field (a read of the key sends no field 2).
    env.proxy.setMode("drop-reply", { match: Buffer.concat([Buffer.from(KEYS.idKey), Buffer.from([0x12])]) });
    const firstWave = race([proxied, direct], leases.slice(0, 20));
    const settled = await firstWave;
    env.proxy.setMode("drop-reply", { match: KEYS.allMembersPrefix });
    const secondWave = await race([proxied, direct], leases.slice(20));
    expect(env.proxy.repliesDropped).toBe(2);
    // An allocation that failed (its ticket's reply lost) is retried, as the runtime does.
    const retried = await Promise.all(
      [...settled, ...secondWave].map(async (r, i) => {
        if (r.status === "fulfilled" && r.value.kind === "allocated") return r.value.id;
        const store = new ClusterStore(direct, LAYOUT, silentLogger(), { callTimeoutMs: CALL_TIMEOUT_MS });
        const again = await store.allocateFreshId(
          { name: `retry-${i}`, address: "127.0.0.1:1" },
          leases[i] as string,
        );
        return again.kind === "allocated" ? again.id : -1;
      }),
    );
    const held = await idsByLease();
    for (const [i, lease] of leases.entries()) expect(held.get(lease)).toEqual([retried[i]]);
    expect(new Set(retried).size).toBe(leases.length);
  });
});
