/**
 * The testing kit's example: the example server (`rdeebee-cluster serve`) model-tested across the
 * generated failover paths, using only the package's public entries. Writes go to every server
 * during each step, and each step ends only once the new primary has acknowledged one; afterwards etcd's history must keep every acknowledged write, hold no write
 * from a deposed primary, and the servers reported exactly one primary after each step.
 * A short path set by default; KIT_ALL_PATHS=1 runs every generated path.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { ClusterLayout } from "rdeebee-cluster";
import {
  type AcknowledgedWrite,
  checkFencedWrites,
  clusterModelPaths,
  type EtcdCluster,
  expectedRoles,
  FailoverDriver,
  NodeProcess,
  readEtcdHistory,
  type ServerHandle,
  startEtcd,
} from "rdeebee-cluster/testing";
import { afterEach, describe, expect, test } from "vitest";

const TTL_SECONDS = 2;
const SHORT_PATHS = new Set(["PRIMARY_CRASHES", "PRIMARY_STOPS"]);
const paths = clusterModelPaths().filter((p) => process.env.KIT_ALL_PATHS === "1" || SHORT_PATHS.has(p.name));
const CONFIG = {
  dbname: "RDeeBee",
  groups: 3,
  group_size: 3,
  reads: 3,
  writes: 2,
  id_key: "id_key",
  failover_id_key_prefix: "failover_id",
};
const layout = new ClusterLayout(CONFIG);
const PRIMARY_KEY = layout.keys.leaderKey(0, 1);
const RECORDS = layout.keys.commitRecordKey(0, "");
const REQUEST_TIMEOUT_MS = 2_000;
const WRITE_EVERY_MS = 100;

/** A `serve` process as the kit's failover driver acts on it; its role comes from its /readyz. */
function handleOf(node: NodeProcess): ServerHandle {
  return {
    name: node.name,
    role: async () => {
      if (!node.running) return `exited ${JSON.stringify(node.exit)}`;
      if (node.url === undefined) return "not serving yet";
      if (node.isPaused) return undefined;
      try {
        const res = await fetch(`${node.url}/readyz`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
        return ((await res.json()) as { role?: string }).role;
      } catch {
        return undefined;
      }
    },
    kill9: () => node.kill9(),
    pause: () => node.pause(),
    resume: () => node.resume(),
    stop: () => node.stop(),
  };
}

/** PUTs a fresh value to every running server every 100 ms; keeps what a server acknowledged (200). */
class Writer {
  readonly acknowledged: AcknowledgedWrite[] = [];
  attempts = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly inFlight = new Set<string>();
  private readonly requests = new Set<Promise<void>>();

  constructor(private readonly nodes: () => readonly NodeProcess[]) {}

  start(): void {
    this.timer = setInterval(() => this.tick(), WRITE_EVERY_MS);
  }

  /** Waits for one more acknowledged write than now: the primary accepts writes again. */
  async nextAcknowledged(timeoutMs = 20_000): Promise<void> {
    const count = this.acknowledged.length;
    const deadline = Date.now() + timeoutMs;
    while (this.acknowledged.length === count) {
      if (Date.now() > deadline) throw new Error(`no write acknowledged within ${timeoutMs} ms`);
      await sleep(WRITE_EVERY_MS);
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await Promise.all(this.requests);
  }

  private tick(): void {
    for (const node of this.nodes()) {
      if (!node.running || node.isPaused || node.url === undefined || this.inFlight.has(node.name)) continue;
      const key = `k${this.attempts % 5}`;
      const value = `v${this.attempts++}`;
      this.inFlight.add(node.name);
      const request = this.put(node, key, value).finally(() => {
        this.inFlight.delete(node.name);
        this.requests.delete(request);
      });
      this.requests.add(request);
    }
  }

  private async put(node: NodeProcess, key: string, value: string): Promise<void> {
    try {
      const res = await fetch(`${node.url}/kv/${key}`, {
        method: "PUT",
        body: value,
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      const body = (await res.json()) as { revision?: number };
      if (res.status === 200)
        this.acknowledged.push({ key: `${RECORDS}${key}`, value, node: node.name, revision: body.revision });
    } catch {
      // No answer: the outcome is unknown, so nothing was acknowledged.
    }
  }
}

describe("the testing kit's example: the example server across generated failover paths", () => {
  let etcd: EtcdCluster | undefined;
  let dir: string | undefined;
  const nodes: NodeProcess[] = [];

  afterEach(async () => {
    await Promise.all(nodes.map((node) => node.stop().then(() => node.closeProxies())));
    nodes.length = 0;
    await etcd?.stop();
    etcd = undefined;
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test.each(paths)(
    "$name",
    async (path) => {
      etcd = await startEtcd({ members: 3 });
      const work = mkdtempSync(join(tmpdir(), "kit-example-"));
      dir = work;
      const config = join(work, "config.json");
      writeFileSync(config, JSON.stringify(CONFIG));
      const cluster = etcd;
      const start = async (): Promise<ServerHandle> => {
        const name = `db-${nodes.length}`;
        const node = await NodeProcess.spawn({
          name,
          command: "serve",
          etcdEndpoints: cluster.endpoints,
          config,
          historyFile: join(work, `${name}.history`),
          leaseTtlSeconds: TTL_SECONDS,
        });
        nodes.push(node);
        return handleOf(node);
      };
      const servers = [await start(), await start(), await start()];
      const driver = new FailoverDriver({
        etcd,
        servers,
        startServer: start,
        leaseTtlMs: TTL_SECONDS * 1000,
      });
      await driver.settle(expectedRoles(3));

      const writer = new Writer(() => nodes);
      writer.start();
      const outcomes = [];
      try {
        await writer.nextAcknowledged();
        for (const step of path.steps) {
          outcomes.push(await driver.apply(step));
          await writer.nextAcknowledged();
        }
      } finally {
        await writer.stop();
      }

      for (const outcome of outcomes) {
        expect(Object.values(outcome.roles).filter((role) => role === "primary")).toHaveLength(1);
        if (outcome.step.expected.primaryAfter === "formerBackup")
          expect(outcome.after.primary).toBe(outcome.before.backup);
      }
      const report = checkFencedWrites({
        history: await readEtcdHistory(etcd.client()),
        acknowledged: writer.acknowledged,
        isPrimaryKey: (key) => key === PRIMARY_KEY,
        fenceOf: (event) => {
          if (!event.key.startsWith(RECORDS)) return undefined;
          const record = JSON.parse(event.value) as { node: string; token: number };
          return { primaryKey: PRIMARY_KEY, token: record.token, writer: record.node };
        },
        clientValueOf: (event) => (JSON.parse(event.value) as { value: string }).value,
        holderOf: (value) => (JSON.parse(value) as { name?: string }).name,
      });
      expect(report.messages).toEqual([]);
      expect(writer.acknowledged.length).toBeGreaterThan(0);
      console.info(
        `${path.name}: ${writer.attempts} writes, ${writer.acknowledged.length} acknowledged, primaries ${outcomes.map((o) => `${o.before.primary}->${o.after.primary}`).join(", ")}`,
      );
    },
    180_000,
  );
});
