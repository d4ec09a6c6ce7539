import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import type { Subscription } from "rxjs";
import type { ClusterNode } from "../src/runtime/clusterNode.js";

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

export function etcdVersion(): string {
  const out = spawnSync(process.env.ETCD_BIN || "etcd", ["--version"], { encoding: "utf8" });
  return out.stdout?.split("\n")[0]?.trim() ?? "unknown";
}

/**
 * Resolves with `performance.now()` taken in the status callback in which `predicate` first
 * holds (checked on every status change of `nodes`, and once at once); after `timeoutMs` rejects
 * with the error `onTimeout` makes.
 */
export function whenStatus(
  nodes: readonly ClusterNode[],
  predicate: () => boolean,
  timeoutMs: number,
  onTimeout: () => Error,
): Promise<number> {
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
