import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

export const ETCD_MISSING_MESSAGE =
  "etcd binary not found on PATH: install Debian's etcd-server package (apt-get install -y etcd-server), " +
  "set ETCD_BIN, or pass --etcd to use an etcd that is already running";

const LOOPBACK = "127.0.0.1";
const READY_TIMEOUT_MS = 20_000;
const STOP_GRACE_MS = 3_000;
const HEALTH_POLL_MS = 50;
/** etcd 3.4 flags for a throwaway member: quiet logs, fast raft elections (also used by the test harness). */
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

/** A throwaway single-member etcd on loopback ports, with its data in a temporary directory. */
export interface LocalEtcd {
  readonly endpoint: string;
  /** The temporary directory holding the data dir; removed by stop(). */
  readonly rootDir: string;
  readonly pid: number | undefined;
  readonly running: boolean;
  /** Exit code or signal once the process has gone, for display. */
  readonly exitReason: string | undefined;
  /** Settles when the process has gone, whoever ended it. */
  readonly exited: Promise<void>;
  /** SIGTERM, SIGKILL after 3 s, then remove the directory. */
  stop(): Promise<void>;
}

function etcdBinary(): string {
  const binary = process.env.ETCD_BIN || "etcd";
  const probe = spawnSync(binary, ["--version"], { stdio: "ignore" });
  if (probe.error !== undefined || probe.status !== 0) throw new EtcdStartError(ETCD_MISSING_MESSAGE);
  return binary;
}

function listen(): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, LOOPBACK, () => resolve(server));
  });
}

/** Binds port 0 `n` times at once, so the ports are distinct, then releases them. */
async function freePorts(n: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < n; i++) servers.push(await listen());
    return servers.map((server) => {
      const address = server.address();
      if (address === null || typeof address === "string") throw new Error("no port bound");
      return address.port;
    });
  } finally {
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  }
}

async function isHealthy(endpoint: string): Promise<boolean> {
  try {
    const response = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(500) });
    const body = (await response.json()) as { health?: unknown };
    return body.health === "true" || body.health === true;
  } catch {
    return false;
  }
}

class EtcdProcess implements LocalEtcd {
  private readonly child: ChildProcess;
  readonly exited: Promise<void>;
  private exit: string | undefined;
  private readonly output: string[] = [];

  constructor(
    binary: string,
    readonly endpoint: string,
    peerUrl: string,
    readonly rootDir: string,
  ) {
    const args = [
      ["--name", "local"],
      ["--data-dir", join(rootDir, "data")],
      ["--listen-client-urls", endpoint],
      ["--advertise-client-urls", endpoint],
      ["--listen-peer-urls", peerUrl],
      ["--initial-advertise-peer-urls", peerUrl],
      ["--initial-cluster", `local=${peerUrl}`],
      QUIET_FAST_ARGS,
    ].flat();
    this.child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"], detached: true });
    const keep = (chunk: Buffer) => {
      this.output.push(chunk.toString());
      if (this.output.length > 50) this.output.shift();
    };
    this.child.stdout?.on("data", keep);
    this.child.stderr?.on("data", keep);
    this.exited = new Promise((resolve) => {
      this.child.once("error", (err) => {
        this.exit = `failed to start: ${err.message}`;
        resolve();
      });
      this.child.once("exit", (code, signal) => {
        this.exit = signal ? `killed by ${signal}` : `exited with code ${code}`;
        resolve();
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.exit === undefined;
  }

  get exitReason(): string | undefined {
    return this.exit;
  }

  async waitUntilHealthy(): Promise<void> {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (!(await isHealthy(this.endpoint))) {
      if (!this.running || Date.now() > deadline) {
        const why = this.running ? `not healthy within ${READY_TIMEOUT_MS} ms` : this.exit;
        throw new EtcdStartError(`etcd at ${this.endpoint} ${why}\n${this.output.join("").trim()}`);
      }
      await sleep(HEALTH_POLL_MS);
    }
  }

  async stop(): Promise<void> {
    process.off("exit", this.killNow);
    if (this.running && this.child.pid !== undefined) {
      this.child.kill("SIGTERM");
      const escalation = setTimeout(() => this.child.kill("SIGKILL"), STOP_GRACE_MS);
      await this.exited;
      clearTimeout(escalation);
    }
    await rm(this.rootDir, { recursive: true, force: true, maxRetries: 3 });
  }

  /** On a process exit that skipped stop(): nothing can wait there. */
  readonly killNow = () => {
    if (this.running) this.child.kill("SIGKILL");
    rmSync(this.rootDir, { recursive: true, force: true });
  };
}

/** Starts a throwaway etcd on free loopback ports and waits until `/health` answers. */
export async function startLocalEtcd(): Promise<LocalEtcd> {
  const binary = etcdBinary();
  const [clientPort, peerPort] = await freePorts(2);
  const rootDir = await mkdtemp(join(tmpdir(), "rdeebee-local-"));
  const etcd = new EtcdProcess(
    binary,
    `http://${LOOPBACK}:${clientPort}`,
    `http://${LOOPBACK}:${peerPort}`,
    rootDir,
  );
  process.on("exit", etcd.killNow);
  try {
    await etcd.waitUntilHealthy();
  } catch (err) {
    await etcd.stop();
    throw err;
  }
  return etcd;
}
