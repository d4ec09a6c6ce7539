import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { noop } from "cockatiel";
import type { Etcd3 } from "etcd3";
import yaml from "js-yaml";
import { EMPTY, of } from "rxjs";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { main } from "../../src/cli/main.js";
import { idRangesText } from "../../src/cli/statusCommand.js";
import type { ClusterNode } from "../../src/runtime/clusterNode.js";
import {
  type ClusterStatus,
  readClusterStatus,
  readPoisonedLeaderKeys,
} from "../../src/runtime/clusterStatus.js";
import { createMetrics } from "../../src/server/metrics.js";
import {
  type NodeFactory,
  ONE_GROUPING,
  startEtcdWithNodes,
  stopEtcdWithNodes,
} from "../support/clusterNodes.js";
import type { EtcdCluster } from "../support/etcdCluster.js";
import { crashFollowerUntilAdvertised, leadershipSettled } from "../support/invariants.js";
import { TcpProxy } from "../support/tcpProxy.js";
import { waitUntil } from "../support/waitUntil.js";

/** Only the gauge is under test: a node that never changes, with the poisoned keys read from the real etcd. */
const stillNode = () =>
  ({
    role$: of("follower"),
    status$: EMPTY,
    leaders$: EMPTY,
    keepaliveRoundTrips$: EMPTY,
  }) as unknown as ClusterNode;

describe("rdeebee-cluster status", () => {
  let etcd: EtcdCluster;
  let client: Etcd3;
  let factory: NodeFactory;
  let dir: string;
  let configFile: string;

  beforeEach(async () => {
    ({ etcd, client, factory } = await startEtcdWithNodes({ config: ONE_GROUPING }));
    dir = mkdtempSync(join(tmpdir(), "rdeebee-status-"));
    configFile = join(dir, "config.yaml");
    writeFileSync(configFile, yaml.dump(ONE_GROUPING));
  });

  afterEach(async () => {
    await stopEtcdWithNodes({ etcd, factory });
    rmSync(dir, { recursive: true, force: true });
  });

  async function status(...flags: string[]): Promise<{ code: number; text: string }> {
    const lines: string[] = [];
    const code = await main(
      [
        "node",
        "rdeebee-cluster",
        "status",
        "--config",
        configFile,
        "--etcd",
        etcd.endpoints.join(","),
        ...flags,
      ],
      (t) => lines.push(t),
    );
    return { code, text: lines.join("\n") };
  }

  test("shows leaders, members, missing and advertised slots, as JSON and as text", async () => {
    // One after another, so the IDs are 0..3 with no gaps: the primary advertises every slot below
    // id_key that has no member, a gap left by a crowd's spread included.
    const nodes: ClusterNode[] = [];
    for (let i = 0; i < 4; i++) {
      const node = factory.create();
      await node.start();
      nodes.push(node);
    }
    await waitUntil("a primary and a backup", () => leadershipSettled(client, factory.layout, nodes));
    const highest = Math.max(...nodes.map((n) => n.id ?? 0));
    await waitUntil(
      "id_key raised past every ID",
      async () => Number(await client.get(factory.layout.keys.idKey).string()) > highest,
    );
    const { victim, id: victimId } = await crashFollowerUntilAdvertised(
      nodes,
      client,
      factory.layout,
      10_000,
    );

    const json = await status("--json");
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.text) as ClusterStatus;
    const primary = nodes.find((n) => n.role === "primary");
    const backup = nodes.find((n) => n.role === "backup");
    expect(parsed.groupings[0]?.primary?.id).toBe(primary?.id);
    expect(parsed.groupings[0]?.backup?.id).toBe(backup?.id);
    // Nodes started together spread over the slots: `allocated` is id_key, the high-water mark
    // (every ID handed out is below it), and the missing slots are the ones below it with no member.
    const live = parsed.groups.flatMap((g) => g.members.map((m) => m.id));
    expect(parsed.allocated).toBeGreaterThanOrEqual(Math.max(...nodes.map((n) => n.id ?? 0)) + 1);
    expect(parsed.allocated).toBe(Number(await client.get(factory.layout.keys.idKey).string()));
    const missing = parsed.groups.flatMap((g) => g.missing);
    expect(missing).toContain(victimId);
    expect(missing).toEqual(
      Array.from({ length: parsed.allocated }, (_, id) => id).filter((id) => !live.includes(id)),
    );
    expect(parsed.advertised.map((a) => a.id)).toEqual([victimId]);
    expect(parsed.groups.flatMap((g) => g.members.map((m) => m.id)).sort()).toEqual(
      nodes
        .filter((n) => n !== victim)
        .map((n) => n.id)
        .sort(),
    );

    const text = await status();
    expect(text.text).toContain(`primary: node ${primary?.id}`);
    expect(text.text).toContain(`advertised failed slots: ${victimId}`);
  });

  test("an unreachable etcd exits 3 and a bad config exits 2, both naming the problem", async () => {
    const unreachable = await main(
      ["node", "rdeebee-cluster", "status", "--config", configFile, "--etcd", "127.0.0.1:1"],
      () => {},
    );
    expect(unreachable).toBe(3);
    writeFileSync(configFile, "groups: -1\n");
    expect(await status()).toMatchObject({ code: 2 });
  });

  /** Poisons both seats of grouping 0: garbage with no lease, and a node of no grouping under a lease. */
  async function poisonGrouping0() {
    const keys = factory.layout.keys;
    await client.put(keys.leaderKey(0, 1)).value("{not json").exec();
    const lease = client.lease(600, { autoKeepAlive: false });
    const leaseId = String(await lease.grant());
    await lease
      .put(keys.leaderKey(0, 2))
      .value(JSON.stringify({ id: 99, name: "x", address: "h:1" }))
      .exec();
    const revisions = async (key: string) => {
      const kv = (await client.get(key).exec()).kvs[0];
      return { modRevision: Number(kv?.mod_revision), createRevision: Number(kv?.create_revision) };
    };
    return {
      leaseId,
      primary: await revisions(keys.leaderKey(0, 1)),
      backup: await revisions(keys.leaderKey(0, 2)),
    };
  }

  test("lists poisoned leader keys with key, reason, lease and mod revision, as JSON and as text", async () => {
    const { leaseId, primary, backup } = await poisonGrouping0();
    const keys = factory.layout.keys;

    const json = await status("--json");
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.text) as ClusterStatus;
    expect(parsed.poisonedLeaderKeys).toEqual([
      {
        key: keys.leaderKey(0, 1),
        grouping: 0,
        seat: 1,
        reason: "value is not JSON",
        lease: "0",
        ...primary,
      },
      {
        key: keys.leaderKey(0, 2),
        grouping: 0,
        seat: 2,
        reason: "names node 99, which is not in this grouping",
        lease: leaseId,
        ...backup,
      },
    ]);
    expect(parsed.groupings[0]?.primary?.problem).toBe("value is not JSON");
    expect(parsed.groupings[0]?.backup?.problem).toBe("names node 99, which is not in this grouping");

    const text = await status();
    expect(text.code).toBe(0);
    expect(text.text).toContain("primary: (poisoned: value is not JSON)");
    expect(text.text).toContain(
      `poisoned leader key ${keys.leaderKey(0, 1)}: value is not JSON (no lease, mod revision ${primary.modRevision})`,
    );
    expect(text.text).toContain(
      `poisoned leader key ${keys.leaderKey(0, 2)}: names node 99, which is not in this grouping ` +
        `(lease ${leaseId}, mod revision ${backup.modRevision})`,
    );
    expect(text.text).toContain("rdeebee-cluster repair --yes");
  });

  test("a valid leader key is not reported as poisoned", async () => {
    const keys = factory.layout.keys;
    await client
      .put(keys.leaderKey(0, 1))
      .value(JSON.stringify({ id: 8, name: "n", address: "h:1" }))
      .exec();
    const parsed = JSON.parse((await status("--json")).text) as ClusterStatus;
    expect(parsed.poisonedLeaderKeys).toEqual([]);
    expect(parsed.problems).toEqual([]);
    expect(parsed.groupings[0]?.primary).toMatchObject({ id: 8, name: "n" });
  });

  test("the example server's gauge counts the poisoned leader keys at every scrape", async () => {
    await poisonGrouping0();
    const node = stillNode();
    const metrics = createMetrics(node, {
      countPoisonedLeaderKeys: () => readPoisonedLeaderKeys(client, factory.layout).then((k) => k.length),
    });
    try {
      expect(await metrics.text()).toMatch(/^rdeebee_poisoned_leader_keys 2$/m);
      await client.delete().key(factory.layout.keys.leaderKey(0, 1)).exec();
      expect(await metrics.text()).toMatch(/^rdeebee_poisoned_leader_keys 1$/m);
    } finally {
      metrics.close();
    }
  });

  test("reads of an etcd that does not answer fail at their deadline; the gauge keeps its value and counts an error", async () => {
    await poisonGrouping0();
    const proxy = await TcpProxy.forEndpoint(etcd.endpoints[0] ?? "");
    // One client per read, with neither retries nor a circuit breaker: only the read's own deadline can end it.
    const proxied = () =>
      etcd.client({ hosts: [proxy.endpoint], faultHandling: { global: noop, host: () => noop } });
    const [forStatus, forPoisoned, forMetrics] = [proxied(), proxied(), proxied()];
    const node = stillNode();
    const metrics = createMetrics(node, {
      countPoisonedLeaderKeys: () =>
        readPoisonedLeaderKeys(forMetrics, factory.layout, { timeoutMs: 500 }).then((k) => k.length),
    });
    try {
      for (const c of [forStatus, forPoisoned]) await c.get("connected").exec();
      expect(await metrics.text()).toMatch(/^rdeebee_poisoned_leader_keys 2$/m);
      proxy.setMode("blackhole");
      await expect(readClusterStatus(forStatus, factory.layout, { timeoutMs: 500 })).rejects.toThrow();
      await expect(readPoisonedLeaderKeys(forPoisoned, factory.layout, { timeoutMs: 500 })).rejects.toThrow();
      const text = await metrics.text();
      expect(text).toMatch(/^rdeebee_poisoned_leader_keys 2$/m);
      expect(text).toMatch(/^rdeebee_etcd_errors_total\{reason="poisoned_leader_keys_read"\} 1$/m);
    } finally {
      metrics.close();
      for (const c of [forStatus, forPoisoned, forMetrics]) c.close();
      await proxy.close();
    }
  });

  test("at the maximum capacity, with every ID handed out and none live, prints one line per group", async () => {
    writeFileSync(
      configFile,
      yaml.dump({ ...ONE_GROUPING, groups: 10_000, group_size: 100, reads: 100, writes: 1 }),
    );
    await client.put(ONE_GROUPING.id_key).value("1000000").exec();
    const { code, text } = await status();
    expect(code).toBe(0);
    const lines = text.split("\n");
    // A header, three lines per grouping, one per group, the advertisements.
    expect(lines).toHaveLength(1 + 3 * 100 + 10_000 + 1);
    expect(lines).toContain("group 9999: members none; missing 999900..999999");
  });
});

describe("idRangesText", () => {
  test.each([
    [[], ""],
    [[4], "4"],
    [[4, 5], "4, 5"],
    [[3, 5, 6, 7], "3, 5..7"],
    [[0, 1, 2, 9, 11, 12, 13, 14], "0..2, 9, 11..14"],
  ])("%j → %j", (ids, text) => {
    expect(idRangesText(ids)).toBe(text);
  });
});
