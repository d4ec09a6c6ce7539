import {
  BehaviorSubject,
  distinctUntilChanged,
  filter,
  firstValueFrom,
  map,
  type Observable,
  of,
  Subject,
  type Subscription,
  switchMap,
} from "rxjs";
import { type Actor, createActor, type InspectionEvent } from "xstate";
import { bootstrapIdMachine } from "../../machines/bootstrapId.js";
import { candidateMachine } from "../../machines/candidate.js";
import type { LeaderSeat, LeaderSlot } from "../../machines/events.js";
import { failoverAdvertiserMachine } from "../../machines/failoverAdvertiser.js";
import { followerMachine } from "../../machines/follower.js";
import { groupLeaderMachine } from "../../machines/groupLeader.js";
import { type NodeEvent, nodeMachine } from "../../machines/node.js";
import { type ClusterConfig, ClusterLayout, type NodeSettings } from "../config/index.js";
import {
  ClusterStore,
  connectEtcd,
  type Etcd3,
  EtcdSession,
  FenceLostError,
  type FencingToken,
  type NodeRecord,
  removePoisonedLeaderKey,
  snapshotOf,
  WriteNotCommittedError,
  WriteOutcomeUnknownError,
  watchPrefix,
} from "../etcd/index.js";
import { createLogger, type Logger } from "../logging.js";
import {
  GroupingViews,
  type LeadersSnapshot,
  type LeaderView,
  leadersOf,
  type MembersByGroup,
} from "./groupingViews.js";
import type { HistoryFacts, HistoryRecord, LeaderAction } from "./history.js";
import { type NodeRole, type NodeSnapshot, roleOf, statePath } from "./roles.js";
import { ROOT_ACTOR_ID } from "./timeline.js";

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

export interface NodeStatus {
  name: string;
  role: NodeRole;
  state: string;
  id?: number;
  group?: number;
  grouping?: number;
  leaseId?: string;
  fence?: FencingToken;
}

const RETRY_BASE_MS = 50;
const RETRY_MAX_MS = 2_000;
const ADVERTISE_RETRY_MS = 500;
const RECONNECT_MIN_MS = 250;
const RECONNECT_JITTER_MS = 750;
const LEAVE_TIMEOUT_MS = 800;

/** Long enough for a loaded etcd, short enough that an unanswered call is noticed well within a TTL. */
const callTimeoutFor = (ttlSeconds: number) => Math.min(5_000, Math.max(1_000, (ttlSeconds * 1000) / 2));

/** How a failed fenced write ended: refused for certain, unknown (it may have committed), or another error. */
function writeOutcomeOf(err: unknown): "refused" | "unknown" | "error" {
  if (err instanceof FenceLostError || err instanceof WriteNotCommittedError) return "refused";
  if (err instanceof WriteOutcomeUnknownError) return "unknown";
  return "error";
}

const backoff = (failures: number) => Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** Math.min(failures, 10));

/**
 * One cluster node: binds the node statechart to etcd. Each named effect of the machines is an
 * etcd call here whose result goes back to the actor as an event; etcd watch streams become
 * LEADERS_CHANGED / MEMBERS_CHANGED events. Results of an earlier session are dropped.
 */
export class ClusterNode {
  readonly layout: ClusterLayout;
  readonly settings: NodeSettings;
  readonly client: Etcd3;
  readonly actor: Actor<typeof nodeMachine>;
  readonly log: Logger;
  private readonly store: ClusterStore;
  private readonly statusSubject: BehaviorSubject<NodeStatus>;
  private readonly leadersSubject = new BehaviorSubject<LeadersSnapshot | undefined>(undefined);
  private readonly membersSubject = new BehaviorSubject<MembersByGroup>(new Map());
  private readonly keepaliveSubject = new Subject<number>();
  private session: EtcdSession | undefined;
  private sessionSubscription: Subscription | undefined;
  private groupingSubscriptions: Subscription[] = [];
  private slotWatch: Subscription | undefined;
  private timers = new Set<NodeJS.Timeout>();
  /** Bumped with every session; an effect started under an older one is ignored. */
  private generation = 0;
  /** The revision of this node's own last write; leader views older than it are stale. */
  private lastWriteRevision = 0;
  /** The last set of failed, unadvertised slots seen in this node's grouping. */
  private latestMissing: readonly number[] = [];
  /** The ID this node is a member under, set on entering `member` (the actor's snapshot lags within a step). */
  private memberId: number | undefined;
  /** Deadline of each etcd call this node makes. */
  private readonly callTimeoutMs: number;
  private started = false;
  private lastRole: NodeRole = "connecting";
  private lastState = "";
  private lastEvent = "";

  constructor(private readonly options: ClusterNodeOptions) {
    this.layout =
      options.cluster instanceof ClusterLayout ? options.cluster : new ClusterLayout(options.cluster);
    this.settings = options.settings;
    this.log = (options.logger ?? createLogger()).child({ node: options.settings.nodeName });
    this.client = connectEtcd(options.settings.etcdEndpoints);
    this.callTimeoutMs = callTimeoutFor(options.settings.leaseTtlSeconds);
    this.store = new ClusterStore(this.client, this.layout, this.log, { callTimeoutMs: this.callTimeoutMs });
    this.statusSubject = new BehaviorSubject<NodeStatus>({
      name: options.settings.nodeName,
      role: "connecting",
      state: "connecting",
    });
    this.actor = createActor(this.boundMachine(), {
      id: ROOT_ACTOR_ID,
      inspect: (event) => {
        if (event.type === "@xstate.event" && event.actorRef === this.actor)
          this.lastEvent = event.event.type;
        options.inspect?.(event);
      },
    });
    this.actor.subscribe({
      next: (snapshot) => this.onSnapshot(snapshot),
      error: (err) => this.log.error("node machine failed", { error: String(err) }),
    });
  }

  /** Status changes: role, state, ID, group and fencing token. */
  get status$(): Observable<NodeStatus> {
    return this.statusSubject.asObservable();
  }

  get status(): NodeStatus {
    return this.statusSubject.value;
  }

  get role$(): Observable<NodeRole> {
    return this.statusSubject.pipe(
      map((s) => s.role),
      distinctUntilChanged(),
    );
  }

  /** The node machine's state as a dotted path (e.g. `member.leader`), on every change. */
  get state$(): Observable<string> {
    return this.statusSubject.pipe(
      map((s) => s.state),
      distinctUntilChanged(),
    );
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
    return this.leadersSubject.asObservable();
  }

  /** Round-trip time in milliseconds of every acknowledged keepalive, across sessions. */
  get keepaliveRoundTrips$(): Observable<number> {
    return this.keepaliveSubject.asObservable();
  }

  /** Live members of every group of this node's grouping. */
  get members$(): Observable<MembersByGroup> {
    return this.membersSubject.asObservable();
  }

  /** Starts the node; resolves once it has an ID and a member key (or rejects if it stops first). */
  async start(): Promise<NodeStatus> {
    if (!this.started) {
      this.started = true;
      this.actor.start();
    }
    return this.waitFor((s) => s.id !== undefined || s.role === "stopped").then((s) => {
      if (s.role === "stopped") throw new Error(`node ${this.settings.nodeName} stopped before it joined`);
      return s;
    });
  }

  /** Resolves with the first status that satisfies `predicate`. */
  waitFor(predicate: (status: NodeStatus) => boolean): Promise<NodeStatus> {
    return firstValueFrom(this.statusSubject.pipe(filter(predicate)));
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
   * Stops as a crash would: no resign, no deregistration, no revoke. The lease and every key
   * bound to it stay until etcd expires them one TTL later. For tests and benchmarks.
   */
  crash(): void {
    this.session?.abandon();
    this.sessionSubscription?.unsubscribe();
    this.actor.stop();
    this.shutdown();
  }

  /**
   * Runs `build`'s operations in one transaction that commits only while this node is the
   * grouping's primary and still holds the primary key it held when called: the write path for
   * the embedding server. Throws NotPrimaryError without writing when the node is not the primary
   * (or its lease is past the local deadline), FenceLostError when the key changed meanwhile.
   */
  async fencedTxn(build: Parameters<ClusterStore["fencedTxn"]>[1]) {
    const fence = this.fence;
    if (fence?.slot !== 1 || !this.session?.isValid()) throw new NotPrimaryError(this.status);
    try {
      const txn = await this.store.fencedTxn(fence, build, this.session.leaseId);
      this.recordLeader("write", fence, "ok", { revision: Number(txn.header.revision) });
      return txn;
    } catch (err) {
      this.recordLeader("write", fence, writeOutcomeOf(err), { detail: String(err) });
      throw err;
    }
  }

  private shutdown(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.unwatchGrouping();
    this.slotWatch?.unsubscribe();
    this.client.close();
    this.emitStatus("stopped", "stopped");
  }

  private send(generation: number, event: NodeEvent): void {
    if (generation === this.generation && this.actor.getSnapshot().status === "active")
      this.actor.send(event);
  }

  private later(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      fn();
    }, ms);
    this.timers.add(timer);
  }

  /** Runs an effect; its result event is dropped if the session changed meanwhile. */
  private effect(name: string, run: () => Promise<NodeEvent>, onError: (error: string) => NodeEvent): void {
    const generation = this.generation;
    run().then(
      (event) => this.send(generation, event),
      (err) => {
        const error = err instanceof Error ? err.message : String(err);
        this.log.warn("etcd operation failed", { effect: name, error });
        this.send(generation, onError(error));
      },
    );
  }

  private get record(): Omit<NodeRecord, "id"> {
    return { name: this.settings.nodeName, address: this.settings.address };
  }

  private get leaseId(): string {
    if (!this.session) throw new Error("no session");
    return this.session.leaseId;
  }

  private requireIdentity(): { id: number; grouping: number } {
    const id = this.memberId;
    if (id === undefined) throw new Error("node has no ID yet");
    return { id, grouping: this.layout.groupingOfNode(id) };
  }

  private recordHistory(facts: HistoryFacts): void {
    const history = this.options.history;
    if (!history) return;
    history({
      node: this.settings.nodeName,
      mono: process.hrtime.bigint().toString(),
      t: Date.now(),
      lease: this.session?.leaseId,
      deadlineMs: this.session ? Math.round(this.session.remainingMs()) : undefined,
      ...facts,
    } as HistoryRecord);
  }

  private recordLeader(
    action: LeaderAction,
    fence: FencingToken,
    outcome: "ok" | "refused" | "unknown" | "error",
    extra: { revision?: number; detail?: string } = {},
  ): void {
    this.recordHistory({
      kind: "leader",
      action,
      grouping: fence.grouping,
      slot: fence.slot,
      token: fence.token,
      outcome,
      ...extra,
    });
  }

  private noteWrite(revision: number): void {
    this.lastWriteRevision = Math.max(this.lastWriteRevision, revision);
  }

  private seat(view: LeaderView | undefined): LeaderSeat | undefined {
    if (!view) return undefined;
    const seat: LeaderSeat = { token: view.token, mine: view.lease === this.session?.leaseId };
    if (view.record) seat.nodeId = view.record.id;
    // Every leader key this runtime writes has a lease; a poisoned one without is nobody's.
    if (view.problem !== undefined && view.lease === "0") seat.poisonRevision = view.modRevision;
    return seat;
  }

  /** Says so loudly, on every view of the seats (at least once per re-read interval). */
  private reportPoisonedSeats(grouping: number, leaders: LeadersSnapshot): void {
    for (const [slot, view] of [
      [1, leaders.primary],
      [2, leaders.backup],
    ] as const) {
      if (view?.problem === undefined) continue;
      this.log.error("poisoned leader key: the seat counts as held until it is removed", {
        key: this.layout.keys.leaderKey(grouping, slot),
        problem: view.problem,
        lease: view.lease,
        modRevision: view.modRevision,
        remedy:
          view.lease === "0"
            ? "the grouping's other leader removes it; or run `rdeebee-cluster repair --yes`"
            : "it goes when its lease expires; or run `rdeebee-cluster repair --yes`",
      });
    }
  }

  private leadersEvent(snapshot: LeadersSnapshot): NodeEvent {
    return {
      type: "LEADERS_CHANGED",
      primary: this.seat(snapshot.primary),
      backup: this.seat(snapshot.backup),
    };
  }

  private boundMachine() {
    return nodeMachine.provide({
      actions: {
        openSession: () => this.openSession(),
        // Jittered, so that nodes that lost their sessions together do not all come back at once.
        scheduleReconnect: () =>
          this.later(RECONNECT_MIN_MS + Math.random() * RECONNECT_JITTER_MS, () =>
            this.actor.send({ type: "RECONNECT" }),
          ),
        abandonSession: () => {
          this.sessionSubscription?.unsubscribe();
          // Best effort: a lease this node gave up on should not hold its keys for another TTL.
          const session = this.session;
          session?.revoke().catch(() => session.abandon());
          this.session = undefined;
          this.generation += 1;
        },
        watchGrouping: (_, { id }) => this.watchGrouping(id),
        stopAwaitingAdvertisedSlot: () => this.stopAwaitingAdvertisedSlot(),
        unwatchGrouping: () => this.unwatchGrouping(),
        leaveCluster: (_, params) => this.leaveCluster(params.id, params.office),
      },
      actors: {
        bootstrapId: bootstrapIdMachine.provide({
          actions: {
            claimAdvertisedSlot: () =>
              this.effect(
                "claimAdvertisedSlot",
                async () => {
                  const id = await this.store.claimAdvertisedSlot(this.record, this.leaseId);
                  return id === undefined ? { type: "NO_SLOT_CLAIMED" } : { type: "SLOT_CLAIMED", id };
                },
                (error) => ({ type: "ETCD_FAILED", error }),
              ),
            allocateFreshId: () =>
              this.effect(
                "allocateFreshId",
                async () => {
                  const generation = this.generation;
                  const result = await this.store.allocateFreshId(
                    this.record,
                    this.leaseId,
                    () => generation === this.generation,
                  );
                  return result.kind === "full"
                    ? { type: "CLUSTER_FULL" }
                    : { type: "ID_ALLOCATED", id: result.id };
                },
                (error) => ({ type: "ETCD_FAILED", error }),
              ),
            awaitAdvertisedSlot: () => this.awaitAdvertisedSlot(),
            stopAwaitingAdvertisedSlot: () => this.stopAwaitingAdvertisedSlot(),
            scheduleRetry: (_, { failures }) => {
              const generation = this.generation;
              this.later(backoff(failures), () => this.send(generation, { type: "RETRY" }));
            },
          },
        }),
        follower: followerMachine.provide({ actions: { readLeaders: () => this.readLeadersEffect() } }),
        candidate: candidateMachine.provide({
          actions: {
            campaign: (_, { slot }) =>
              this.effect(
                "campaign",
                async () => {
                  if (!this.session?.isValid()) return { type: "CAMPAIGN_LOST" };
                  const { id, grouping } = this.requireIdentity();
                  const result = await this.store.campaign(
                    grouping,
                    slot,
                    { ...this.record, id },
                    this.leaseId,
                  );
                  if (result.kind === "lost") {
                    this.recordLeader("campaign", { grouping, slot, token: 0 }, "refused");
                    return { type: "CAMPAIGN_LOST" };
                  }
                  this.noteWrite(result.token);
                  this.recordLeader("campaign", { grouping, slot, token: result.token }, "ok", {
                    revision: result.token,
                  });
                  return { type: "CAMPAIGN_WON", token: result.token };
                },
                (error) => ({ type: "ETCD_FAILED", error }),
              ),
          },
        }),
        groupLeader: groupLeaderMachine.provide({
          actions: {
            readLeaders: () => this.readLeadersEffect(),
            removePoisonedSeat: (_, { slot, modRevision }) => this.removePoisonedSeat(slot, modRevision),
            promote: (_, { token }) => {
              // The child's state changes without a new node snapshot: recompute the role.
              queueMicrotask(() => this.onSnapshot(this.actor.getSnapshot()));
              this.effect(
                "promote",
                async () => {
                  if (!this.session?.isValid()) return { type: "PROMOTION_FAILED" };
                  const { id, grouping } = this.requireIdentity();
                  const fence = { grouping, slot: 2 as const, token };
                  const result = await this.store.promote(fence, { ...this.record, id }, this.leaseId);
                  if (result.kind === "lost") {
                    this.recordLeader("promote", fence, "refused");
                    return { type: "PROMOTION_FAILED" };
                  }
                  this.noteWrite(result.token);
                  this.recordLeader("promote", { grouping, slot: 1, token: result.token }, "ok", {
                    revision: result.token,
                  });
                  return { type: "PROMOTED", token: result.token };
                },
                () => ({ type: "PROMOTION_FAILED" }),
              );
            },
          },
          actors: {
            failoverAdvertiser: failoverAdvertiserMachine.provide({
              actions: {
                readMissingSlots: () => {
                  const generation = this.generation;
                  const missing = this.latestMissing;
                  queueMicrotask(() => this.send(generation, { type: "MEMBERS_CHANGED", missing }));
                },
                advertiseSlots: (_, { ids }) => this.advertiseSlots(ids),
                scheduleRetry: () => {
                  const generation = this.generation;
                  this.later(ADVERTISE_RETRY_MS, () => this.send(generation, { type: "RETRY" }));
                },
              },
            }),
          },
        }),
      },
    });
  }

  private openSession(): void {
    this.generation += 1;
    const generation = this.generation;
    const { leaseTtlSeconds: ttlSeconds, keepaliveIntervalMs } = this.settings;
    EtcdSession.open(this.client, { ttlSeconds, keepaliveIntervalMs }, this.log).then(
      (session) => {
        if (generation !== this.generation || this.actor.getSnapshot().status !== "active") {
          void session.revoke().catch(() => undefined);
          return;
        }
        this.session = session;
        this.lastWriteRevision = 0;
        this.sessionSubscription = session.health$.subscribe((health) => {
          if (health === "expiredLocally") this.send(generation, { type: "SESSION_EXPIRED_LOCALLY" });
          else if (health === "lost") this.send(generation, { type: "SESSION_LOST" });
          else this.send(generation, { type: "SESSION_VALID" });
        });
        this.sessionSubscription.add(
          session.keepaliveRoundTrips$.subscribe((ms) => this.keepaliveSubject.next(ms)),
        );
        this.send(generation, { type: "SESSION_OPENED", leaseId: session.leaseId });
      },
      (err) => {
        this.log.warn("cannot open an etcd session", { error: String(err) });
        this.send(generation, { type: "SESSION_FAILED", error: String(err) });
      },
    );
  }

  /**
   * A prefix view that re-reads its keys once per TTL and on every reconnect, so a missed event
   * delays a decision by at most a TTL (the machines treat every re-read as a fresh view).
   */
  private watch(prefix: string) {
    return watchPrefix(this.client, prefix, this.log, {
      resyncIntervalMs: this.settings.leaseTtlSeconds * 1000,
      callTimeoutMs: this.callTimeoutMs,
    });
  }

  private readLeadersEffect(): void {
    this.effect(
      "readLeaders",
      async () => this.leadersEvent(await this.readLeaders()),
      () => ({ type: "RETRY" }),
    );
  }

  /** A fresh read of the leader keys, for decisions after a wait (not a possibly lagging watch). */
  private async readLeaders(): Promise<LeadersSnapshot> {
    const { grouping } = this.requireIdentity();
    const prefix = this.layout.keys.leaderPrefix(grouping);
    const res = await this.client
      .getAll()
      .prefix(prefix)
      .options({ deadline: new Date(Date.now() + this.callTimeoutMs) })
      .exec();
    return leadersOf(snapshotOf(prefix, res), this.layout, grouping);
  }

  private watchGrouping(id: number): void {
    this.memberId = id;
    this.recordHistory({ kind: "identity", id, group: this.layout.nodeGroup(id) });
    const grouping = this.layout.groupingOfNode(id);
    const generation = this.generation;
    const views = new GroupingViews((prefix) => this.watch(prefix), this.layout, grouping, this.log);
    const onError = (err: unknown) => this.log.error("grouping view failed", { error: String(err) });
    this.groupingSubscriptions = [
      views.leaders$.subscribe({
        next: (leaders) => {
          this.reportPoisonedSeats(grouping, leaders);
          this.leadersSubject.next(leaders);
          if (leaders.revision >= this.lastWriteRevision) this.send(generation, this.leadersEvent(leaders));
        },
        error: onError,
      }),
      views.members$.subscribe({
        next: (members) => {
          this.membersSubject.next(members);
          // The views are read after this node's member key was written, so its absence means the
          // key was deleted under a live lease (an operator, a repair): the identity is gone.
          const group = this.layout.nodeGroup(id);
          if (!members.get(group)?.some((record) => record.id === id)) {
            this.log.warn("own member key is gone; renewing the session", {
              key: this.layout.keys.memberKey(group, id),
            });
            this.send(generation, { type: "SESSION_LOST" });
          }
        },
        error: onError,
      }),
      // Only the primary advertises, so only the primary watches the ID counter and the
      // advertisements: with every member watching them, each new ID reached all n nodes.
      this.role$
        .pipe(
          map((role) => role === "primary"),
          distinctUntilChanged(),
          switchMap((primary) => (primary ? views.missingSlots$ : of<readonly number[]>([]))),
        )
        .subscribe({
          next: (missing) => {
            this.latestMissing = missing;
            this.send(generation, { type: "MEMBERS_CHANGED", missing });
          },
          error: onError,
        }),
    ];
  }

  private unwatchGrouping(): void {
    for (const s of this.groupingSubscriptions) s.unsubscribe();
    this.groupingSubscriptions = [];
    this.latestMissing = [];
  }

  private awaitAdvertisedSlot(): void {
    const generation = this.generation;
    const prefix = this.layout.keys.failoverPrefix;
    this.log.info("cluster is full; waiting for an advertised failed slot");
    this.slotWatch?.unsubscribe();
    this.slotWatch = this.watch(prefix)
      .pipe(filter((ads) => ads.entries.size > 0))
      .subscribe({
        next: () => this.send(generation, { type: "SLOT_ADVERTISED" }),
        error: (err) => this.log.error("failover watch failed", { error: String(err) }),
      });
  }

  private stopAwaitingAdvertisedSlot(): void {
    this.slotWatch?.unsubscribe();
    this.slotWatch = undefined;
  }

  private advertiseSlots(ids: readonly number[]): void {
    this.effect(
      "advertiseSlots",
      async () => {
        const fence = this.fence ?? this.officeFence();
        if (!fence || !this.session?.isValid())
          return { type: "ADVERTISE_FAILED", error: "not a leader with a valid lease" };
        const { id } = this.requireIdentity();
        try {
          for (const slot of ids) {
            if (await this.store.advertiseFailedSlot(fence, slot, id)) {
              this.log.info("advertised failed slot", { slot, group: this.layout.nodeGroup(slot) });
              this.recordLeader("advertise", fence, "ok", { detail: `slot ${slot}` });
            }
          }
        } catch (err) {
          if (err instanceof FenceLostError) {
            this.recordLeader("advertise", fence, "refused");
            return { type: "FENCE_LOST" };
          }
          throw err;
        }
        return { type: "SLOTS_ADVERTISED" };
      },
      (error) => ({ type: "ADVERTISE_FAILED", error }),
    );
  }

  /** Deletes the other seat's poisoned key, fenced on this node's own seat; the watch shows the result. */
  private removePoisonedSeat(slot: LeaderSlot, modRevision: number): void {
    const generation = this.generation;
    const fence = this.officeFence();
    if (!fence || !this.session?.isValid()) return;
    const key = this.layout.keys.leaderKey(fence.grouping, slot);
    removePoisonedLeaderKey(this.client, this.layout, fence, key, modRevision, this.callTimeoutMs).then(
      (result) => this.log.warn("poisoned leader key", { key, outcome: result.kind }),
      (err) => {
        this.log.warn("could not remove poisoned leader key", { key, error: String(err) });
        if (err instanceof FenceLostError) this.send(generation, { type: "FENCE_LOST" });
      },
    );
  }

  private officeFence(): FencingToken | undefined {
    const { office } = this.actor.getSnapshot().context;
    const id = this.memberId;
    if (!office || id === undefined) return undefined;
    return { grouping: this.layout.groupingOfNode(id), slot: office.slot, token: office.token };
  }

  private leaveCluster(id: number | undefined, office: { slot: 1 | 2; token: number } | undefined): void {
    const generation = this.generation;
    const session = this.session;
    const leave = async () => {
      if (id !== undefined && office) {
        const fence = { grouping: this.layout.groupingOfNode(id), ...office };
        this.recordLeader("resign", fence, (await this.store.resign(fence)) ? "ok" : "refused");
      }
      if (id !== undefined && session) await this.store.deregister(id, session.leaseId);
      await session?.revoke();
    };
    const timeout = new Promise<void>((resolve) => this.later(LEAVE_TIMEOUT_MS, resolve));
    Promise.race([leave(), timeout])
      .catch((err) => this.log.warn("graceful leave incomplete", { error: String(err) }))
      .finally(() => {
        this.sessionSubscription?.unsubscribe();
        session?.abandon();
        this.send(generation, { type: "LEFT" });
      });
  }

  private onSnapshot(snapshot: NodeSnapshot): void {
    const role = roleOf(snapshot);
    const state = statePath(snapshot);
    if (state !== this.lastState || role !== this.lastRole) {
      this.recordHistory({
        kind: "transition",
        from: this.lastState,
        to: state,
        role,
        id: snapshot.context.id,
        event: this.lastEvent,
      });
      this.log.info("transition", {
        id: snapshot.context.id,
        role,
        from: this.lastState || undefined,
        to: state,
        event: this.lastEvent,
      });
    }
    this.lastState = state;
    this.lastRole = role;
    this.emitStatus(role, state);
  }

  private emitStatus(role: NodeRole, state: string): void {
    const context = this.actor.getSnapshot().context;
    const id = context.id;
    const group = id === undefined ? undefined : this.layout.nodeGroup(id);
    const status: NodeStatus = {
      name: this.settings.nodeName,
      role,
      state,
      id,
      group,
      grouping: group === undefined ? undefined : this.layout.groupingOf(group),
      leaseId: context.leaseId,
      fence: role === "stopped" ? undefined : this.officeFence(),
    };
    const prev = this.statusSubject.value;
    if (JSON.stringify(prev) !== JSON.stringify(status)) this.statusSubject.next(status);
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
