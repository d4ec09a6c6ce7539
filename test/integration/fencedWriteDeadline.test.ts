import { performance } from "node:perf_hooks";
import type { Etcd3 } from "etcd3";
import { firstValueFrom } from "rxjs";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import type { ClusterNode } from "../../src/runtime/clusterNode.js";
import { NotPrimaryError } from "../../src/runtime/index.js";
import {
  type NodeFactory,
  ONE_GROUPING,
  startEtcdWithNodes,
  stopEtcdWithNodes,
} from "../support/clusterNodes.js";
import type { EtcdCluster } from "../support/etcdCluster.js";
import { waitUntil } from "../support/waitUntil.js";

const TTL_SECONDS = 3;
/** The session's default margin for this TTL: max(200 ms, 10 % of the TTL). */
const MARGIN_MS = 300;

describe("a fenced write against the local lease deadline", () => {
  let etcd: EtcdCluster;
  let client: Etcd3;
  let factory: NodeFactory;

  beforeEach(async () => {
    ({ etcd, client, factory } = await startEtcdWithNodes({
      config: ONE_GROUPING,
      leaseTtlSeconds: TTL_SECONDS,
    }));
  });

  afterEach(async () => {
    await stopEtcdWithNodes({ etcd, factory });
  });

  test("a primary past its local deadline refuses a fenced write without writing, before its deadline timer has stepped it down", async () => {
    const [primary] = (await factory.startMany(1)) as [ClusterNode];
    await waitUntil("the node to be primary", () => primary.role === "primary");
    const key = "app/after-deadline";

    // The last acknowledged keepalive was sent `roundTripMs` ago; the deadline is TTL − margin after that.
    const roundTripMs = await firstValueFrom(primary.keepaliveRoundTrips$);
    const deadline = performance.now() - roundTripMs + TTL_SECONDS * 1000 - MARGIN_MS;
    // No timer can run while this spins: the node cannot notice the deadline, and etcd still holds
    // its lease (it expires no sooner than `margin` after the deadline).
    while (performance.now() < deadline + 20) {
      // busy wait
    }
    expect(primary.role, "the node stepped down already: nothing was tested").toBe("primary");
    const write = primary.fencedTxn((c) => [c.put(key).value("written past the deadline")]);

    await expect(write).rejects.toBeInstanceOf(NotPrimaryError);
    expect(await client.get(key).string()).toBeNull();
  });
});
