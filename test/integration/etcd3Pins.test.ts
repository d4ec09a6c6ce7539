import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Etcd3 } from "etcd3";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { TcpProxy } from "../support/tcpProxy.js";
import { waitUntil } from "../support/waitUntil.js";

/**
 * Pins of etcd3 1.1.2 behaviours that src/etcd/watchStream.ts exists to avoid. Each test fails when
 * etcd3 stops behaving this way, which is the moment to reconsider the workaround.
 */
describe("etcd3's own Watcher (pinned behaviours)", () => {
  let etcd: EtcdCluster;

  beforeEach(async () => {
    etcd = await startEtcd();
  });

  afterEach(async () => {
    await etcd.stop();
  });

  test("crashes its process when a watch etcd cancelled after a compaction is cancelled again", async () => {
    const script = fileURLToPath(new URL("../support/pins/etcd3WatcherCrash.mjs", import.meta.url));
    const child = spawn(process.execPath, [script, etcd.endpoints[0] ?? ""], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const exitCode = await new Promise<number | null>((resolve) => child.once("close", resolve));

    expect(stdout).toContain("compacted at");
    expect(stdout).toContain("watcher error: Watcher canceled");
    expect(stdout).not.toContain("survived");
    expect(stderr).toContain("Failed to find watcher for IWatchResponse");
    expect(exitCode).not.toBe(0);
  });

  test("skips catch-up events when its stream breaks right after the create reply", async () => {
    const proxy = await TcpProxy.forEndpoint(etcd.endpoints[0] ?? "");
    const writer = etcd.client();
    const catchUp = Array.from({ length: 20 }, (_, i) => `pin/${i}`);
    const lossesSeen: string[][] = [];
    try {
      // The trial is repeated a bounded number of times: the loss needs the catch-up events to
      // arrive in a later chunk than the create reply, which etcd's 100 ms sync loop makes likely
      // but not certain.
      for (let trial = 0; trial < 5 && lossesSeen.length === 0; trial++) {
        const first = await writer.put(`pin/${trial}/start`).value("x");
        for (const key of catchUp) await writer.put(`${key}/${trial}`).value("v");
        const client = new Etcd3({ hosts: [proxy.endpoint], dialTimeout: 1000 });
        const received = new Set<string>();
        try {
          const watcher = client
            .watch()
            .prefix("pin/")
            .startRevision(String(Number(first.header.revision) + 1))
            .watcher();
          let cut = false;
          watcher.on("connected", () => {
            if (cut) return;
            cut = true;
            proxy.setMode("reset");
            setTimeout(() => proxy.setMode("pass"), 50);
          });
          watcher.on("put", (kv) => received.add(kv.key.toString()));
          await waitUntil("the watcher to attach again", () => cut && watcher.id !== null);
          await writer.put(`pin/${trial}/after`).value("x");
          await waitUntil("the event written after the break", () => received.has(`pin/${trial}/after`));
          const missed = catchUp.map((key) => `${key}/${trial}`).filter((key) => !received.has(key));
          if (missed.length > 0) lossesSeen.push(missed);
          await watcher.cancel();
        } finally {
          client.close();
        }
      }
    } finally {
      await proxy.close();
    }
    expect(lossesSeen.length).toBeGreaterThan(0);
  });
});
