/** `serveCommand` in this process: the history and inspection files it is given are written. */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { serveCommand } from "../../src/cli/serveCommand.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { waitUntil } from "../support/waitUntil.js";

const CONFIG_FILE = fileURLToPath(new URL("../../config.yaml", import.meta.url));

const linesOf = (file: string): Record<string, unknown>[] =>
  existsSync(file)
    ? readFileSync(file, "utf8")
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => JSON.parse(l) as Record<string, unknown>)
    : [];

describe("serveCommand with --history-file and --inspect-file", () => {
  let etcd: EtcdCluster;
  let dir: string;

  beforeEach(async () => {
    etcd = await startEtcd();
    dir = mkdtempSync(join(tmpdir(), "serve-command-"));
  });

  afterEach(async () => {
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("writes the node's history and inspection events, and stops on SIGTERM with exit code 0", async () => {
    const historyFile = join(dir, "history.jsonl");
    const inspectFile = join(dir, "inspect.jsonl");
    const before = new Set(process.listeners("SIGTERM"));
    const running = serveCommand({
      port: "0",
      config: CONFIG_FILE,
      etcd: etcd.endpoints.join(","),
      node: "serve-in-process",
      leaseTtl: "2",
      logLevel: "error",
      historyFile,
      inspectFile,
    });
    await waitUntil("the node to become primary, in its history", () =>
      linesOf(historyFile).some((r) => r.kind === "transition" && r.role === "primary"),
    );
    expect(linesOf(historyFile).find((r) => r.kind === "identity")).toMatchObject({
      node: "serve-in-process",
      id: 0,
    });
    expect(linesOf(inspectFile).length).toBeGreaterThan(0);

    // Only the command's own listener, not every SIGTERM listener of this test process.
    const added = process.listeners("SIGTERM").filter((l) => !before.has(l));
    expect(added).toHaveLength(1);
    for (const listener of added) listener("SIGTERM");
    expect(await running).toBe(0);
    expect(linesOf(historyFile).at(-1)).toMatchObject({ kind: "transition", role: "stopped" });
  });
});
