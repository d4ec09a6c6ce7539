import { setTimeout as sleep } from "node:timers/promises";
import type { Etcd3 } from "etcd3";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { scrape, total } from "../../bench/scale/etcdMetrics.js";
import { NodeFactory, SEED_CONFIG } from "../support/clusterNodes.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { type LogRecord, recordingLogger } from "../support/recordingLogger.js";
import { waitUntil } from "../support/waitUntil.js";

/** One grouping, one group of three: full with three member keys. */
const FULL_AT_THREE = { ...SEED_CONFIG, groups: 1, group_size: 3, reads: 1 };
const WAKE = "cluster is full and nobody leads it; claiming a free slot directly";
/** How long the waiting newcomer is watched; nothing changes in etcd meanwhile. */
const WATCHED_MS = 10_000;
/**
 * etcd requests (ranges, transactions, puts) a waiting newcomer may cost in that window. Its wakes
 * back off (250 ms doubling to 5 s: about four in 10 s), each about eight requests (the ads, the
 * high-water mark, the leader count, the member keys, two views' list and watch); without the
 * backoff, a wake every 125-250 ms costs about 400.
 */
const MAX_REQUESTS_WHILE_WAITING = 150;

/**
 * A full cluster whose members live but lead nothing: three member keys of a process that is no
 * node (it never campaigns), so the leader prefix stays empty. A newcomer finds it full; with the
 * leaderless wake (12a112b) the empty leader prefix wakes it to allocate again and look for a free
 * slot. Every slot is held by a live lease, so it must claim none, and its wakes must back off.
 */
describe("attack: the leaderless wake of a newcomer waiting on a full cluster", () => {
  let etcd: EtcdCluster;
  let factory: NodeFactory;
  let records: LogRecord[];
  let ghosts: Etcd3;

  beforeEach(async () => {
    etcd = await startEtcd();
    const recording = recordingLogger();
    records = recording.records;
    factory = new NodeFactory({
      endpoints: etcd.endpoints,
      config: FULL_AT_THREE,
      leaseTtlSeconds: 2,
      logger: recording.logger,
    });
    ghosts = etcd.client();
  });

  afterEach(async () => {
    await factory.stopAll();
    ghosts.close();
    await etcd.stop();
  });

  const requestsServed = async () => {
    const s = await scrape(etcd.endpoints[0] ?? "");
    return ["Range", "Txn", "Put", "DeleteRange"].reduce(
      (sum, method) => sum + total(s, "grpc_server_handled_total", { grpc_method: method }),
      0,
    );
  };

  test("with every slot held by live members and no leader, it claims none and its wakes back off", async () => {
    const keys = factory.layout.keys;
    const lease = ghosts.lease(60, { autoKeepAlive: true });
    const leaseId = await lease.grant();
    for (const id of [0, 1, 2])
      await ghosts
        .put(keys.memberKey(factory.layout.nodeGroup(id), id))
        .value(JSON.stringify({ id, name: `ghost-${id}`, address: "127.0.0.1:1" }))
        .lease(leaseId)
        .exec();
    // The high-water mark at the capacity: three tickets taken.
    for (let i = 1; i <= 3; i++) await ghosts.put(keys.idKey).value(String(i));

    const newcomer = factory.create("newcomer");
    newcomer.start({ timeoutMs: 60_000 }).catch(() => undefined); // never identified: stopped in afterEach
    const wakes = () => records.filter((r) => r.message === WAKE).length;
    await waitUntil("the first leaderless wake", () => wakes() >= 1, 20_000);
    const requestsBefore = await requestsServed();
    const wakesBefore = wakes();
    await sleep(WATCHED_MS);
    const requests = (await requestsServed()) - requestsBefore;
    const woken = wakes() - wakesBefore;
    console.log(`leaderless full cluster: ${woken} wakes and ${requests} etcd requests in ${WATCHED_MS} ms`);

    expect(newcomer.id, "a slot held by a live member was claimed").toBeUndefined();
    const members = await ghosts.getAll().prefix(keys.allMembersPrefix).keys();
    expect(members.sort()).toEqual([0, 1, 2].map((id) => keys.memberKey(0, id)).sort());
    // Still woken by the empty leader prefix: the leaderless path stays live.
    expect(woken).toBeGreaterThanOrEqual(1);
    expect(requests).toBeLessThanOrEqual(MAX_REQUESTS_WHILE_WAITING);
    await lease.revoke();
  }, 60_000);
});
