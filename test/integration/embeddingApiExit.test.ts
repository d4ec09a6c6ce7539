import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { freePort, loopbackUrl } from "../../src/cli/local/etcdMember.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";

const run = promisify(execFile);
const BUILT_PACKAGE = resolve(import.meta.dirname, "../../dist/src/index.js");

/**
 * A process whose only work is a node that fails to start must exit on its own: after the
 * rejection, nothing the node started (client, channels, timers, signal listeners) is left.
 * Runs the built package; prints the error's name and the resources still active.
 */
function script(endpoint: string, start: string): string {
  return `
    const { createClusterNode, silentLogger } = await import(${JSON.stringify(BUILT_PACKAGE)});
    const node = createClusterNode({
      cluster: { dbname: "RDeeBee", groups: 3, group_size: 3, reads: 3, writes: 2, id_key: "id_key", failover_id_key_prefix: "failover_id" },
      settings: { leaseTtlSeconds: 2, keepaliveIntervalMs: 600, etcdEndpoints: [${JSON.stringify(endpoint)}], nodeName: "exit-check", address: "127.0.0.1:1" },
      logger: silentLogger(),
    });
    try {
      await node.start(${start});
      console.log("started");
    } catch (err) {
      console.log(err.name);
    }
    setImmediate(() => console.error(JSON.stringify(process.getActiveResourcesInfo())));
  `;
}

async function runScript(source: string): Promise<{ stdout: string; stderr: string; exited: boolean }> {
  if (!existsSync(BUILT_PACKAGE))
    throw new Error(`${BUILT_PACKAGE} is missing: build first (npx tsc -p tsconfig.json)`);
  // Generous: a process that hangs is killed after 60 s, which is the failure this test looks for.
  const result = await run(process.execPath, ["--input-type=module", "-e", source], {
    timeout: 60_000,
  }).catch((err: { stdout?: string; stderr?: string; killed?: boolean }) => ({
    stdout: err.stdout ?? "",
    stderr: `${err.stderr ?? ""}${err.killed ? " (killed: it did not exit)" : ""}`,
    killed: err.killed,
  }));
  return { stdout: result.stdout, stderr: result.stderr, exited: !("killed" in result && result.killed) };
}

describe("a start that fails leaves nothing running", () => {
  test("start({ timeoutMs }) against a closed port: EtcdUnreachableError, then the process exits by itself", async () => {
    const endpoint = loopbackUrl(await freePort());
    const result = await runScript(script(endpoint, "{ timeoutMs: 1500 }"));
    expect(result.stdout.trim()).toBe("EtcdUnreachableError");
    expect(result.exited, result.stderr).toBe(true);
  }, 90_000);

  test("start({ signal }) aborted: StartAbortedError, then the process exits by itself", async () => {
    const endpoint = loopbackUrl(await freePort());
    const result = await runScript(script(endpoint, "{ signal: AbortSignal.timeout(500) }"));
    expect(result.stdout.trim()).toBe("StartAbortedError");
    expect(result.exited, result.stderr).toBe(true);
  }, 90_000);
});

describe("a node that read another grouping's leaders once leaves nothing running after stop", () => {
  let etcd: EtcdCluster;
  beforeAll(async () => {
    etcd = await startEtcd();
  });
  afterAll(async () => {
    await etcd?.stop();
  });

  test("firstValueFrom(node.leadersOf(0)), then stop(): no timer or socket is left", async () => {
    const source = `
      const { firstValueFrom } = await import("rxjs");
      const { createClusterNode, silentLogger } = await import(${JSON.stringify(BUILT_PACKAGE)});
      const node = createClusterNode({
        cluster: { dbname: "RDeeBee", groups: 3, group_size: 3, reads: 3, writes: 2, id_key: "id_key", failover_id_key_prefix: "failover_id" },
        settings: { leaseTtlSeconds: 2, keepaliveIntervalMs: 600, etcdEndpoints: ${JSON.stringify(etcd.endpoints)}, nodeName: "reader", address: "127.0.0.1:1" },
        logger: silentLogger(),
      });
      await node.start({ timeoutMs: 30000 });
      await firstValueFrom(node.leadersOf(0));
      await node.stop();
      setImmediate(() => console.log(JSON.stringify(process.getActiveResourcesInfo())));
    `;
    const result = await runScript(source);
    expect(result.exited, result.stderr).toBe(true);
    const left = JSON.parse(result.stdout.trim().split("\n").at(-1) ?? "[]") as string[];
    expect(left.filter((resource) => resource === "Timeout" || resource === "TCPSocketWrap")).toEqual([]);
  }, 90_000);
});
