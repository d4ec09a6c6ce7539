import { type SpawnSyncReturns, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { CLI_BIN, cliEnv, PACKAGE_ROOT } from "../../src/cli/local/cliProcess.js";

export { CLI_BIN, cliEnv, PACKAGE_ROOT } from "../../src/cli/local/cliProcess.js";

/** Builds `dist/` when it is missing: the test command builds first, a fresh checkout may not have. */
export function ensureBuilt(): void {
  const entry = join(PACKAGE_ROOT, "dist", "src", "cli", "main.js");
  if (existsSync(entry)) return;
  const build = spawnSync("npx", ["tsc", "-p", "tsconfig.json"], { cwd: PACKAGE_ROOT, encoding: "utf8" });
  if (!existsSync(entry)) throw new Error(`build failed:\n${build.stdout}${build.stderr}`);
}

export interface RunCliOptions {
  /** Added to the environment, which has no node settings of its own (see `cliEnv`). */
  env?: NodeJS.ProcessEnv;
  /** Flags for node itself, e.g. `--max-old-space-size=64`. */
  nodeFlags?: readonly string[];
}

/** Runs the built CLI to its end (60 s at most) and returns what it printed and its exit status. */
export function runCli(args: readonly string[], options: RunCliOptions = {}): SpawnSyncReturns<string> {
  const result = spawnSync(process.execPath, [...(options.nodeFlags ?? []), CLI_BIN, ...args], {
    cwd: PACKAGE_ROOT,
    encoding: "utf8",
    timeout: 60_000,
    maxBuffer: 64 * 1024 * 1024,
    env: cliEnv({ NO_COLOR: "1", ...options.env }),
  });
  if (result.error) throw result.error;
  return result;
}

/** True while a process with this pid exists (signal 0 checks without sending anything). */
export function isProcessAlive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ESRCH") return false;
    throw error;
  }
}
