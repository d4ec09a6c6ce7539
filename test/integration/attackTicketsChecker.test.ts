import type { Etcd3 } from "etcd3";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { ClusterLayout } from "../../src/config/index.js";
import { ClusterStore } from "../../src/etcd/index.js";
import { silentLogger } from "../../src/logging.js";
import { readEtcdHistory } from "../../src/testing/etcdHistory.js";
import { checkHistory } from "../../src/testing/historyChecker.js";
import { SEED_CONFIG } from "../support/clusterNodes.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";

/** One grouping of two groups of three. */
const LAYOUT = new ClusterLayout({ ...SEED_CONFIG, groups: 2, group_size: 3, reads: 2 });
const KEYS = LAYOUT.keys;
const record = (name: string) => ({ name, address: "127.0.0.1:1" });

/**
 * The history checker's ID rules under tickets: the ticket (a put of `id_key`) and the claim (the
 * member key) are two revisions, and a burnt ticket's slot is advertised although it never lived.
 * Replayed on an etcd history made by the store's own transactions.
 */
describe("history checker on the ticket scheme", () => {
  let etcd: EtcdCluster;
  let client: Etcd3;
  let store: ClusterStore;
  beforeEach(async () => {
    etcd = await startEtcd();
    client = etcd.client();
    store = new ClusterStore(client, LAYOUT, silentLogger());
  });
  afterEach(async () => {
    await etcd.stop();
  });
  const lease = async () => String(await client.lease(60, { autoKeepAlive: false }).grant());
  const idViolations = async () => {
    const report = checkHistory({ layout: LAYOUT, events: await readEtcdHistory(client), histories: [] });
    return report.violations.filter((v) => v.rule === "ids" || v.rule === "slots").map((v) => v.message);
  };

  test("fresh IDs by ticket, and a burnt ticket's slot advertised and claimed, break no rule", async () => {
    const a = await store.allocateFreshId(record("a"), await lease());
    const primaryLease = await lease();
    const primary = await store.allocateFreshId(record("p"), primaryLease);
    expect([a, primary]).toEqual([
      { kind: "allocated", id: 0 },
      { kind: "allocated", id: 1 },
    ]);
    const won = await store.campaign(0, 1, { ...record("p"), id: 1 }, primaryLease);
    if (won.kind !== "won") throw new Error("the primary seat was vacant");
    // The put of a ticket whose reply was lost: etcd applied it, nobody claims slot 2.
    await client.put(KEYS.idKey).value("3");
    expect(await store.allocateFreshId(record("b"), await lease())).toEqual({ kind: "allocated", id: 3 });
    expect(
      await store.advertiseFailedSlot({ grouping: 0, seat: 1, token: won.token }, primaryLease, 2, 1),
    ).toBe(true);
    expect(await store.claimAdvertisedSlot(record("w"), await lease())).toBe(2);
    expect(await idViolations()).toEqual([]);
  });

  // The rule once accepted any first member key written together with a put of id_key, whatever its ID.
  test("a member key of an ID never handed out is a violation, even beside a put of id_key", async () => {
    const holder = await lease();
    await client
      .if(KEYS.idKey, "Create", "==", 0)
      .then(
        client.put(KEYS.idKey).value("1"),
        client
          .put(KEYS.memberKey(1, 4))
          .value(JSON.stringify({ ...record("x"), id: 4 }))
          .lease(holder),
      )
      .commit();
    // id_key's version is now 1: only ID 0 has been handed out.
    expect((await idViolations()).some((m) => m.includes("ID 4"))).toBe(true);
  });
});
