import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { CLI_BIN, cliEnv, PACKAGE_ROOT } from "../cli/local/cliProcess.js";
import type { HistoryRecord } from "../runtime/history.js";
import type { ProcessFate } from "./historyChecker.js";
import { type ProxyMode, type ProxyModeOptions, TcpProxy } from "./tcpProxy.js";
import { type LogLine, type ProcessExit, TestProcess } from "./testProcess.js";

const STOP_GRACE_MS = 5_000;

export interface NodeProcessOptions {
  name: string;
  /** Client URLs of the etcd members; the node reaches each through its own proxy. */
  etcdEndpoints: readonly string[];
  config: string;
  historyFile: string;
  leaseTtlSeconds: number;
  /** `node` (default), or `serve`: the example server beside the node, on a free HTTP port. */
  command?: "node" | "serve";
  /** Called with the proxies before the process starts, e.g. to arm a lost reply for its first requests. */
  beforeStart?: (proxies: readonly TcpProxy[]) => void;
  /** The lease watchdog process; default true, like the CLI. False: a killed process fails over by its TTL. */
  watchdog?: boolean;
  /** `--state-dir`: where the node keeps its ID across restarts (a directory the caller owns). */
  stateDir?: string;
}

export type { LogLine } from "./testProcess.js";
export type Exit = ProcessExit;

/** The CLI runs from `dist/`: in a checkout without a build, build it first. */
function ensureBuilt(): void {
  const entry = join(PACKAGE_ROOT, "dist", "src", "cli", "main.js");
  if (existsSync(entry)) return;
  if (existsSync(join(PACKAGE_ROOT, "tsconfig.json")))
    spawnSync("npx", ["tsc", "-p", "tsconfig.json"], { cwd: PACKAGE_ROOT, stdio: "ignore" });
  if (!existsSync(entry))
    throw new Error(`the rdeebee-cluster CLI is not built: ${entry} is missing (run npx tsc)`);
}

const live = new Set<NodeProcess>();

function killLiveByPid(): void {
  for (const node of live) node.signalPid("SIGKILL");
}

process.on("exit", killLiveByPid);

/** SIGKILLs, by pid, every node process still running; for test cleanup. */
export async function killAllNodeProcesses(): Promise<void> {
  const running = [...live];
  killLiveByPid();
  await Promise.all(running.map((node) => node.exited));
}

let serveHistory: boolean | undefined;

/** Whether `rdeebee-cluster serve` takes `--history-file` (it writes no history otherwise). */
export function serveWritesHistory(): boolean {
  serveHistory ??= spawnSync(process.execPath, [CLI_BIN, "serve", "--help"], {
    cwd: PACKAGE_ROOT,
    encoding: "utf8",
  }).stdout.includes("--history-file");
  return serveHistory;
}

const CLOCK_TICKS_PER_SECOND = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout) || 100;

/**
 * One `rdeebee-cluster node` process, reaching every etcd member through its own TCP proxy and
 * appending its history to a file. Its stderr JSON lines are kept. Signals go to its pid only.
 */
export class NodeProcess {
  readonly lines: LogLine[] = [];
  readonly exited: Promise<Exit>;
  private readonly process: TestProcess;
  private paused = false;
  private killedOnPurpose = false;
  private killedAtMs: number | undefined;
  private stopRequested = false;

  private constructor(
    readonly options: NodeProcessOptions,
    readonly proxies: readonly TcpProxy[],
    args: readonly string[],
  ) {
    this.process = new TestProcess(process.execPath, [CLI_BIN, ...args], {
      cwd: PACKAGE_ROOT,
      env: cliEnv(),
      onLine: (line) => this.lines.push(line),
    });
    live.add(this);
    this.exited = this.process.exited.then((exit) => {
      live.delete(this);
      return exit;
    });
  }

  static async spawn(options: NodeProcessOptions): Promise<NodeProcess> {
    ensureBuilt();
    const proxies = await Promise.all(options.etcdEndpoints.map((e) => TcpProxy.forEndpoint(e)));
    options.beforeStart?.(proxies);
    const serve = options.command === "serve";
    const args = [
      serve ? "serve" : "node",
      ["--etcd", proxies.map((p) => p.endpoint).join(",")],
      ["--node", options.name],
      ["--lease-ttl", String(options.leaseTtlSeconds)],
      !serve || serveWritesHistory() ? ["--history-file", options.historyFile] : [],
      serve ? ["--port", "0"] : [],
      ["--config", options.config],
      ["--log-level", "info"],
      options.watchdog === false ? ["--no-watchdog"] : [],
      options.stateDir === undefined ? [] : ["--state-dir", options.stateDir],
    ].flat();
    return new NodeProcess(options, proxies, args);
  }

  /** Delivers the request one of its proxies held back (`hold-request`); fails when none held one. */
  async releaseHeldRequest(): Promise<void> {
    const released = await Promise.allSettled(this.proxies.map((p) => p.releaseHeldRequest()));
    if (!released.some((r) => r.status === "fulfilled")) throw new Error(`${this.name}: no request was held`);
  }

  get name(): string {
    return this.options.name;
  }

  get pid(): number | undefined {
    return this.process.pid;
  }

  get running(): boolean {
    return this.process.exit === undefined;
  }

  get isPaused(): boolean {
    return this.paused;
  }

  get exit(): Exit | undefined {
    return this.process.exit;
  }

  /** How it ended so far, for the history checker. */
  fate(): ProcessFate {
    return {
      name: this.name,
      exit: this.process.exit,
      killed: this.killedOnPurpose,
      killedAtMs: this.killedAtMs,
      stopped: this.stopRequested,
    };
  }

  /** The example server's base URL, once `serve` has logged it. */
  get url(): string | undefined {
    const line = this.lines.find((l) => l.message === "serving" && typeof l.url === "string");
    return line?.url as string | undefined;
  }

  /** CPU time (user + system) the process has used so far, from /proc; undefined once it is gone. */
  cpuMs(): number | undefined {
    if (!this.running || this.pid === undefined) return undefined;
    try {
      const stat = readFileSync(`/proc/${this.pid}/stat`, "utf8");
      // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const ticks = Number(fields[11]) + Number(fields[12]);
      return (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
    } catch {
      return undefined;
    }
  }

  /** The role of the last `transition` line, or `starting`. */
  get role(): string {
    for (let i = this.lines.length - 1; i >= 0; i--) {
      const line = this.lines[i];
      if (line?.message === "transition" && typeof line.role === "string") return line.role;
    }
    return "starting";
  }

  signalPid(signal: NodeJS.Signals): void {
    this.process.signal(signal);
  }

  /** SIGKILL on purpose: the checker does not count this exit against the node. */
  async kill9(): Promise<Exit> {
    this.killedOnPurpose = true;
    // The same monotonic clock as the `mono` of the history records, for the checker.
    this.killedAtMs ??= Number(process.hrtime.bigint()) / 1e6;
    this.signalPid("SIGKILL");
    return this.exited;
  }

  pause(): void {
    this.signalPid("SIGSTOP");
    this.paused = true;
  }

  resume(): void {
    this.signalPid("SIGCONT");
    this.paused = false;
  }

  /** SIGTERM (after SIGCONT, in case it is paused), SIGKILL if it has not exited after a grace period. */
  async stop(graceMs = STOP_GRACE_MS): Promise<Exit> {
    if (this.running) this.stopRequested = true;
    this.resume();
    this.signalPid("SIGTERM");
    const escalation = setTimeout(() => this.signalPid("SIGKILL"), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(escalation);
    }
  }

  /** Puts every proxy between this node and etcd into `mode`. */
  setNetwork(mode: ProxyMode, options?: ProxyModeOptions): void {
    for (const proxy of this.proxies) proxy.setMode(mode, options);
  }

  /** Cuts this node off from etcd for `ms` (`reset` or `blackhole`), then restores the link. */
  async cutLink(mode: "reset" | "blackhole", ms: number): Promise<void> {
    this.setNetwork(mode);
    await sleep(ms);
    // Bytes a blackhole dropped leave the connection unusable; a real TCP stack would time it out.
    if (mode === "blackhole") this.setNetwork("reset");
    this.setNetwork("pass");
  }

  /** Connections its proxies have accepted from it so far. */
  get connectionsAccepted(): number {
    return this.proxies.reduce((sum, p) => sum + p.connectionsAccepted, 0);
  }

  /** Replies its proxies have dropped in `drop-reply` mode so far. */
  get repliesDropped(): number {
    return this.proxies.reduce((sum, p) => sum + p.repliesDropped, 0);
  }

  async closeProxies(): Promise<void> {
    await Promise.all(this.proxies.map((p) => p.close()));
  }

  warnings(): LogLine[] {
    return this.lines.filter((l) => l.level === "warn" || l.level === "error");
  }

  /** The history file's records; a line cut short by `kill -9` is dropped. */
  history(): HistoryRecord[] {
    if (!existsSync(this.options.historyFile)) return [];
    return readFileSync(this.options.historyFile, "utf8")
      .split("\n")
      .flatMap((line) => {
        if (line.trim() === "") return [];
        try {
          return [JSON.parse(line) as HistoryRecord];
        } catch {
          return [];
        }
      });
  }
}
