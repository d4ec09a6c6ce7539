import { setTimeout as sleep } from "node:timers/promises";
import type { Observable } from "rxjs";
import { Subject } from "rxjs";
import { type Actor, createActor, type InspectionEvent } from "xstate";
import type { nodeMachine } from "../../machines/node.js";
import {
  type ClusterConfig,
  ClusterLayout,
  ConfigError,
  etcdConnectionOf,
  type NodeSettings,
} from "../config/index.js";
import {
  type BackoffPolicy,
  backoffDelay,
  ClusterStore,
  connectEtcd,
  type Etcd3,
  EtcdUnreachableError,
  type FencedWrite,
  type FencingToken,
  watchPrefix,
} from "../etcd/index.js";
import { createLogger, type Logger } from "../logging.js";
import { CampaignHoldStore } from "./campaignHold.js";
import {
  type ClusterStatus,
  type PoisonedLeaderKey,
  readClusterStatus,
  readPoisonedLeaderKeys,
} from "./clusterStatus.js";
import { boundNodeMachine } from "./effects/index.js";
import { GroupingEvents } from "./groupingEvents.js";
import type { LeadersSnapshot, MembersByGroup } from "./groupingViews.js";
import { type HistoryRecord, HistoryRecorder } from "./history.js";
import { type LeadershipHandlers, type LeadershipTerm, LeadershipTerms } from "./leadership.js";
import { watchLeaders } from "./leaderWatch.js";
import { type NodeStatus, StatusProjection } from "./nodeStatus.js";
import type { NodeRole } from "./roles.js";
import { SessionScope, Timers } from "./sessionScope.js";
import { NodeStateDir, type StoredIdentity } from "./stateDir.js";
import { ROOT_ACTOR_ID } from "./timeline.js";
import {
  awaitStatus,
  checkedTimeout,
  NodeStoppedError,
  roleLabel,
  StartAbortedError,
  type StartOptions,
  StartTimeoutError,
  type WaitEnd,
  type WaitOptions,
  waitError,
} from "./waiting.js";

export type { NodeStatus } from "./nodeStatus.js";

export interface ClusterNodeOptions {
  /** The cluster config (or a layout already derived from it). */
  cluster: ClusterConfig | ClusterLayout;
  settings: NodeSettings;
  /** Where the node logs; default: JSON lines on stderr (`createLogger()`); `silentLogger()` for none. */
  logger?: Logger;
  /**
   * An etcd client to run on instead of one the node connects from `settings` (its endpoints, and
   * TLS and user when `settings.etcd` has them). It is not closed by `stop()`: its owner closes it.
   */
  client?: Etcd3;
  /** Receives every XState inspection event of this node's actors (see `xstate` `inspect`). */
  inspect?: (event: InspectionEvent) => void;
  /** Receives every transition, identity and leader action, for history checking. */
  history?: (record: HistoryRecord) => void;
}

/** Retries of a resignation whose outcome is unknown: soon at first, at most every two seconds. */
const RESIGN_RETRY: BackoffPolicy = { initialMs: 100, maxMs: 2_000 };

/** Long enough for a loaded etcd, short enough that an unanswered call is noticed well within a TTL. */
const callTimeoutFor = (ttlSeconds: number) => Math.min(5_000, Math.max(1_000, (ttlSeconds * 1000) / 2));

/** A term ends this long before the local deadline when no keepalive was acknowledged: 10% of the TTL, at least 100 ms. */
const leadershipLeadFor = (ttlSeconds: number) => Math.max(100, ttlSeconds * 100);

/** Keys of the hooks for tests, which the package does not export: see `testing.ts`. */
export const crashHook: unique symbol = Symbol("crash");
export const clientHook: unique symbol = Symbol("client");

/**
 * One cluster node: the node statechart bound to etcd. The effects of each machine live in
 * `effects/` (one module per machine), the etcd views become machine events in `groupingEvents`,
 * and the status is a projection of the machine's snapshot (`nodeStatus`). This class wires them
 * and is the public API.
 */
export class ClusterNode {
  readonly layout: ClusterLayout;
  readonly settings: NodeSettings;
  readonly actor: Actor<typeof nodeMachine>;
  readonly log: Logger;
  private readonly client: Etcd3;
  private readonly ownsClient: boolean;
  private readonly callTimeoutMs: number;
  private readonly store: CampaignHoldStore;
  private readonly leadership: LeadershipTerms;
  private readonly projection: StatusProjection;
  private readonly grouping: GroupingEvents;
  private readonly timers = new Timers();
  /** Held from construction to stop when `settings.stateDir` is set. */
  private readonly stateDir: NodeStateDir | undefined;
  private readonly keepalives = new Subject<number>();
  private scope: SessionScope;
  private started = false;
  private stopping: Promise<void> | undefined;
  private sessionOpenedOnce = false;
  private lastSessionError: string | undefined;

  /**
   * With `settings.stateDir`, takes the directory's lock before anything touches etcd: throws
   * `StateDirLockedError` when a live process holds it, a `ConfigError` naming the ID file when it
   * does not hold a node ID. The lock is released by `stop()`.
   */
  constructor(options: ClusterNodeOptions) {
    const { settings } = options;
    this.layout = layoutIn(settings.namespace, options.cluster);
    this.settings = settings;
    const { stateDir, stored } = lockStateDir(settings.stateDir);
    this.stateDir = stateDir;
    this.log = (options.logger ?? createLogger()).child({ node: settings.nodeName });
    const callTimeoutMs = callTimeoutFor(settings.leaseTtlSeconds);
    this.callTimeoutMs = callTimeoutMs;
    this.ownsClient = options.client === undefined;
    this.client = options.client ?? connectEtcd(etcdConnectionOf(settings), { callTimeoutMs });
    this.scope = this.newScope();
    const history = new HistoryRecorder(settings.nodeName, options.history, () => this.scope.session);
    const store = new ClusterStore(this.client, this.layout, this.log, { callTimeoutMs });
    this.store = new CampaignHoldStore(store, history, this.timers);
    const snapshot = () => this.actor.getSnapshot();
    this.projection = new StatusProjection(
      settings.nodeName,
      this.layout,
      this.log,
      history,
      snapshot,
      stored?.id,
    );
    // Views re-read their keys once per TTL and on every reconnect: a missed event delays a decision by a TTL at most.
    const resync = { resyncIntervalMs: settings.leaseTtlSeconds * 1000, callTimeoutMs };
    const watch = (prefix: string) => watchPrefix(this.client, prefix, this.log, resync);
    const etcd = { layout: this.layout, log: this.log, etcd: this.client, callTimeoutMs, watch };
    this.grouping = new GroupingEvents({ ...etcd, role$: this.projection.role$ });
    this.leadership = new LeadershipTerms({
      status$: this.projection.status$,
      remainingMs: () => {
        const session = this.scope.session;
        return session?.isValid() ? session.remainingMs() : undefined;
      },
      deadlineMoved$: this.keepalives,
      leadMs: leadershipLeadFor(settings.leaseTtlSeconds),
      log: this.log,
    });
    const machine = boundNodeMachine({
      ...etcd,
      settings,
      stateDir: stateDir && { idFile: stateDir.idFile, stored },
      store: this.store,
      grouping: this.grouping,
      timers: this.timers,
      snapshot,
      scope: () => this.scope,
      beginScope: () => {
        this.scope.end();
        this.scope = this.newScope();
        return this.scope;
      },
      send: (event) => this.deliver(event),
      keepaliveRoundTrip: (ms) => this.keepalives.next(ms),
    });
    this.actor = createActor(machine, {
      id: ROOT_ACTOR_ID,
      inspect: (event) => {
        this.noteSessionEvent(event);
        this.projection.inspect(event);
        options.inspect?.(event);
      },
    });
    this.actor.subscribe({ error: (err) => this.log.error("node machine failed", { error: String(err) }) });
  }

  /** Status changes: role, state, ID, group and fencing token; the current status first. */
  get status$(): Observable<NodeStatus> {
    return this.projection.status$;
  }

  get status(): NodeStatus {
    return this.projection.status;
  }

  get role$(): Observable<NodeRole> {
    return this.projection.role$;
  }

  /** The node machine's state as a dotted path (e.g. `member.leader`), on every change. */
  get state$(): Observable<string> {
    return this.projection.state$;
  }

  get role(): NodeRole {
    return this.status.role;
  }

  get id(): number | undefined {
    return this.status.id;
  }

  /** This node's fencing token while it leads its grouping. */
  get fence(): FencingToken | undefined {
    return this.status.fence;
  }

  /** The current primary and backup of this node's grouping, as last seen in etcd. */
  get leaders$(): Observable<LeadersSnapshot | undefined> {
    return this.grouping.leaders$.asObservable();
  }

  /** Live members of every group of this node's grouping. */
  get members$(): Observable<MembersByGroup> {
    return this.grouping.members$.asObservable();
  }

  /** Round-trip time in milliseconds of every acknowledged keepalive, across sessions. */
  get keepaliveRoundTrips$(): Observable<number> {
    return this.keepalives.asObservable();
  }

  /**
   * Starts the node; resolves once it has an ID and a member key (as a follower: wait for a role
   * with `waitForRole`). Rejects with `EtcdUnreachableError` when `timeoutMs` passes before etcd
   * granted a lease, `StartTimeoutError` when it passes later, `StartAbortedError` when `signal`
   * aborts, `NodeStoppedError` when the node is stopped meanwhile; after a rejection the node is
   * stopped and its own client closed, so nothing it started keeps the process alive.
   */
  async start(options: StartOptions = {}): Promise<NodeStatus> {
    checkedTimeout(options.timeoutMs, "start");
    if (!this.started && !this.stopping) {
      this.started = true;
      this.actor.start();
    }
    try {
      return await this.awaitStatus(
        (s) => s.id !== undefined,
        { ...options, caller: "start" },
        (end) => this.startError(end),
      );
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /**
   * Resolves with the first status (the current one included) that satisfies `predicate`. Rejects
   * with `WaitTimeoutError` after `timeoutMs`, `WaitAbortedError` when `signal` aborts, and
   * `NodeStoppedError` when the node stops without satisfying it.
   */
  waitFor(predicate: (status: NodeStatus) => boolean, options: WaitOptions = {}): Promise<NodeStatus> {
    return this.awaitStatus(
      predicate,
      { ...options, caller: "waitFor" },
      waitError(this.settings.nodeName, "a status"),
    );
  }

  /** `waitFor` the node to have `role` (or one of `roles`), e.g. `waitForRole("primary", { timeoutMs: 10_000 })`. */
  waitForRole(role: NodeRole | readonly NodeRole[], options: WaitOptions = {}): Promise<NodeStatus> {
    const roles: readonly NodeRole[] = typeof role === "string" ? [role] : role;
    const what = roleLabel(roles);
    return this.awaitStatus(
      (s) => roles.includes(s.role),
      { ...options, caller: "waitForRole" },
      waitError(this.settings.nodeName, what),
    );
  }

  /** Graceful stop: ends any leadership term, resigns any leader key, deletes the member key, revokes the lease. */
  stop(): Promise<void> {
    this.stopping ??= this.leave();
    return this.stopping;
  }

  /**
   * The terms of this node as its grouping's primary, in the style of client-go's
   * `OnStartedLeading(ctx)`/`OnStoppedLeading()` and Curator's `LeaderLatchListener`: `started`
   * gets a signal that aborts the moment the node must stop acting as primary, before its lease's
   * local deadline; `stopped` follows the abort. Calls `started` at once when a term is running.
   * Returns the unsubscribe.
   */
  onLeadership(handlers: LeadershipHandlers): () => void {
    return this.leadership.observe(handlers);
  }

  /** The current term as primary, then each change: a term when one starts, undefined when it ends. */
  get leadership$(): Observable<LeadershipTerm | undefined> {
    return this.leadership.term$;
  }

  /**
   * Gives up the leader seat this node holds (if any) without stopping: the term's signal aborts,
   * the key is deleted under a compare on its token, and it resolves once the node has left the
   * seat (true when this call deleted the key). The node stays a member. For one lease TTL it
   * campaigns for no seat (its deferred campaign shows as `candidate`), so another eligible node
   * takes the seat; after that it campaigns like any follower.
   */
  async resign(options: WaitOptions = {}): Promise<boolean> {
    const fence = this.fence;
    const leaseId = this.scope.session?.leaseId;
    if (!fence || !leaseId || !this.started || this.stopping) return false;
    this.leadership.end("resigned", true);
    this.store.holdCampaigns(this.settings.leaseTtlSeconds * 1000);
    const resigned = this.resignUntilSettled(fence, leaseId);
    await this.awaitStatus(
      (s) => s.fence?.token !== fence.token,
      { ...options, caller: "resign" },
      waitError(this.settings.nodeName, "the seat to be given up"),
    );
    return resigned;
  }

  /**
   * The resignation, retried with jittered backoff until etcd says whether it applied: the term is
   * already over, so a seat left held after one failed attempt would have nobody acting on it.
   * Ends without deleting anything once the node stops or its session (and so its lease) changes.
   */
  private async resignUntilSettled(fence: FencingToken, leaseId: string): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.store.resign(fence, leaseId);
      } catch (err) {
        if (this.stopping || this.scope.session?.leaseId !== leaseId) return false;
        const retryInMs = backoffDelay(attempt, RESIGN_RETRY);
        this.log.warn("resignation not settled, retrying", { error: String(err), retryInMs });
        await sleep(retryInMs);
      }
    }
  }

  /** The primary and backup of any grouping, live from etcd (see `watchLeaders`); ends when the node stops. */
  leadersOf(grouping: number): Observable<LeadersSnapshot> {
    const resyncIntervalMs = this.settings.leaseTtlSeconds * 1000;
    return watchLeaders(this.client, this.layout, grouping, {
      log: this.log,
      resyncIntervalMs,
      callTimeoutMs: this.callTimeoutMs,
    });
  }

  /** The whole cluster as the `status` command shows it, read now at one revision. */
  readClusterStatus(): Promise<ClusterStatus> {
    return readClusterStatus(this.client, this.layout, { timeoutMs: this.callTimeoutMs });
  }

  /**
   * Runs `build`'s operations in one transaction that commits only while this node is the
   * grouping's primary and still holds the primary key it held when called: the write path for
   * the embedding server. Throws NotPrimaryError without writing when the node is not the primary
   * in a running leadership term (none near its lease's local deadline, none resigned),
   * FenceLostError when the key changed meanwhile.
   */
  async fencedTxn(build: Parameters<ClusterStore["fencedTxn"]>[1]): Promise<FencedWrite> {
    const fence = this.fence;
    const session = this.scope.session;
    if (fence?.seat !== 1 || !session?.isValid() || this.leadership.term?.fence.token !== fence.token)
      throw new NotPrimaryError(this.status);
    return this.store.fencedTxn(fence, build, session.leaseId);
  }

  /** Every poisoned leader key of the cluster, read now (for metrics and operators). */
  readPoisonedLeaderKeys(): Promise<PoisonedLeaderKey[]> {
    return readPoisonedLeaderKeys(this.client, this.layout);
  }

  /**
   * Stops as a crash would: no resign, no deregistration, no revoke. The lease and every key
   * bound to it stay until etcd expires them one TTL later.
   */
  [crashHook](): void {
    const session = this.scope.session;
    this.leadership.close("stopping");
    this.scope.end();
    session?.abandon();
    this.actor.stop();
    // The state directory's lock is given up too: a crashed process's lock is stale by its pid,
    // which an in-process crash cannot make so.
    this.shutdown();
  }

  get [clientHook](): Etcd3 {
    return this.client;
  }

  private async leave(): Promise<void> {
    this.leadership.close("stopping");
    if (this.started && this.actor.getSnapshot().status === "active") {
      this.actor.send({ type: "STOP" });
      await this.awaitStatus(
        (s) => s.role === "stopped",
        { caller: "stop" },
        () => new Error("unreachable"),
      );
    }
    this.shutdown();
  }

  private awaitStatus(
    predicate: (status: NodeStatus) => boolean,
    options: WaitOptions & { caller: string },
    fail: (end: WaitEnd) => Error,
  ): Promise<NodeStatus> {
    return awaitStatus(this.projection.status$, () => this.status, predicate, options, fail);
  }

  private startError(end: WaitEnd): Error {
    const name = this.settings.nodeName;
    if (end.kind === "aborted") return new StartAbortedError(name, end.reason);
    if (end.kind === "stopped") return new NodeStoppedError(name, "an ID and a member key");
    if (!this.sessionOpenedOnce)
      return new EtcdUnreachableError(
        this.settings.etcdEndpoints,
        `no lease granted within ${end.timeoutMs} ms${this.lastSessionError ? ` (last error: ${this.lastSessionError})` : ""}`,
      );
    return new StartTimeoutError(name, end.timeoutMs, end.status);
  }

  /** Remembers whether etcd ever granted this node a lease, and the last failure to open a session. */
  private noteSessionEvent(event: InspectionEvent): void {
    if (event.type !== "@xstate.event" || event.actorRef.sessionId !== event.rootId) return;
    const sent = event.event as { type: string; error?: unknown };
    if (sent.type === "SESSION_OPENED") this.sessionOpenedOnce = true;
    // grpc-js ends its messages with an empty "Resolution note:", noise inside the error we build from it.
    else if (sent.type === "SESSION_FAILED")
      this.lastSessionError = String(sent.error).replace(/\s*Resolution note:\s*$/, "");
  }

  private shutdown(): void {
    this.leadership.close("stopping");
    this.scope.end();
    this.timers.clear();
    this.grouping.stop();
    if (this.ownsClient) this.client.close();
    this.stateDir?.release();
    this.projection.stopped();
  }

  private newScope(): SessionScope {
    return new SessionScope((event) => this.deliver(event), this.timers, this.log);
  }

  private deliver(event: Parameters<Actor<typeof nodeMachine>["send"]>[0]): void {
    if (this.actor.getSnapshot().status === "active") this.actor.send(event);
  }
}

/** Raised by `fencedTxn` on a node that is not its grouping's primary with a valid lease. */
export class NotPrimaryError extends Error {
  override readonly name = "NotPrimaryError";
  constructor(readonly status: NodeStatus) {
    super(`node ${status.name} is not the primary with a valid lease (role: ${status.role})`);
  }
}

/** The state directory locked and its stored identity read; the lock is given back when the ID file is bad. */
function lockStateDir(dir: string | undefined): { stateDir?: NodeStateDir; stored?: StoredIdentity } {
  if (dir === undefined) return {};
  const stateDir = NodeStateDir.lock(dir);
  try {
    return { stateDir, stored: stateDir.idFile.read() };
  } catch (err) {
    stateDir.release();
    throw err;
  }
}

/**
 * The layout under the settings' namespace. A layout passed in keeps its own namespace when the
 * settings name none, and is refused when they name another: the node would write one cluster's keys
 * while its operator reads another's.
 */
function layoutIn(namespace: string | undefined, cluster: ClusterConfig | ClusterLayout): ClusterLayout {
  if (!(cluster instanceof ClusterLayout)) return new ClusterLayout(cluster, { namespace: namespace ?? "" });
  if (namespace !== undefined && cluster.keys.namespace !== namespace) {
    throw new ConfigError("settings", [
      `namespace: "${namespace}", but the cluster layout was built under "${cluster.keys.namespace}"`,
    ]);
  }
  return cluster;
}

export function createClusterNode(options: ClusterNodeOptions): ClusterNode {
  return new ClusterNode(options);
}
