import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Etcd3 } from "etcd3";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { timelineHtml, timelineText } from "../../src/cli/timelineFormat.js";
import { silentLogger } from "../../src/logging.js";
import { type ClusterNode, createClusterNode } from "../../src/runtime/clusterNode.js";
import { InspectionFileWriter } from "../../src/runtime/inspection.js";
import { crashNode } from "../../src/runtime/testing.js";
import { readInspectionFiles, roleTimeline } from "../../src/runtime/timeline.js";
import { type NodeFactory, ONE_GROUPING, startEtcdWithNodes } from "../support/clusterNodes.js";
import type { EtcdCluster } from "../support/etcdCluster.js";
import { leadershipSettled } from "../support/invariants.js";
import { waitUntil } from "../support/waitUntil.js";

const CHROMIUM = "/usr/bin/chromium";

describe("inspection files and the role timeline of a recorded failover", () => {
  let etcd: EtcdCluster;
  let client: Etcd3;
  let dir: string;
  let factory: NodeFactory;
  const nodes: ClusterNode[] = [];
  const writers: InspectionFileWriter[] = [];

  beforeEach(async () => {
    ({ etcd, client, factory } = await startEtcdWithNodes({ config: ONE_GROUPING }));
    dir = mkdtempSync(join(tmpdir(), "rdeebee-inspect-"));
  });

  afterEach(async () => {
    await Promise.all(nodes.filter((n) => n.role !== "stopped").map((n) => n.stop()));
    nodes.length = 0;
    for (const w of writers.splice(0)) w.close();
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function recordFailover(): Promise<{ files: string[]; crashed: string; promoted: string }> {
    for (let i = 0; i < 3; i++) {
      const name = `inspected-${i}`;
      const writer = new InspectionFileWriter(join(dir, `${name}.jsonl`), name);
      writers.push(writer);
      nodes.push(
        createClusterNode({
          cluster: factory.layout,
          settings: factory.settings(name),
          logger: silentLogger(),
          inspect: writer.inspect,
        }),
      );
    }
    await Promise.all(nodes.map((n) => n.start()));
    await waitUntil("a primary and a backup", () => leadershipSettled(client, factory.layout, nodes));
    const primary = nodes.find((n) => n.role === "primary");
    const backup = nodes.find((n) => n.role === "backup");
    if (!primary || !backup) throw new Error("no leaders");
    crashNode(primary);
    await waitUntil("the backup to be promoted", () => backup.role === "primary", 10_000);
    return { files: writers.map((w) => w.path), crashed: primary.status.name, promoted: backup.status.name };
  }

  test("the timeline shows every node's roles, the backup's promotion included", async () => {
    const { files, promoted } = await recordFailover();
    const records = readInspectionFiles(files);
    expect(records.some((r) => r.type === "@xstate.action" && r.action?.type === "campaign")).toBe(true);
    expect(
      records.some(
        (r) => r.type === "@xstate.event" && (r.event as { type: string }).type === "LEADERS_CHANGED",
      ),
    ).toBe(true);

    const timeline = roleTimeline(records);
    const transitions = timeline.flatMap((e) => (e.kind === "transition" ? [e] : []));
    expect(
      transitions.find((e) => e.node === promoted && e.fromRole === "backup" && e.toRole === "primary"),
    ).toBeDefined();
    for (const name of ["inspected-0", "inspected-1", "inspected-2"]) {
      expect(
        transitions.find((e) => e.node === name && e.toRole === "follower"),
        name,
      ).toBeDefined();
    }
    expect(timelineText(timeline)).toMatch(new RegExp(`${promoted}\\s+backup -> primary`));
  });

  test("the HTML timeline, opened in headless Chromium, shows the promotion", async () => {
    if (spawnSync(CHROMIUM, ["--version"]).status !== 0) {
      throw new Error(
        `${CHROMIUM} not found: install Debian's chromium package (npm test does so when run as root)`,
      );
    }
    const { files, promoted } = await recordFailover();
    const page = join(dir, "timeline.html");
    writeFileSync(page, timelineHtml(roleTimeline(readInspectionFiles(files))));
    const chromium = spawnSync(
      CHROMIUM,
      [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        `--user-data-dir=${join(dir, "chromium-profile")}`,
        "--dump-dom",
        `file://${page}`,
      ],
      { encoding: "utf8", timeout: 60_000 },
    );
    expect(chromium.status, chromium.stderr).toBe(0);
    const dom = chromium.stdout;
    expect(dom).toContain('<table id="timeline">');
    expect(dom).toContain(`data-node="${promoted}" data-role="primary"`);
    expect(dom).toMatch(/backup → <b[^>]*>primary<\/b>/);
  });
});
