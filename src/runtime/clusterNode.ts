import { filter, firstValueFrom, type Observable, Subject } from "rxjs";
import { type Actor, createActor, type InspectionEvent } from "xstate";
import type { nodeMachine } from "../../machines/node.js";
import { type ClusterConfig, ClusterLayout, type NodeSettings } from "../config/index.js";
import {
  ClusterStore,
  connectEtcd,
  type Etcd3,
  type FencedWrite,
  type FencingToken,
  watchPrefix,
} from "../etcd/index.js";
import { createLogger, type Logger } from "../logging.js";
import { type PoisonedLeaderKey, readPoisonedLeaderKeys } from "./clusterStatus.js";
import { boundNodeMachine } from "./effects/index.js";
import { GroupingEvents } from "./groupingEvents.js";
import type { LeadersSnapshot, MembersByGroup } from "./groupingViews.js";
import { type HistoryRecord, HistoryRecorder } from "./history.js";
import { type NodeStatus, StatusProjection } from "./nodeStatus.js";
import { RecordingStore } from "./recordingStore.js";
import type { NodeRole } from "./roles.js";
import { SessionScope, Timers } from "./sessionScope.js";
import { ROOT_ACTOR_ID } from "./timeline.js";

export type { NodeStatus } from "./nodeStatus.js";

export interface ClusterNodeOptions {
  /** The cluster config (or a layout already derived from it). */
  cluster: ClusterConfig | ClusterLayout;
  settings: NodeSettings;
  logger?: Logger;
  /** Receives every XState inspection event of this node's actors (see `xstate` `inspect`). */
  inspect?: (event: InspectionEvent) => void;
  /** Receives every transition, identity and leader action, for history checking. */
  history?: (record: HistoryRecord) => void;
}

/** Long enough for a loaded etcd, short enough that an unanswered call is noticed well within a TTL. */
const callTimeoutFor = (ttlSeconds: number) => Math.min(5_000, Math.max(1_000, (ttlSeconds * 1000) / 2));

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
  private readonly store: RecordingStore;
  private readonly projection: StatusProjection;
  private readonly grouping: GroupingEvents;
  private readonly timers = new Timers();
  private readonly keepalives = new Subject<number>();
  private scope: SessionScope;
  private started = false;

  constructor(options: ClusterNodeOptions) {
    const { settings } = options;
    this.layout =
      options.cluster instanceof ClusterLayout ? options.cluster : new ClusterLayout(options.cluster);
    this.settings = settings;
    this.log = (options.logger ?? createLogger()).child({ node: settings.nodeName });
    const callTimeoutMs = callTimeoutFor(settings.leaseTtlSeconds);
    this.client = connectEtcd(settings.etcdEndpoints, { callTimeoutMs });
    this.scope = this.newScope();
    const history = new HistoryRecorder(settings.nodeName, options.history, () => this.scope.session);
    const store = new ClusterStore(this.client, this.layout, this.log, { callTimeoutMs });
    this.store = new RecordingStore(store, history);
    const snapshot = () => this.actor.getSnapshot();
    this.projection = new StatusProjection(settings.nodeName, this.layout, this.log, history, snapshot);
    // Views re-read their keys once per TTL and on every reconnect: a missed event delays a decision by a TTL at most.
    const resync = { resyncIntervalMs: settings.leaseTtlSeconds * 1000, callTimeoutMs };
    const watch = (prefix: string) => watchPrefix(this.client, prefix, this.log, resync);
    const etcd = { layout: this.layout, log: this.log, etcd: this.client, callTimeoutMs, watch };
    this.grouping = new GroupingEvents({ ...etcd, role$: this.projection.role$ });
    const machine = boundNodeMachine({
      ...etcd,
      settings,
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
        this.projection.inspect(event);
        options.inspect?.(event);
      },
    });
    this.actor.subscribe({ error: (err) => this.log.error("node machine failed", { error: String(err) }) });
  }

  /** Status changes: role, state, ID, group and fencing token. */
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

  /** Starts the node; resolves once it has an ID and a member key (or rejects if it stops first). */
  async start(): Promise<NodeStatus> {
    if (!this.started) {
      this.started = true;
      this.actor.start();
    }
    const status = await this.waitFor((s) => s.id !== undefined || s.role === "stopped");
    if (status.role === "stopped") throw new Error(`node ${this.settings.nodeName} stopped before it joined`);
    return status;
  }

  /** Resolves with the first status that satisfies `predicate`. */
  waitFor(predicate: (status: NodeStatus) => boolean): Promise<NodeStatus> {
    return firstValueFrom(this.projection.status$.pipe(filter(predicate)));
  }

  /** Graceful stop: resigns any leader key, deletes the member key, revokes the lease. */
  async stop(): Promise<void> {
    if (!this.started) {
      this.client.close();
      return;
    }
    this.actor.send({ type: "STOP" });
    await this.waitFor((s) => s.role === "stopped");
    this.shutdown();
  }

  /**
   * Runs `build`'s operations in one transaction that commits only while this node is the
   * grouping's primary and still holds the primary key it held when called: the write path for
   * the embedding server. Throws NotPrimaryError without writing when the node is not the primary
   * (or its lease is past the local deadline), FenceLostError when the key changed meanwhile.
   */
  async fencedTxn(build: Parameters<ClusterStore["fencedTxn"]>[1]): Promise<FencedWrite> {
    const fence = this.fence;
    const session = this.scope.session;
    if (fence?.seat !== 1 || !session?.isValid()) throw new NotPrimaryError(this.status);
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
    this.scope.end();
    session?.abandon();
    this.actor.stop();
    this.shutdown();
  }

  get [clientHook](): Etcd3 {
    return this.client;
  }

  private shutdown(): void {
    this.scope.end();
    this.timers.clear();
    this.grouping.stop();
    this.client.close();
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

export function createClusterNode(options: ClusterNodeOptions): ClusterNode {
  return new ClusterNode(options);
}
