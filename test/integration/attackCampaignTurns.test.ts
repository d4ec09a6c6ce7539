import type { Etcd3 } from "etcd3";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import type { HistoryRecord } from "../../src/runtime/history.js";
import { crashNode } from "../../src/runtime/testing.js";
import { NodeFactory, ONE_GROUPING } from "../support/clusterNodes.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { leadershipSettled, leadersInEtcd } from "../support/invariants.js";
import { waitUntil } from "../support/waitUntil.js";

/**
 * Campaign turns (21e1c21, aa5609c) rank a vacant seat's candidates by ID within the grouping, the
 * lowest first, whether those lower IDs are live or not. Attack: the two lowest IDs hold both seats
 * and die together without a word (a crash: no resignation, no revoke). Their member and leader
 * keys live one more TTL, as a paused process's would; then both seats are vacant at once and the
 * lowest live candidates are ranks 2 and up.
 */
describe("attack: campaign turns when both seats' holders, the lowest IDs, die together", () => {
  let etcd: EtcdCluster;
  let factory: NodeFactory;
  let records: HistoryRecord[];
  let client: Etcd3;

  beforeEach(async () => {
    etcd = await startEtcd();
    records = [];
    factory = new NodeFactory({
      endpoints: etcd.endpoints,
      config: ONE_GROUPING,
      leaseTtlSeconds: 2,
      history: (r) => records.push(r),
    });
    client = etcd.client();
  });

  afterEach(async () => {
    await factory.stopAll();
    client.close();
    await etcd.stop();
  });

  const campaignsSince = (index: number) =>
    records.slice(index).filter((r) => r.kind === "leader" && r.action === "campaign");

  // Guards: both seats are filled again by live nodes, one primary at a time, and by about one
  // campaign each (without turns every live member runs for each vacant seat: 7 nodes, 10 or more).
  test("both seats are seated again by live nodes, with few campaigns and never two primaries", async () => {
    const nodes = await factory.startMany(9);
    await waitUntil("leadership settled", () => leadershipSettled(client, factory.layout, nodes), 30_000);
    const [seats] = await leadersInEtcd(client, factory.layout);
    const holders = nodes.filter((n) => n.id === seats?.primary || n.id === seats?.backup);
    expect(holders).toHaveLength(2);
    const before = records.length;
    for (const holder of holders) crashNode(holder);
    const dead = new Set(holders.map((n) => n.id));
    const live = nodes.filter((n) => !dead.has(n.id));

    // Every poll: at most one live node thinks it is primary.
    let mostPrimaries = 0;
    await waitUntil(
      "both seats held by live nodes",
      async () => {
        mostPrimaries = Math.max(mostPrimaries, live.filter((n) => n.role === "primary").length);
        const [now] = await leadersInEtcd(client, factory.layout);
        return (
          now?.primary !== undefined &&
          now.backup !== undefined &&
          !dead.has(now.primary) &&
          !dead.has(now.backup) &&
          (await leadershipSettled(client, factory.layout, live))
        );
      },
      60_000,
      10,
    );
    const sent = campaignsSince(before);
    const deadNames = new Set(holders.map((n) => n.status.name));
    console.log(
      `dead seat holders ${holders.map((n) => `${n.status.name}=${n.id}`).join(",")}: ${sent.length} campaigns after the crash, by ${sent.map((r) => `${r.node}=${nodes.find((n) => n.status.name === r.node)?.id}`).join(",")}`,
    );
    expect(
      sent.filter((r) => deadNames.has(r.node)).map((r) => r.node),
      "campaigns by a crashed node",
    ).toEqual([]);
    expect(mostPrimaries).toBeLessThanOrEqual(1);
    expect(sent.filter((r) => r.kind === "leader" && r.outcome === "ok")).toHaveLength(2);
    expect(sent.length, JSON.stringify(sent.map((r) => r.node))).toBeLessThanOrEqual(6);
  }, 90_000);
});
