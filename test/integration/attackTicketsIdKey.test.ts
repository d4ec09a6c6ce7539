import type { Etcd3 } from "etcd3";
import { describe, expect, test } from "vitest";
import { scrape, total } from "../../bench/scale/etcdMetrics.js";
import { ClusterLayout } from "../../src/config/index.js";
import { ClusterStore, connectEtcd } from "../../src/etcd/index.js";
import { silentLogger } from "../../src/logging.js";
import { SEED_CONFIG } from "../support/clusterNodes.js";
import { proxiedEtcdPerTest } from "../support/proxiedEtcd.js";

/** 200 slots. */
const LAYOUT = new ClusterLayout({ ...SEED_CONFIG, groups: 20, group_size: 10, reads: 5 });
const KEYS = LAYOUT.keys;
const EARLIER = 30;
const RACERS = 30;
const CLIENTS = 4;
const TAMPER_MS = 2_000;

type Tamper = (direct: Etcd3) => Promise<unknown>;

/**
 * What an operator (or a bug) may do to `id_key` while a cluster runs: every allocation still
 * ends with its own ID, no ID twice, one member key per lease, and the work stays bounded by the
 * slots found taken (a reset `id_key` walks the tickets up past the live members: two writes each).
 */
const put =
  (value: string): Tamper =>
  async (d) =>
    d.put(KEYS.idKey).value(value).exec();
const remove: Tamper = async (d) => d.delete().key(KEYS.idKey).exec();

const TAMPERINGS: [string, Tamper, Tamper | undefined][] = [
  ["garbage", put("garbage \u0000 {"), undefined],
  ["deleted", remove, undefined],
  ['reset to "0"', put("0"), undefined],
  ["a huge decimal", put("99999999999999999999999"), undefined],
  ["beyond the capacity", put(String(LAYOUT.capacity + 1)), undefined],
  ['deleted, then a legacy floor "100"', async (d) => remove(d).then(() => put("100")(d)), undefined],
  ["deleted again and again while nodes allocate", async () => undefined, remove],
];

describe("id_key tampered with", () => {
  const env = proxiedEtcdPerTest();
  const grant = (n: number) =>
    Promise.all(
      Array.from({ length: n }, async () =>
        String(await env.direct.lease(60, { autoKeepAlive: false }).grant()),
      ),
    );
  const writesHandled = async () => {
    const s = await scrape(env.etcd.endpoints[0] ?? "");
    return (
      total(s, "grpc_server_handled_total", { grpc_method: "Txn" }) +
      total(s, "grpc_server_handled_total", { grpc_method: "Put" })
    );
  };
  const allocateAll = (clients: Etcd3[], leases: string[], prefix: string) =>
    Promise.all(
      leases.map(async (lease, i) => {
        // Spread over about 300 ms, so that a tampering during the race lands between allocations.
        await new Promise((r) => setTimeout(r, i * 10));
        const store = new ClusterStore(clients[i % clients.length] as Etcd3, LAYOUT, silentLogger());
        const result = await store.allocateFreshId({ name: `${prefix}-${i}`, address: "127.0.0.1:1" }, lease);
        if (result.kind !== "allocated") throw new Error(`${prefix}-${i}: cluster full`);
        return result.id;
      }),
    );

  for (const [what, before, during] of TAMPERINGS)
    test(`${what}: unique IDs, one member key per lease, bounded work`, async () => {
      const clients = Array.from({ length: CLIENTS }, () => env.track(connectEtcd(env.etcd.endpoints)));
      const earlierLeases = await grant(EARLIER);
      const earlier = await allocateAll(clients, earlierLeases, "earlier");
      await before(env.direct);
      const leases = await grant(RACERS);
      const writesBefore = await writesHandled();
      // Deleted every 20 ms (plus the delete's own time) for 2 s: each delete sends the tickets back
      // below the live slots. Measured: with deletions going on until every racer had an ID, the
      // 30 racers had not all got one after 60 s; so the deletions stop, and the walk finishes.
      const tamperUntil = Date.now() + TAMPER_MS;
      const tamperer = (async () => {
        let times = 0;
        while (during && Date.now() < tamperUntil) {
          await during(env.direct);
          times += 1;
          await new Promise((r) => setTimeout(r, 20));
        }
        return times;
      })();
      const ids = await allocateAll(clients, leases, "racer");
      const tampered = await tamperer;
      const writes = (await writesHandled()) - writesBefore; // a delete is neither a Txn nor a Put

      const all = [...earlier, ...ids];
      expect(new Set(all).size).toBe(all.length);
      const held = new Map<string, number[]>();
      for (const kv of (await env.direct.getAll().prefix(KEYS.allMembersPrefix).exec()).kvs)
        held.set(kv.lease, [...(held.get(kv.lease) ?? []), Number(kv.key.toString().split("/").pop())]);
      for (const [i, lease] of [...earlierLeases, ...leases].entries())
        expect(held.get(lease)).toEqual([all[i]]);
      // A ticket and a claim per slot tried: the racers' slots, plus each live member's slot at most
      // once per reset of id_key (the taken tickets), plus a claim's second try after a lost race.
      const resets = what.startsWith("deleted again") ? tampered : 1;
      expect(writes).toBeLessThanOrEqual(2 * (RACERS + (EARLIER + RACERS) * (resets + 1)));
      console.log(
        JSON.stringify({
          tampering: what,
          ids: ids.length,
          writes,
          writesPerId: writes / RACERS,
          resets: tampered,
        }),
      );
    });
});
