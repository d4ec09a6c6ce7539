import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { crashNode } from "../../src/runtime/testing.js";
import { NodeFactory, ONE_GROUPING } from "../support/clusterNodes.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { recordingLogger } from "../support/recordingLogger.js";
import { waitUntil } from "../support/waitUntil.js";

const ROLE_WAIT_MS = 20_000;
const FALSE_ALARMS = [
  "own member key is gone; renewing the session",
  "own member key is held under another lease; renewing the session",
];

/**
 * The own-member check compares the member key's lease with `scope.session?.leaseId` (commit
 * 44a665f): a moment in which the session is undefined, or a view that still shows the key under
 * an earlier lease, would make a healthy node renew. Driven through what changes sessions and
 * roles around a live member: fresh IDs by ticket, a graceful handoff, a crashed primary, a
 * crashed backup, newcomers taking tickets meanwhile. No live node may log either warning.
 */
describe("the own-member check under ticket allocation and failovers", () => {
  let etcd: EtcdCluster;
  let factory: NodeFactory;
  const log = recordingLogger();
  beforeEach(async () => {
    etcd = await startEtcd();
    log.records.length = 0;
    factory = new NodeFactory({
      endpoints: etcd.endpoints,
      config: ONE_GROUPING,
      leaseTtlSeconds: 2,
      logger: log.logger,
    });
  });
  afterEach(async () => {
    await factory.stopAll();
    await etcd.stop();
  });

  test("no healthy node renews its session for its own member key", async () => {
    await factory.startMany(4);
    const roleOf = (role: string) => factory.live().find((n) => n.role === role);
    await waitUntil("a primary and a backup", () => roleOf("primary") && roleOf("backup"), ROLE_WAIT_MS);
    await roleOf("primary")?.stop(); // a graceful handoff
    await waitUntil(
      "a primary and a backup again",
      () => roleOf("primary") && roleOf("backup"),
      ROLE_WAIT_MS,
    );
    await Promise.all([factory.startMany(2), Promise.resolve(crashNode(roleOf("primary")))]);
    await waitUntil(
      "a primary and a backup again",
      () => roleOf("primary") && roleOf("backup"),
      ROLE_WAIT_MS,
    );
    crashNode(roleOf("backup"));
    await factory.startMany(1);
    await waitUntil(
      "a primary and a backup again",
      () => roleOf("primary") && roleOf("backup"),
      ROLE_WAIT_MS,
    );
    expect(log.records.filter((r) => FALSE_ALARMS.includes(r.message))).toEqual([]);
  });
});
