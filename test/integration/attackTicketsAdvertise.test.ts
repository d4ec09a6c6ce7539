import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { ClusterLayout } from "../../src/config/index.js";
import { ClusterStore, connectEtcd } from "../../src/etcd/index.js";
import { silentLogger } from "../../src/logging.js";
import { crashNode } from "../../src/runtime/testing.js";
import { NodeFactory, SEED_CONFIG } from "../support/clusterNodes.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { TcpProxy } from "../support/tcpProxy.js";
import { waitUntil } from "../support/waitUntil.js";

/** One grouping, one group of three: the cluster is full with three nodes. */
const FULL_AT_THREE = { ...SEED_CONFIG, groups: 1, group_size: 3, reads: 1 };
const LAYOUT = new ClusterLayout(FULL_AT_THREE);
const KEYS = LAYOUT.keys;
/** Generous: a slot is advertised within milliseconds of the member key's deletion (TTL 2 s). */
const REFILL_WAIT_MS = 20_000;

/**
 * The primaries advertise failed slots below the ID high-water mark, which under tickets is
 * `id_key`'s version: the prefix view's entries must carry it (`KeyEntry.version`), else the mark
 * reads 0 and nothing is advertised (a full cluster never replaces a dead member).
 */
describe("failed slots under tickets are advertised and refilled", () => {
  let etcd: EtcdCluster;
  let factory: NodeFactory;
  let proxy: TcpProxy | undefined;
  beforeEach(async () => {
    etcd = await startEtcd();
    factory = new NodeFactory({ endpoints: etcd.endpoints, config: FULL_AT_THREE, leaseTtlSeconds: 2 });
  });
  afterEach(async () => {
    await factory.stopAll();
    await proxy?.close();
    proxy = undefined;
    await etcd.stop();
  });

  const memberIds = async () =>
    (await etcd.client().getAll().prefix(KEYS.allMembersPrefix).keys())
      .map((k) => Number(k.split("/").pop()))
      .sort((a, b) => a - b);

  test("a full cluster replaces a crashed member: its slot is advertised and a newcomer claims it", async () => {
    const [a, b, c] = await factory.startMany(3);
    await waitUntil("a primary", () => factory.live().some((n) => n.role === "primary"));
    // A value that is not a count: the high-water mark must come from the key's version.
    await etcd.client().put(KEYS.idKey).value("garbage");
    const victim = [a, b, c].find((n) => n?.role !== "primary" && n?.role !== "backup") ?? c;
    const lostId = victim?.id;
    crashNode(victim);
    // Advertised before any newcomer's ticket put rewrites the value: the mark came from the version.
    await waitUntil(
      "the crashed member's slot to be advertised",
      async () =>
        (await etcd
          .client()
          .get(KEYS.failoverKey(lostId ?? -1))
          .string()) !== null,
      REFILL_WAIT_MS,
    );
    const newcomer = factory.create("newcomer");
    const started = newcomer.start();
    started.catch(() => undefined); // rejected by the stop in afterEach when the slot never comes
    await waitUntil(
      "the newcomer to hold the crashed member's slot",
      () => newcomer.id === lostId,
      REFILL_WAIT_MS,
    );
    await started;
    expect(await memberIds()).toEqual([0, 1, 2]);
  });

  // A ticket whose reply was lost is burnt: a gap that the primaries advertise as a failed slot
  // (after their grace for slots never seen with a member) and a later node fills.
  test("a ticket whose reply was lost leaves a gap that is advertised and filled", async () => {
    proxy = await TcpProxy.forEndpoint(etcd.endpoints[0] ?? "");
    const client = connectEtcd([proxy.endpoint]);
    try {
      const lease = String(await etcd.client().lease(60, { autoKeepAlive: false }).grant());
      const store = new ClusterStore(client, LAYOUT, silentLogger(), { callTimeoutMs: 2_000 });
      // The ticket's put (key, then value "1": protobuf field 2, length 1), not the read before it.
      const ticketPut = Buffer.concat([Buffer.from(KEYS.idKey), Buffer.from([0x12, 0x01]), Buffer.from("1")]);
      proxy.setMode("drop-reply", { match: ticketPut });
      await expect(
        store.allocateFreshId({ name: "unlucky", address: "127.0.0.1:1" }, lease),
      ).rejects.toThrow();
      expect(proxy.repliesDropped).toBe(1);
      // etcd applied the put: ticket 0 is burnt and slot 0 has no member.
      const counter = (await etcd.client().get(KEYS.idKey).exec()).kvs[0];
      expect(Number(counter?.version)).toBe(1);
      await etcd.client().leaseClient.leaseRevoke({ ID: lease });
    } finally {
      client.close();
    }
    await factory.startMany(2); // tickets 1 and 2: the cluster is full, slot 0 is the gap
    expect(await memberIds()).toEqual([1, 2]);
    const newcomer = factory.create("newcomer");
    const started = newcomer.start();
    started.catch(() => undefined); // rejected by the stop in afterEach when the slot never comes
    await waitUntil("the newcomer to fill the gap", () => newcomer.id === 0, REFILL_WAIT_MS);
    await started;
    expect(await memberIds()).toEqual([0, 1, 2]);
  });
});
