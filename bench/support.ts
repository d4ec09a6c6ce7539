import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import type { Subscription } from "rxjs";
import { type ClusterConfig, parseClusterConfig } from "../src/config/index.js";
import type { ClusterNode } from "../src/runtime/clusterNode.js";
import { crashNode } from "../src/runtime/testing.js";
import type { NodeFactory } from "../test/support/clusterNodes.js";

/** Finds the package root (the folder with this package's package.json) above `from`. */
export function packageRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    const manifest = join(dir, "package.json");
    if (existsSync(manifest)) {
      try {
        if ((JSON.parse(readFileSync(manifest, "utf8")) as { name?: string }).name === "rdeebee-cluster")
          return dir;
      } catch {
        // not ours; keep looking
      }
    }
    if (dirname(dir) === dir) return process.cwd();
  }
}

/** A whole-number flag at least `min`, or an error naming the flag. */
export function wholeNumberFlag(flag: string, raw: string, min: number): number {
  if (!/^\d+$/.test(raw) || Number(raw) < min) {
    throw new Error(`--${flag}: must be a whole number >= ${min}, got "${raw}"`);
  }
  return Number(raw);
}

/** A cluster config of the given shape whose every key name starts with `base`, so runs never see each other. */
export function freshKeysConfig(
  base: string,
  shape: Omit<ClusterConfig, "dbname" | "id_key" | "failover_id_key_prefix">,
  label: string,
): ClusterConfig {
  return parseClusterConfig(
    { ...shape, dbname: base, id_key: `${base}-id`, failover_id_key_prefix: `${base}-failover` },
    label,
  );
}

/** The fixed part of `settleMs`. */
export const SETTLE_BASE_MS = 200;

/**
 * The pause between "leaders are in place" and "the leader goes": a fixed part so that every
 * watcher is established, and a uniform random part over one keepalive interval (TTL/3, both
 * for the runtime and for etcd3's lease) so that the leader goes at a random phase of its
 * keepalive cycle in both the runtime and the baseline.
 */
export function settleMs(ttl: number): number {
  return SETTLE_BASE_MS + Math.random() * ((ttl * 1000) / 3);
}

export function etcdVersion(): string {
  const out = spawnSync(process.env.ETCD_BIN || "etcd", ["--version"], { encoding: "utf8" });
  return out.stdout?.split("\n")[0]?.trim() ?? "unknown";
}

/** Makes the error of a wait that timed out, from a message naming what was awaited. */
export type TimeoutError = (message: string) => Error;

const plainError: TimeoutError = (message) => new Error(message);

/**
 * Resolves with `performance.now()` taken in the status callback in which `predicate` first
 * holds (checked on every status change of `nodes`, and once at once); after `timeoutMs` rejects
 * with `fail`'s error, naming `what` was awaited.
 */
export function when(
  nodes: readonly ClusterNode[],
  predicate: () => boolean,
  timeoutMs: number,
  what: string,
  fail: TimeoutError = plainError,
): Promise<number> {
  const onTimeout = () => fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
  return new Promise((resolve, reject) => {
    const subscriptions: Subscription[] = [];
    let done = false;
    const finish = (settle: () => void) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      for (const s of subscriptions) s.unsubscribe();
      settle();
    };
    const check = () => {
      if (done || !predicate()) return;
      const at = performance.now();
      finish(() => resolve(at));
    };
    const timer = setTimeout(() => finish(() => reject(onTimeout())), timeoutMs);
    for (const node of nodes) subscriptions.push(node.status$.subscribe(check));
    if (done) for (const s of subscriptions) s.unsubscribe();
    check();
  });
}

/** Progress lines go to stderr; anomalies are also kept for the benchmark's report. */
export const anomalies: string[] = [];

export function progress(message: string): void {
  process.stderr.write(`${message}\n`);
}

export function anomaly(message: string): void {
  anomalies.push(message);
  progress(`ANOMALY: ${message}`);
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Races `promise` against a timer, cleared either way; on timeout rejects with `fail`'s error naming `what`. */
export function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
  what: string,
  fail: TimeoutError = plainError,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(fail(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Stops every node of `factory` gracefully; crashes whatever has not stopped within `timeoutMs`
 * (an anomaly, with `describe`'s view of the stuck nodes). How long it took and how many crashed.
 */
export async function stopNodes(
  factory: NodeFactory,
  label: string,
  timeoutMs: number,
  describe: (nodes: readonly ClusterNode[]) => string[] = () => [],
): Promise<{ ms: number; crashed: number }> {
  const t0 = performance.now();
  const giveUp = new AbortController();
  const stopped = await Promise.race([
    factory.stopAll().then(() => true),
    sleep(timeoutMs, false, { signal: giveUp.signal }).catch(() => false),
  ]).finally(() => giveUp.abort());
  const stuck = stopped ? [] : factory.nodes.filter((n) => n.role !== "stopped");
  if (stuck.length > 0) {
    const detail = describe(stuck).join("; ");
    anomaly(
      `${label}: stopAll did not finish within ${timeoutMs} ms; crashing ${stuck.length} node(s)${detail ? `: ${detail}` : ""}`,
    );
    for (const n of stuck) crashNode(n);
  }
  return { ms: performance.now() - t0, crashed: stuck.length };
}

/**
 * Runs a benchmark's `main`: exit code 0 once it is done (whatever it measured), 1 if it threw;
 * unhandled rejections become anomalies in its report; Ctrl-C exits so that the etcd harness's
 * exit hook stops its children; a lingering client handle cannot hang the run.
 */
export function runBenchmark(name: string, main: () => Promise<void>): void {
  process.on("unhandledRejection", (reason) => anomaly(`unhandled rejection: ${errorText(reason)}`));
  process.once("SIGINT", () => process.exit(130));
  main().then(
    () => {
      process.exitCode = 0;
      setTimeout(() => {
        progress(
          `note: open handles remained after cleanup (${process.getActiveResourcesInfo().join(", ")}); exiting`,
        );
        process.exit(0);
      }, 3_000).unref();
    },
    (err) => {
      progress(`${name} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      process.exitCode = 1;
    },
  );
}
