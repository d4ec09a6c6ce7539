import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { ETCD_PASSWORD_ENV, NODE_SETTINGS_ENV } from "../../config/index.js";

/**
 * One `rdeebee-cluster` child process (`node`, `serve`, ...) and its JSON log lines: how `local`
 * runs its nodes, and how the tests run node processes.
 */

/** The CLI's entry, found from here whether this runs from `src/` or from `dist/src/`. */
export const CLI_BIN = (() => {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    const bin = join(dir, "bin", "rdeebee-cluster.js");
    if (existsSync(bin)) return bin;
    if (dirname(dir) === dir) throw new Error("bin/rdeebee-cluster.js not found above this module");
  }
})();

/** The package's root folder, where `bin/` is. */
export const PACKAGE_ROOT = dirname(dirname(CLI_BIN));

/** This process's environment without the node settings (the etcd password too) and LOG_LEVEL, which would override a child's flags. */
export function cliEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of [...Object.values(NODE_SETTINGS_ENV), ETCD_PASSWORD_ENV, "LOG_LEVEL"]) delete env[name];
  return { ...env, ...extra };
}

export interface LogLine {
  level?: string;
  message?: string;
  [field: string]: unknown;
}

/** A line of a child's stderr: its JSON object, or the text as a `raw` message. */
export function parseLogLine(raw: string): LogLine {
  try {
    const value: unknown = JSON.parse(raw);
    if (typeof value === "object" && value !== null) return value as LogLine;
  } catch {}
  return { level: "raw", message: raw };
}

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SpawnOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** In a process group of its own, so that a Ctrl-C meant for the parent does not reach it. */
  detached?: boolean;
  /** Called with every complete line of its stderr (JSON lines are parsed). */
  onLine?: (line: LogLine, raw: string) => void;
}

export interface CliProcessOptions extends SpawnOptions {
  /** Working directory; the package root by default. */
  cwd?: string;
}

/** A child process, its stderr read as log lines; signals go to its own pid, only while it runs. */
export class WatchedProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<ProcessExit>;
  private exitStatus: ProcessExit | undefined;
  private failure: string | undefined;
  private partial = "";

  constructor(command: string, args: readonly string[], options: SpawnOptions = {}) {
    this.child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ["ignore", "ignore", "pipe"],
      detached: options.detached ?? false,
    });
    this.child.stderr?.setEncoding("utf8");
    this.child.stderr?.on("data", (chunk: string) => this.read(chunk, options.onLine));
    this.exited = new Promise((resolve) => {
      const end = (exit: ProcessExit) => {
        this.exitStatus ??= exit;
        resolve(this.exitStatus);
      };
      this.child.once("error", (err) => {
        this.failure = err.message;
        end({ code: null, signal: null });
      });
      this.child.once("exit", (code, signal) => end({ code, signal }));
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.exitStatus === undefined && this.child.pid !== undefined;
  }

  get exit(): ProcessExit | undefined {
    return this.exitStatus;
  }

  /** Why it could not be started, if it could not. */
  get spawnError(): string | undefined {
    return this.failure;
  }

  /** Sends `signal` to its pid; false when it is not running. */
  signal(signal: NodeJS.Signals): boolean {
    if (!this.running || this.child.pid === undefined) return false;
    process.kill(this.child.pid, signal);
    return true;
  }

  private read(chunk: string, onLine: SpawnOptions["onLine"]): void {
    const lines = (this.partial + chunk).split("\n");
    this.partial = lines.pop() ?? "";
    for (const raw of lines) if (raw.trim() !== "") onLine?.(parseLogLine(raw), raw);
  }
}

/** A running `rdeebee-cluster` command. */
export class CliProcess extends WatchedProcess {
  constructor(args: readonly string[], options: CliProcessOptions = {}) {
    super(process.execPath, [CLI_BIN, ...args], {
      ...options,
      cwd: options.cwd ?? PACKAGE_ROOT,
      env: options.env ?? cliEnv(),
    });
  }
}
