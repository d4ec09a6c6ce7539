import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Etcd3 } from "etcd3";
import yaml from "js-yaml";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { main } from "../../src/cli/main.js";
import type { ClusterStatus } from "../../src/runtime/clusterStatus.js";
import { NodeFactory, SEED_CONFIG } from "../support/clusterNodes.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { leadershipSettled } from "../support/invariants.js";
import { waitUntil } from "../support/waitUntil.js";

const CONFIG = { ...SEED_CONFIG, groups: 3 };

describe("rdeebee-cluster status", () => {
  let etcd: EtcdCluster;
  let client: Etcd3;
  let factory: NodeFactory;
  let dir: string;
  let configFile: string;

  beforeEach(async () => {
    etcd = await startEtcd();
    client = etcd.client();
    factory = new NodeFactory({ endpoints: etcd.endpoints, config: CONFIG });
    dir = mkdtempSync(join(tmpdir(), "rdeebee-status-"));
    configFile = join(dir, "config.yaml");
    writeFileSync(configFile, yaml.dump(CONFIG));
  });

  afterEach(async () => {
    await factory.stopAll();
    await etcd.stop();
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
    const nodes = await factory.startMany(4);
    await waitUntil("a primary and a backup", () => leadershipSettled(client, factory.layout, nodes));
    const victim = nodes.find((n) => n.role === "follower");
    const victimId = victim?.id ?? -1;
    victim?.crash();
    await waitUntil(
      "the advertisement",
      () => client.get(factory.layout.keys.failoverKey(victimId)).string(),
      10_000,
    );

    const json = await status("--json");
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.text) as ClusterStatus;
    const primary = nodes.find((n) => n.role === "primary");
    const backup = nodes.find((n) => n.role === "backup");
    expect(parsed.groupings[0]?.primary?.id).toBe(primary?.id);
    expect(parsed.groupings[0]?.backup?.id).toBe(backup?.id);
    expect(parsed.allocated).toBe(4);
    expect(parsed.groups.flatMap((g) => g.missing)).toEqual([victimId]);
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
});
