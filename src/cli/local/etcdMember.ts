import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createServer, type Server } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";

/**
 * One etcd member as a child process: the flags, the readiness check and the stopping of every
 * throwaway etcd this project starts (`rdeebee-cluster local`, and the test harness in
 * `test/support/etcdCluster.ts`, which adds clusters of three, restarts and pauses).
 */

export const ETCD_MISSING_MESSAGE =
  "etcd binary not found on PATH: install Debian's etcd-server package (apt-get install -y etcd-server), " +
  "set ETCD_BIN, or pass --etcd to use an etcd that is already running";

export const LOOPBACK = "127.0.0.1";
const HEALTH_POLL_MS = 50;
const HEALTH_HTTP_TIMEOUT_MS = 500;
const DEFAULT_STOP_GRACE_MS = 3_000;
const DEFAULT_LOG_LINES = 200;

/** etcd 3.4 flags for a throwaway member: quiet logs, fast raft elections. */
export const QUIET_FAST_ARGS = [
  "--heartbeat-interval",
  "50",
  "--election-timeout",
  "500",
  "--logger",
  "zap",
  "--log-level",
  "error",
];

export class EtcdStartError extends Error {
  override readonly name = "EtcdStartError";
}

/** The etcd binary (`ETCD_BIN` or `etcd` on PATH), checked by running `--version`. */
export function findEtcdBinary(): string {
  const binary = process.env.ETCD_BIN || "etcd";
  const probe = spawnSync(binary, ["--version"], { stdio: "ignore" });
  if (probe.error !== undefined || probe.status !== 0) throw new EtcdStartError(ETCD_MISSING_MESSAGE);
  return binary;
}

function listenOnFreePort(): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, LOOPBACK, () => resolve(server));
  });
}

/** `n` distinct free loopback ports: all `n` sockets are held until every port is read, then released. */
export async function freePorts(n: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < n; i++) servers.push(await listenOnFreePort());
    return servers.map((server) => {
      const address = server.address();
      if (address === null || typeof address === "string")
        throw new Error(`no port bound: ${String(address)}`);
      return address.port;
    });
  } finally {
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  }
}

export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  if (port === undefined) throw new Error("no free port");
  return port;
}

export const loopbackUrl = (port: number): string => `http://${LOOPBACK}:${port}`;

/** True when the member at `endpoint` answers its `/health` with `true`. */
export async function isEtcdHealthy(endpoint: string): Promise<boolean> {
  try {
    const response = await fetch(`${endpoint}/health`, {
      signal: AbortSignal.timeout(HEALTH_HTTP_TIMEOUT_MS),
    });
    const body = (await response.json()) as { health?: unknown };
    return body.health === "true" || body.health === true;
  } catch {
    return false;
  }
}

export interface EtcdMemberSpec {
  name: string;
  dataDir: string;
  /** The client URL it listens on and advertises. */
  endpoint: string;
  peerUrl: string;
  /** `name=peerUrl` of every member, comma-separated. */
  initialCluster: string;
  /** The cluster token; etcd's default when unset. */
  token?: string;
  /** Appended after the other flags, so they can override them. */
  extraArgs?: readonly string[];
}

export interface EtcdMemberOptions {
  /** In a process group of its own, so that a Ctrl-C meant for the parent does not reach it. */
  detached?: boolean;
  /** How many of its last output lines to keep for error messages. */
  logLines?: number;
}

/** Members still running, killed if the parent exits without stopping them. */
const running = new Set<ChildProcess>();

/** SIGKILLs every member still running; done on the parent's exit, and by whoever ends it otherwise. */
export function killAllEtcdMembers(): void {
  for (const child of running) child.kill("SIGKILL");
}

process.on("exit", killAllEtcdMembers);

/** One etcd member process, started (and restarted) on its data dir. */
export class EtcdMember {
  private child: ChildProcess | undefined;
  private alive = false;
  private stopped = false;
  private exit: string | undefined;
  private ended: Promise<void> = Promise.resolve();
  private readonly output: string[] = [];
  private partial = "";

  constructor(
    private readonly binary: string,
    readonly spec: EtcdMemberSpec,
    private readonly options: EtcdMemberOptions = {},
  ) {}

  get name(): string {
    return this.spec.name;
  }

  get endpoint(): string {
    return this.spec.endpoint;
  }

  /** Pid of the most recently spawned process, even after it exited. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.alive;
  }

  get paused(): boolean {
    return this.alive && this.stopped;
  }

  /** How the last process ended (exit code or signal), once it has. */
  get exitReason(): string | undefined {
    return this.exit;
  }

  /** Settles when the current process has gone, whoever ended it. */
  get exited(): Promise<void> {
    return this.ended;
  }

  start(state: "new" | "existing"): void {
    if (this.alive) throw new Error(`etcd member ${this.name} is already running`);
    const child = spawn(this.binary, this.args(state), {
      stdio: ["ignore", "pipe", "pipe"],
      detached: this.options.detached ?? false,
    });
    running.add(child);
    this.child = child;
    this.alive = true;
    this.stopped = false;
    this.exit = undefined;
    child.stdout?.on("data", (chunk: Buffer) => this.keep(chunk));
    child.stderr?.on("data", (chunk: Buffer) => this.keep(chunk));
    this.ended = new Promise((resolve) => {
      const gone = (reason: string) => {
        running.delete(child);
        this.alive = false;
        this.exit ??= reason;
        resolve();
      };
      child.once("close", (code, signal) =>
        gone(signal ? `killed by ${signal}` : `exited with code ${code}`),
      );
      child.once("error", (error) => {
        this.keep(`[spawn failed: ${error.message}]\n`);
        gone(`failed to start: ${error.message}`);
      });
    });
  }

  /** Polls `/health` until it answers; EtcdStartError (with its last output) if it exits or times out. */
  async waitUntilHealthy(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await isEtcdHealthy(this.endpoint))) {
      if (!this.alive)
        throw new EtcdStartError(`etcd member ${this.name} at ${this.endpoint} ${this.exit}\n${this.logs()}`);
      if (Date.now() > deadline)
        throw new EtcdStartError(
          `etcd member ${this.name} not healthy at ${this.endpoint}/health within ${timeoutMs} ms\n${this.logs()}`,
        );
      await sleep(HEALTH_POLL_MS);
    }
  }

  /** SIGTERM (SIGKILL after the grace period) and wait for the exit. */
  stop(graceMs = DEFAULT_STOP_GRACE_MS): Promise<void> {
    return this.terminate("SIGTERM", graceMs);
  }

  /** SIGKILL and wait for the exit. */
  kill(): Promise<void> {
    return this.terminate("SIGKILL", DEFAULT_STOP_GRACE_MS);
  }

  /** SIGSTOP: the process stays, holds its ports and answers nothing until `resume()`. */
  pause(): void {
    if (!this.alive) throw new Error(`etcd member ${this.name} is not running, so it cannot be paused`);
    this.child?.kill("SIGSTOP");
    this.stopped = true;
  }

  resume(): void {
    if (this.alive) this.child?.kill("SIGCONT");
    this.stopped = false;
  }

  /** Its last output lines. */
  logs(): string {
    return (this.partial ? [...this.output, this.partial] : this.output).join("\n").trim();
  }

  private keep(chunk: Buffer | string): void {
    const lines = (this.partial + chunk.toString()).split("\n");
    this.partial = lines.pop() ?? "";
    this.output.push(...lines);
    const limit = this.options.logLines ?? DEFAULT_LOG_LINES;
    if (this.output.length > limit) this.output.splice(0, this.output.length - limit);
  }

  private async terminate(signal: NodeJS.Signals, graceMs: number): Promise<void> {
    const child = this.child;
    if (!this.alive || child === undefined) return;
    // A stopped process would hold SIGTERM until continued.
    this.resume();
    child.kill(signal);
    const escalation = setTimeout(() => child.kill("SIGKILL"), graceMs);
    try {
      await this.ended;
    } finally {
      clearTimeout(escalation);
    }
  }

  private args(state: "new" | "existing"): string[] {
    const { name, dataDir, endpoint, peerUrl, initialCluster, token, extraArgs } = this.spec;
    return [
      ["--name", name],
      ["--data-dir", dataDir],
      ["--listen-client-urls", endpoint],
      ["--advertise-client-urls", endpoint],
      ["--listen-peer-urls", peerUrl],
      ["--initial-advertise-peer-urls", peerUrl],
      ["--initial-cluster", initialCluster],
      ["--initial-cluster-state", state],
      token === undefined ? [] : ["--initial-cluster-token", token],
      QUIET_FAST_ARGS,
      extraArgs ?? [],
    ].flat();
  }
}
