import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, test } from "vitest";
import type { ClusterNode } from "../../src/runtime/clusterNode.js";
import { NodeFactory, ONE_GROUPING } from "../support/clusterNodes.js";
import { proxiedEtcdPerTest } from "../support/proxiedEtcd.js";

/*
 * Attack on resign(): the term ends (LeadershipTerms never starts one for that token again) before
 * the delete is known to have reached etcd. A resignation lost on the wire must therefore be retried
 * until etcd settles it; otherwise the primary key stays under the node's live lease, the node never
 * acts on it again, and no other node can take the seat while that lease lives.
 */

const TTL_SECONDS = 2;
const WAIT_MS = 30_000;
/** Generous: many TTLs, so a seat that is merely slow to change hands is not counted as stuck. */
const ACTING_PRIMARY_WITHIN_MS = 10 * TTL_SECONDS * 1000;

describe("attack: a resign whose transaction is lost", () => {
  const env = proxiedEtcdPerTest();
  const factories: NodeFactory[] = [];
  afterEach(async () => {
    env.proxy.setMode("pass");
    for (const factory of factories.splice(0)) await factory.stopAll();
  });
  const factoryOver = (endpoints: string[]) => {
    const factory = new NodeFactory({ endpoints, config: ONE_GROUPING, leaseTtlSeconds: TTL_SECONDS });
    factories.push(factory);
    return factory;
  };

  /** True when `node` is the primary in a running term: its fenced write commits. */
  const acting = async (node: ClusterNode): Promise<boolean> => {
    try {
      await node.fencedTxn((c) => [c.put("attack/probe").value(node.settings.nodeName)]);
      return true;
    } catch {
      return false;
    }
  };

  test("after a resign() whose first request is lost, some node acts as primary within a few TTLs", async () => {
    const resigner = factoryOver([env.proxy.endpoint]).create("resigner");
    await resigner.start();
    await resigner.waitForRole("primary", { timeoutMs: WAIT_MS });
    const [other] = await factoryOver(env.etcd.endpoints).startMany(1);
    if (!other) throw new Error("no second node");
    await other.waitForRole("backup", { timeoutMs: WAIT_MS });
    const primaryKey = resigner.layout.keys.leaderKey(0, 1);

    // The resignation (the one request naming the primary key) never reaches etcd.
    env.proxy.setMode("hold-request", { match: primaryKey });
    const resignation = resigner.resign({ timeoutMs: WAIT_MS });

    const deadline = Date.now() + ACTING_PRIMARY_WITHIN_MS;
    let actingPrimary = false;
    while (!actingPrimary && Date.now() < deadline) {
      actingPrimary = (await acting(resigner)) || (await acting(other));
      if (!actingPrimary) await sleep(250);
    }
    const held = (await env.direct.get(primaryKey).exec()).kvs[0];
    const seen = `resigner ${resigner.role}, other ${other.role}, primary key lease ${held?.lease}`;
    expect(actingPrimary, seen).toBe(true);
    expect(await resignation).toBe(true);
    expect(held?.lease).not.toBe(resigner.status.leaseId);
    // The first resignation, held on the wire all along, arrives late: the new holder's key stays.
    await env.proxy.releaseHeldRequest();
    expect((await env.direct.get(primaryKey).exec()).kvs[0]?.lease).toBe(held?.lease);
  });
});
