import { type ChildProcess, fork } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { distinctUntilChanged, map, type Observable, type Subscription } from "rxjs";
import { type BackoffPolicy, backoffDelay } from "../etcd/index.js";
import type { Logger } from "../logging.js";
import { processStartTicks } from "../processLiveness.js";
import {
  type EtcdConnection,
  type FromWatchdog,
  type ToWatchdog,
  transferableConnection,
} from "./protocol.js";

/** What the watchdog needs of a node: its status (for the lease), its name and its lease TTL. */
export interface WatchedNode {
  readonly status$: Observable<{ leaseId?: string }>;
  readonly settings: { nodeName: string; leaseTtlSeconds: number };
}

export interface LeaseWatchdogOptions {
  /** Deadline of each revoke attempt; defaults to half the TTL, between 1 and 5 s. */
  callTimeoutMs?: number;
  /** Wait before starting a new watchdog after one exited. */
  restartBackoff?: BackoffPolicy;
  /** The watchdog's log level; defaults to `LOG_LEVEL`, then info. */
  logLevel?: string;
  /** The watchdog's entry script; found under `dist/src/watchdog/` by default. */
  entry?: string;
}

export interface LeaseWatchdog {
  /** Pid of the running watchdog process, if one runs. */
  readonly pid: number | undefined;
  /** Tells the watchdog to exit without revoking and waits for it; call after the node's graceful stop. */
  close(): Promise<void>;
}

const DEFAULT_RESTART_BACKOFF: BackoffPolicy = { initialMs: 200, maxMs: 10_000 };
/** A watchdog that ran this long resets the restart backoff. */
const HEALTHY_RUN_MS = 60_000;
const CLOSE_WAIT_MS = 2_000;

const ENTRY_NAME = "watchdogMain.js";

/** The child's entry: next to this module when it runs from `dist/`, else `dist/src/watchdog/` above it. */
export function watchdogEntry(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const beside = join(here, ENTRY_NAME);
  if (existsSync(beside)) return beside;
  for (let dir = here; ; dir = dirname(dir)) {
    const built = join(dir, "dist", "src", "watchdog", ENTRY_NAME);
    if (existsSync(built)) return built;
    if (dirname(dir) === dir) throw new Error(`${ENTRY_NAME} not found; build the package (npm run build)`);
  }
}

/**
 * Forks a lease watchdog for `node` (outside the node's process group, so a signal to the group
 * spares it) and keeps it told of the node's current lease. When the node process dies for any
 * reason, the watchdog revokes that lease within milliseconds. A watchdog that dies is replaced,
 * with backoff; the node's roles do not depend on it.
 */
export function attachLeaseWatchdog(
  node: WatchedNode,
  connection: EtcdConnection,
  logger: Logger,
  options: LeaseWatchdogOptions = {},
): LeaseWatchdog {
  return new LeaseWatchdogHandle(node, connection, logger, options);
}

class LeaseWatchdogHandle implements LeaseWatchdog {
  private child: ChildProcess | undefined;
  private leaseId: string | undefined;
  private closed = false;
  private restarts = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private readonly subscription: Subscription;
  private readonly entry: string;
  private readonly configuration: ToWatchdog;
  private readonly log: Logger;

  constructor(
    node: WatchedNode,
    connection: EtcdConnection,
    logger: Logger,
    private readonly options: LeaseWatchdogOptions,
  ) {
    this.log = logger.child({ component: "lease-watchdog" });
    this.entry = options.entry ?? watchdogEntry();
    const ttlMs = node.settings.leaseTtlSeconds * 1000;
    this.configuration = {
      type: "configure",
      connection: transferableConnection(connection),
      parentPid: process.pid,
      parentStartTicks: processStartTicks(process.pid),
      callTimeoutMs: options.callTimeoutMs ?? Math.min(5_000, Math.max(1_000, ttlMs / 2)),
      nodeName: node.settings.nodeName,
      logLevel: options.logLevel ?? process.env.LOG_LEVEL,
    };
    this.start();
    this.subscription = node.status$
      .pipe(
        map((status) => status.leaseId),
        distinctUntilChanged(),
      )
      .subscribe((leaseId) => {
        this.leaseId = leaseId;
        this.send({ type: "lease", leaseId });
      });
  }

  get pid(): number | undefined {
    return this.child?.exitCode === null && this.child.signalCode === null ? this.child.pid : undefined;
  }

  private start(): void {
    const startedAt = Date.now();
    const child = fork(this.entry, [], {
      detached: true,
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      serialization: "advanced",
      execArgv: [],
    });
    this.child = child;
    // Neither the process nor its channel keeps the node's event loop alive.
    child.unref();
    child.channel?.unref();
    child.on("error", (err) => {
      this.log.warn("lease watchdog process error", { error: err.message });
      // A fork that failed has no pid and may never emit `exit`.
      if (child.pid === undefined) this.onExit(child, startedAt, null, null);
    });
    child.on("message", (message: FromWatchdog) => {
      if (message?.type === "holding")
        this.log.debug("lease watchdog holds lease", { lease: message.leaseId });
    });
    child.once("exit", (code, signal) => this.onExit(child, startedAt, code, signal));
    this.log.info("lease watchdog started", { pid: child.pid });
    this.send(this.configuration);
    this.send({ type: "lease", leaseId: this.leaseId });
  }

  private onExit(child: ChildProcess, startedAt: number, code: number | null, signal: string | null): void {
    if (this.closed || child !== this.child) return;
    this.child = undefined;
    if (Date.now() - startedAt >= HEALTHY_RUN_MS) this.restarts = 0;
    const delayMs = backoffDelay(this.restarts, this.options.restartBackoff ?? DEFAULT_RESTART_BACKOFF);
    this.restarts += 1;
    this.log.warn("lease watchdog exited; starting a new one", {
      pid: child.pid,
      code,
      signal,
      restartInMs: Math.round(delayMs),
    });
    this.restartTimer = setTimeout(() => {
      if (!this.closed) this.start();
    }, delayMs);
    this.restartTimer.unref();
  }

  private send(message: ToWatchdog): void {
    const child = this.child;
    if (!child?.connected) return;
    try {
      child.send(message, undefined, undefined, (err) => {
        if (err)
          this.log.debug("lease watchdog message not delivered", { type: message.type, error: err.message });
      });
    } catch (err) {
      this.log.debug("lease watchdog message not delivered", { type: message.type, error: String(err) });
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.subscription.unsubscribe();
    clearTimeout(this.restartTimer);
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    // Held while waiting: an unreferenced child alone would let the event loop end mid-close.
    let timer: NodeJS.Timeout | undefined;
    const exited = new Promise<void>((resolve) => {
      child.once("exit", () => resolve());
      timer = setTimeout(resolve, CLOSE_WAIT_MS);
    });
    this.send({ type: "stop" });
    await exited;
    clearTimeout(timer);
    if (child.connected) child.disconnect();
  }
}
