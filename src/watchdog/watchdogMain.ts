/**
 * The lease watchdog: a tiny process the node forks outside its process group. It holds the node's
 * lease ID and revokes it the moment the node is dead, so a crashed primary is replaced in
 * milliseconds instead of after its TTL. "Dead" needs both signs: the IPC channel closed (the
 * kernel closes it when the node exits, for any reason) and the node's pid no longer a live
 * process. A paused (SIGSTOP) node keeps its channel open, so it is never deposed early; a
 * partitioned or crashed host takes its watchdog with it, so both fall back to the lease's TTL.
 */
import { setTimeout as sleep } from "node:timers/promises";
import {
  type BackoffPolicy,
  backoffDelay,
  connectEtcd,
  type Etcd3,
  leaseSecondsLeft,
  revokeLease,
} from "../etcd/index.js";
import { createLogger, type Logger } from "../logging.js";
import { isProcessAlive } from "../processLiveness.js";
import { etcdConnectionFrom, type FromWatchdog, isToWatchdog, type ToWatchdog } from "./protocol.js";

type Configuration = Extract<ToWatchdog, { type: "configure" }>;

/** A node that does not configure its watchdog within this is gone or broken. */
const CONFIGURE_WITHIN_MS = 30_000;
/** After the channel closes, how long the node's pid is watched for its death, and how often. */
const DEATH_WINDOW_MS = 5_000;
const DEATH_POLL_MS = 1;
const REVOKE_ATTEMPTS = 3;
const REVOKE_BACKOFF: BackoffPolicy = { initialMs: 50, maxMs: 500 };
/** A call now and then keeps the connection to etcd open, so a revoke costs one round trip. */
const WARM_INTERVAL_MS = 10_000;

class LeaseWatchdogProcess {
  private config: Configuration | undefined;
  private client: Etcd3 | undefined;
  private log: Logger = createLogger({ defaultMeta: { component: "lease-watchdog" } });
  private leaseId: string | undefined;
  private stopping = false;
  private exiting = false;
  private channelClosed = false;
  private warmTimer: NodeJS.Timeout | undefined;
  private readonly configureTimer: NodeJS.Timeout;

  constructor() {
    this.configureTimer = setTimeout(() => this.exit("no configuration from the node"), CONFIGURE_WITHIN_MS);
    process.on("message", (message) => this.receive(message));
    process.on("disconnect", () => void this.onChannelClosed());
  }

  private receive(message: unknown): void {
    if (!isToWatchdog(message)) return;
    if (message.type === "configure") this.configure(message);
    else if (message.type === "lease") this.hold(message.leaseId);
    else {
      this.stopping = true;
      this.exit("the node stopped gracefully");
    }
  }

  private configure(config: Configuration): void {
    clearTimeout(this.configureTimer);
    this.client?.close();
    this.config = config;
    this.log = createLogger({
      level: config.logLevel,
      defaultMeta: { component: "lease-watchdog", node: config.nodeName, nodePid: config.parentPid },
    });
    this.client = connectEtcd(etcdConnectionFrom(config.connection), { callTimeoutMs: config.callTimeoutMs });
    void this.warm();
  }

  private hold(leaseId: string | undefined): void {
    if (leaseId !== this.leaseId) this.log.info("lease watchdog holds lease", { lease: leaseId ?? null });
    this.leaseId = leaseId;
    const reply: FromWatchdog = { type: "holding", leaseId };
    if (process.connected) process.send?.(reply, undefined, undefined, () => undefined);
    void this.warm();
  }

  private async warm(): Promise<void> {
    clearTimeout(this.warmTimer);
    const client = this.client;
    if (!client || !this.config || this.channelClosed) return;
    try {
      await leaseSecondsLeft(client, this.leaseId ?? "0", new Date(Date.now() + this.config.callTimeoutMs));
    } catch (err) {
      this.log.debug("lease watchdog: etcd call to keep the connection open failed", { error: String(err) });
    }
    if (this.channelClosed) return;
    const delay = WARM_INTERVAL_MS / 2 + Math.random() * (WARM_INTERVAL_MS / 2);
    this.warmTimer = setTimeout(() => void this.warm(), delay);
    this.warmTimer.unref();
  }

  private async onChannelClosed(): Promise<void> {
    if (this.stopping || this.exiting) return;
    // No more warming calls: etcd3 closes a host's channel when a call on it fails, which would
    // fail a revoke attempt in flight long before its deadline.
    this.channelClosed = true;
    clearTimeout(this.warmTimer);
    const config = this.config;
    if (!config) return this.exit("the node closed the channel before configuring");
    const closedAt = performance.now();
    // Whatever etcd does, the watchdog outlives its node by a bounded time: past it, the lease is
    // left to expire by its TTL.
    setTimeout(
      () => this.exit("gave up: the lease expires by its TTL"),
      DEATH_WINDOW_MS + REVOKE_ATTEMPTS * config.callTimeoutMs,
    );
    while (isProcessAlive(config.parentPid, config.parentStartTicks)) {
      if (performance.now() - closedAt > DEATH_WINDOW_MS) {
        this.log.warn("lease watchdog: the node closed the channel but lives; exiting without revoking", {
          lease: this.leaseId ?? null,
        });
        return this.exit();
      }
      await sleep(DEATH_POLL_MS);
    }
    await this.revoke(config, performance.now() - closedAt);
    this.exit();
  }

  private async revoke(config: Configuration, deathSeenAfterMs: number): Promise<void> {
    const leaseId = this.leaseId;
    const client = this.client;
    if (leaseId === undefined || !client) {
      this.log.info("lease watchdog: the node died holding no lease");
      return;
    }
    const started = performance.now();
    for (let attempt = 0; attempt < REVOKE_ATTEMPTS; attempt++) {
      try {
        const result = await revokeLease(client, leaseId, new Date(Date.now() + config.callTimeoutMs));
        this.log.info("lease watchdog revoked the lease of its dead node", {
          lease: leaseId,
          result,
          ms: Math.round((performance.now() - started) * 10) / 10,
          deathSeenAfterMs: Math.round(deathSeenAfterMs * 10) / 10,
        });
        return;
      } catch (err) {
        this.log.warn("lease watchdog: revoke failed", {
          lease: leaseId,
          attempt: attempt + 1,
          error: String(err),
        });
        if (attempt + 1 < REVOKE_ATTEMPTS) await sleep(backoffDelay(attempt, REVOKE_BACKOFF));
      }
    }
    // Every attempt's outcome was unknown or failed: a read says whether one of them took effect.
    const secondsLeft = await leaseSecondsLeft(
      client,
      leaseId,
      new Date(Date.now() + config.callTimeoutMs),
    ).catch(() => "unknown" as const);
    this.log.warn("lease watchdog gives up; the lease expires by its TTL", {
      lease: leaseId,
      secondsLeft: secondsLeft ?? "gone",
    });
  }

  private exit(reason?: string): void {
    if (this.exiting) return;
    this.exiting = true;
    if (reason) this.log.info(`lease watchdog exits: ${reason}`, { lease: this.leaseId ?? null });
    clearTimeout(this.warmTimer);
    clearTimeout(this.configureTimer);
    this.client?.close();
    if (process.connected) process.disconnect();
    // Lets the log line reach stderr before the process ends.
    setTimeout(() => process.exit(0), 20);
  }
}

if (process.send) new LeaseWatchdogProcess();
else {
  process.stderr.write(
    "rdeebee-cluster lease watchdog: started without an IPC channel; it is forked by a node\n",
  );
  process.exitCode = 2;
}
