import type { ClusterLayout } from "../config/index.js";
import { idHighWaterMark } from "../etcd/codec.js";
import type { HistoryRecord } from "../runtime/history.js";

/** A key's state as an observer of etcd saw it. */
export interface ObservedKeyValue {
  value: string;
  size: number;
  createRevision: number;
  modRevision: number;
  lease: string;
}

/** One watch event of the whole key space, as an observer received it. */
export interface ObservedEvent extends ObservedKeyValue {
  revision: number;
  type: "put" | "delete";
  key: string;
  prev?: ObservedKeyValue;
  /** Wall-clock milliseconds when the observer received the event. */
  receivedAt: number;
}

export type Rule =
  | "leaders"
  | "fencing"
  | "deadline"
  | "ids"
  | "slots"
  | "exits"
  | "members"
  | "writes"
  | "vacancy"
  | "overlap";

export interface Violation {
  rule: Rule;
  message: string;
  revision?: number;
  node?: string;
}

/** A primary key deleted, and the next primary key of the same grouping put. */
export interface Failover {
  grouping: number;
  deletedRevision: number;
  putRevision: number;
  /** Observer receive times of the two revisions. */
  deletedAt: number;
  putAt: number;
  gapMs: number;
  from?: number;
  to?: number;
  cause: "expired" | "resigned";
}

/** How one node process ended, as the harness saw it. */
export interface ProcessFate {
  name: string;
  /** Exit code and signal; undefined while it runs. */
  exit?: { code: number | null; signal: string | null };
  /** The scenario killed it on purpose (`kill -9`). */
  killed: boolean;
  /** When it was killed, in ms on the monotonic clock of the history records' `mono`. */
  killedAtMs?: number;
  /** The harness stopped it with SIGTERM at the end: it must exit with code 0. */
  stopped: boolean;
}

/** One member key as read from etcd at the end. */
export interface FinalMember {
  key: string;
  lease: string;
  /** The node name in its value, if the value names one. */
  name?: string;
}

/** Member keys read from etcd once the cluster settled at the end, and the processes alive then. */
export interface FinalMembership {
  members: readonly FinalMember[];
  liveNodes: readonly string[];
}

/** One fenced write through the example server, and what the server answered. */
export interface WriteAttempt {
  node: string;
  /** The etcd key the server commits the write under (`commitRecordKey`). */
  key: string;
  /** Unique per attempt: how the committed record is recognised in etcd. */
  value: string;
  /** HTTP status of the answer; 0 when none came (connection lost, client timeout). */
  status: number;
  /** The revision the server reported for a committed write. */
  revision?: number;
}

export type WriteOutcome = "committed" | "refused" | "unknown";

/** What a fenced write's HTTP status claims: 2xx committed, 409 refused, 503/504 or no answer unknown. */
export function writeOutcomeOf(status: number): WriteOutcome | undefined {
  if (status >= 200 && status < 300) return "committed";
  if (status === 409) return "refused";
  if (status === 0 || status === 503 || status === 504) return "unknown";
  return undefined;
}

/**
 * A span of wall-clock time in which the scenario itself kept a backup from acting: etcd down (no
 * `node`) or that node paused or cut off. Subtracted from vacancies whose backup it concerns.
 */
export interface Impairment {
  from: number;
  to: number;
  node?: string;
  what: string;
}

export interface VacancyTiming {
  ttlMs: number;
  /** The interval at which a node re-reads the leader keys; the rule takes it to be one TTL. */
  rereadMs?: number;
  /** Allowance for process scheduling on a loaded machine. */
  graceMs?: number;
}

/** Process scheduling on a loaded 2-core machine: a node may run this late on top of TTL + re-read. */
export const VACANCY_GRACE_MS = 1_500;

export interface CheckInput {
  layout: ClusterLayout;
  events: readonly ObservedEvent[];
  histories: readonly HistoryRecord[];
  /** Revisions of writes the test made itself (planted values and their removal). */
  foreignRevisions?: ReadonlySet<number>;
  processes?: readonly ProcessFate[];
  finalMembership?: FinalMembership;
  writes?: readonly WriteAttempt[];
  /** Given: a vacant primary seat with a live backup is bounded by TTL + re-read interval + grace. */
  vacancy?: VacancyTiming;
  /**
   * Wall time at which the harness began stopping nodes with SIGTERM: later vacancies are not
   * judged, and a member key of a stopped process deleted after it needs no advertisement.
   */
  endedAt?: number;
  impairments?: readonly Impairment[];
}

/** A span in which a grouping's primary seat was vacant while its backup key was held. */
export interface Vacancy {
  grouping: number;
  fromRevision: number;
  toRevision?: number;
  /** Observer time, minus the impairments that concern the backup. */
  ms: number;
  backup?: string;
}

export interface CheckReport {
  ok: boolean;
  violations: Violation[];
  failovers: Failover[];
  vacancies: Vacancy[];
  counts: { events: number; revisions: number; records: number; leaderActions: number; nodes: number };
}

type KeyKind =
  | { kind: "leader"; grouping: number; slot: 1 | 2 }
  | { kind: "member"; id: number }
  | { kind: "failover"; id: number }
  | { kind: "counter" }
  | { kind: "other" };

/** One lifetime of a key: from the put that created it to the delete that ended it. */
interface Life {
  key: string;
  createRevision: number;
  lease: string;
  /** The lease the key was created under; `lease` changes when a primary key is handed off. */
  createdUnder: string;
  value: string;
  deletedAt?: number;
  foreign: boolean;
}

/** One death of a member key, and the advertisements of its slot until the ID lives again. */
interface Death {
  id: number;
  revision: number;
  lease: string;
  /** The node name in the member key's value. */
  name?: string;
  adPuts: number[];
  /** The revision at which the same node took the ID back (sticky identity): nothing to advertise. */
  reclaimedAt?: number;
  /** The revision at which a newcomer claimed the slot of a full cluster that nobody led: nobody to advertise. */
  claimedLeaderlessAt?: number;
}

/** A stretch of revisions in which no key existed under the leaders prefix (nobody led any grouping). */
interface LeaderlessSpan {
  from: number;
  /** The revision that put a leader key again, and when the observer saw it; undefined while it lasts. */
  to?: number;
  toAt?: number;
}

type LeaderRecord = Extract<HistoryRecord, { kind: "leader" }>;

/** A vacancy as replayed: observer times of its first and (once closed) last revision. */
interface OpenVacancy {
  grouping: number;
  fromRevision: number;
  from: number;
  to?: number;
  toRevision?: number;
  backup?: string;
}

/** The node ID that ends `key` after `prefix`, written as the runtime writes IDs (plain decimal). */
function idAfter(prefix: string, key: string): number | undefined {
  if (!key.startsWith(prefix)) return undefined;
  const rest = key.slice(prefix.length);
  return /^(0|[1-9]\d{0,8})$/.test(rest) ? Number(rest) : undefined;
}

export function classifyKey(layout: ClusterLayout, key: string): KeyKind {
  const keys = layout.keys;
  if (key === keys.idKey) return { kind: "counter" };
  if (key.startsWith(keys.allLeadersPrefix)) {
    for (let grouping = 0; grouping < layout.groupings.length; grouping++) {
      if (key === keys.leaderKey(grouping, 1)) return { kind: "leader", grouping, slot: 1 };
      if (key === keys.leaderKey(grouping, 2)) return { kind: "leader", grouping, slot: 2 };
    }
    return { kind: "other" };
  }
  if (key.startsWith(keys.allMembersPrefix)) {
    for (let group = 0; group < layout.config.groups; group++) {
      const id = idAfter(keys.membershipPrefix(group), key);
      if (id !== undefined && layout.isNodeId(id) && layout.nodeGroup(id) === group)
        return { kind: "member", id };
    }
    return { kind: "other" };
  }
  const id = idAfter(keys.failoverPrefix, key);
  if (id !== undefined && layout.isNodeId(id)) return { kind: "failover", id };
  return { kind: "other" };
}

function parseJson(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** The node ID named by a leader or member value, if it has one. */
export function idOf(value: string): number | undefined {
  const id = parseJson(value)?.id;
  return typeof id === "number" && Number.isInteger(id) ? id : undefined;
}

function tokenOf(value: string): number | undefined {
  const token = parseJson(value)?.token;
  return typeof token === "number" ? token : undefined;
}

function covers(life: Life, revision: number): boolean {
  return life.createRevision <= revision && (life.deletedAt === undefined || revision < life.deletedAt);
}

function byRevision(events: readonly ObservedEvent[]): Map<number, ObservedEvent[]> {
  const groups = new Map<number, ObservedEvent[]>();
  for (const event of [...events].sort((a, b) => a.revision - b.revision)) {
    const group = groups.get(event.revision);
    if (group) group.push(event);
    else groups.set(event.revision, [event]);
  }
  return groups;
}

/** Replays the observer's events in revision order and checks what must hold at every revision. */
class Replay {
  readonly violations: Violation[] = [];
  readonly lives = new Map<string, Life[]>();
  readonly deaths: Death[] = [];
  readonly failovers: Failover[] = [];
  readonly revisionTimes = new Map<number, number>();
  private readonly state = new Map<string, Life>();
  private readonly openDeaths = new Map<number, Death>();
  private readonly everLived = new Set<number>();
  /** `id_key`'s version as replayed (puts since its creation): the ticket high-water mark's input. */
  private idKeyVersion = 0;
  /** Every ID below it was handed out (a ticket, or the counter of old): the highest mark seen. */
  private idHighWater = 0;
  private readonly vacatedPrimaries = new Map<
    number,
    { revision: number; at: number; from?: number; life: Life }
  >();
  readonly vacancies: OpenVacancy[] = [];
  private readonly openVacancies = new Map<number, OpenVacancy>();

  constructor(
    private readonly layout: ClusterLayout,
    private readonly foreign: ReadonlySet<number>,
    private readonly resignedTokens: ReadonlySet<number>,
    /** Leases of nodes that recorded a graceful stop: only such a primary hands its key off. */
    private readonly stoppingLeases: ReadonlySet<string> = new Set(),
    /** `lease/id` of every identity a node's history records as its own ID taken back. */
    private readonly reclaims: ReadonlySet<string> = new Set(),
    /**
     * `lease/id` of every identity a node's history records as a fresh ID, with the wall time of
     * its first record under that lease (its session opened then, before any read for the claim).
     */
    private readonly freshClaims: ReadonlyMap<string, number> = new Map(),
  ) {}

  /** Leaderless from revision 0: nobody leads before the first campaign. */
  private readonly leaderless: LeaderlessSpan[] = [{ from: 0 }];

  run(events: readonly ObservedEvent[]): void {
    for (const [revision, group] of byRevision(events)) {
      this.revisionTimes.set(revision, Math.min(...group.map((e) => e.receivedAt)));
      const foreign = this.foreign.has(revision);
      const before = new Map(group.map((e) => [e.key, this.state.get(e.key)]));
      // A put on a live key updates its life in place: its lease before the put is kept here.
      const leasesBefore = new Map(group.map((e) => [e.key, this.state.get(e.key)?.lease]));
      for (const event of group) this.apply(event, foreign);
      this.trackLeaderless(revision, group);
      // Every put of id_key counts, the scenario's own too: its version is the high-water mark.
      this.trackIdHighWater(group);
      if (foreign) continue;
      const kinds = group.map((e) => ({
        event: e,
        kind: classifyKey(this.layout, e.key),
        prior: before.get(e.key),
        priorLease: leasesBefore.get(e.key),
      }));
      this.checkLeaders(revision, kinds);
      this.checkMembers(revision, kinds);
      this.checkSlots(revision, kinds);
      this.trackFailovers(revision, kinds);
      this.trackVacancies(revision, kinds);
    }
  }

  /** Opens a vacancy when a grouping has a backup key but no primary key, closes it when that ends. */
  private trackVacancies(revision: number, kinds: Touched[]): void {
    const groupings = new Set(kinds.flatMap(({ kind }) => (kind.kind === "leader" ? [kind.grouping] : [])));
    const at = this.revisionTimes.get(revision) ?? 0;
    for (const grouping of groupings) {
      const keys = this.layout.leaderKeys(grouping);
      const backup = this.state.get(keys[2]);
      const vacant = !this.state.has(keys[1]) && backup !== undefined && !backup.foreign;
      const open = this.openVacancies.get(grouping);
      if (open && !vacant) {
        open.to = at;
        open.toRevision = revision;
        this.openVacancies.delete(grouping);
      } else if (!open && vacant) {
        const name = parseJson(backup.value)?.name;
        const vacancy = {
          grouping,
          fromRevision: revision,
          from: at,
          backup: typeof name === "string" ? name : undefined,
        };
        this.vacancies.push(vacancy);
        this.openVacancies.set(grouping, vacancy);
      }
    }
  }

  private apply(event: ObservedEvent, foreign: boolean): void {
    if (event.type === "delete") {
      const life = this.state.get(event.key);
      if (life) life.deletedAt = event.revision;
      this.state.delete(event.key);
      return;
    }
    const current = this.state.get(event.key);
    if (current && current.createRevision === event.createRevision) {
      current.value = event.value;
      current.lease = event.lease;
      return;
    }
    const life: Life = {
      key: event.key,
      createRevision: event.createRevision,
      lease: event.lease,
      createdUnder: event.lease,
      value: event.value,
      foreign,
    };
    this.state.set(event.key, life);
    const lives = this.lives.get(event.key);
    if (lives) lives.push(life);
    else this.lives.set(event.key, [life]);
  }

  private fail(rule: Rule, revision: number, message: string): void {
    this.violations.push({ rule, revision, message });
  }

  private liveMember(id: number): Life | undefined {
    return this.state.get(this.layout.keys.memberKey(this.layout.nodeGroup(id), id));
  }

  /**
   * Primary and backup of a grouping are different nodes; every leader is a live member under its
   * lease; a live leader key never changes lease.
   */
  private checkLeaders(revision: number, kinds: Touched[]): void {
    const groupings = new Set(kinds.flatMap(({ kind }) => (kind.kind === "leader" ? [kind.grouping] : [])));
    for (const grouping of groupings) {
      const keys = this.layout.leaderKeys(grouping);
      const primary = this.state.get(keys[1]);
      const backup = this.state.get(keys[2]);
      if (!primary || !backup) continue;
      const [p, b] = [idOf(primary.value), idOf(backup.value)];
      if ((p !== undefined && p === b) || (primary.lease !== "0" && primary.lease === backup.lease))
        this.fail(
          "leaders",
          revision,
          `grouping ${grouping}: primary and backup are both node ${p} (lease ${primary.lease})`,
        );
    }
    for (const { event, kind, prior, priorLease } of kinds) {
      if (kind.kind !== "leader" || event.type !== "put") continue;
      // Campaigns and promotions only ever create a leader key: a put that moves a live one to
      // another lease takes a seat that was never vacant (a promotion over a live primary). The one
      // exception is a stopping primary's handoff: the primary key moves to the lease of the backup
      // key that the same revision deletes, from the lease of a node that recorded its graceful stop.
      const handoff =
        kind.slot === 1 &&
        priorLease !== undefined &&
        this.stoppingLeases.has(priorLease) &&
        kinds.some(
          (other) =>
            other.event.type === "delete" &&
            other.kind.kind === "leader" &&
            other.kind.grouping === kind.grouping &&
            other.kind.slot === 2 &&
            other.priorLease === event.lease,
        );
      if (prior && priorLease !== event.lease && !handoff)
        this.fail(
          "leaders",
          revision,
          `${event.key} (created at ${prior.createRevision}) moved from lease ${priorLease} to ${event.lease} while live: a seat taken without being vacant`,
        );
      const id = idOf(event.value);
      const member = id === undefined || !this.layout.isNodeId(id) ? undefined : this.liveMember(id);
      if (!member || member.lease !== event.lease)
        this.fail(
          "leaders",
          revision,
          `${event.key} put for node ${id} (lease ${event.lease}), which is not a live member under that lease`,
        );
    }
  }

  /** A member key keeps its lease while it lives, names its own ID, and one lease holds one member key. */
  private checkMembers(revision: number, kinds: Touched[]): void {
    let touched = false;
    for (const { event, kind, prior, priorLease } of kinds) {
      if (kind.kind !== "member") continue;
      touched = true;
      if (event.type !== "put") continue;
      // `prior` is the key's life, already updated by this put: its lease before the put is `priorLease`.
      if (prior && priorLease !== event.lease)
        this.fail(
          "ids",
          revision,
          `member key of ID ${kind.id} moved from lease ${priorLease} to ${event.lease} while live`,
        );
      if (idOf(event.value) !== kind.id)
        this.fail("ids", revision, `${event.key} holds ${JSON.stringify(event.value.slice(0, 80))}`);
    }
    if (!touched) return;
    const idsByLease = new Map<string, number[]>();
    for (const [key, life] of this.state) {
      const kind = classifyKey(this.layout, key);
      if (kind.kind !== "member" || life.foreign) continue;
      idsByLease.set(life.lease, [...(idsByLease.get(life.lease) ?? []), kind.id]);
    }
    for (const [lease, ids] of idsByLease)
      if (ids.length > 1)
        this.fail("ids", revision, `lease ${lease} holds member keys of IDs ${ids.join(", ")}`);
  }

  /**
   * Opens a leaderless span when the last key under the leaders prefix bound to a lease goes (valid
   * or not: the runtime counts any such key; one without a lease is poisoned and leads nobody),
   * closes it when one is put.
   */
  private trackLeaderless(revision: number, events: readonly ObservedEvent[]): void {
    const prefix = this.layout.keys.allLeadersPrefix;
    if (!events.some((e) => e.key.startsWith(prefix))) return;
    const led = [...this.state].some(([key, life]) => key.startsWith(prefix) && life.lease !== "0");
    const open = this.leaderless.at(-1);
    if (led && open && open.to === undefined) {
      open.to = revision;
      open.toAt = this.revisionTimes.get(revision);
    } else if (!led && (!open || open.to !== undefined)) this.leaderless.push({ from: revision });
  }

  /**
   * A member key of a dead ID created at `revision` without an advertisement is a newcomer's claim
   * of a full cluster's free slot that nobody leads (`claimFreeSlotOfLeaderlessCluster`) when: the
   * node recorded the ID as fresh under that lease, every ID was handed out (the high-water mark at
   * the capacity: the newcomer's ticket read said full), and some leaderless span began before the
   * claim and lasted past the moment the node's session opened (its read of the leaders came after
   * that, and a span closed by a put the observer saw earlier was over before the read).
   */
  private claimedLeaderless(lease: string, id: number, revision: number): boolean {
    const openedAt = this.freshClaims.get(`${lease}/${id}`);
    if (openedAt === undefined || this.idHighWater < this.layout.capacity) return false;
    return this.leaderless.some(
      (span) => span.from < revision && (span.to === undefined || (span.toAt ?? 0) > openedAt),
    );
  }

  private trackIdHighWater(events: readonly ObservedEvent[]): void {
    for (const event of events) {
      if (classifyKey(this.layout, event.key).kind !== "counter") continue;
      this.idKeyVersion = event.type === "put" ? this.idKeyVersion + 1 : 0;
      const kv = event.type === "put" ? { value: event.value, version: this.idKeyVersion } : undefined;
      this.idHighWater = Math.max(this.idHighWater, idHighWaterMark(kv, this.layout.capacity).allocated);
    }
  }

  /**
   * A dead member's slot is advertised at most once per death, only while it has no member, or, never
   * having lived, once handed out (a burnt ticket); an ID lives first only once handed out (below the
   * `id_key` high-water mark, replayed from its puts as `idHighWaterMark` reads it), and again only by
   * a claim that deletes its advertisement, by its previous holder taking it back (sticky identity), or
   * by a newcomer claiming it in a full cluster that nobody leads (see `claimedLeaderless`).
   */
  private checkSlots(revision: number, kinds: Touched[]): void {
    const adDeleted = new Set(
      kinds.flatMap(({ kind, event }) =>
        kind.kind === "failover" && event.type === "delete" ? [kind.id] : [],
      ),
    );
    const memberCreated = new Set(
      kinds.flatMap(({ kind, event, prior }) =>
        kind.kind === "member" && event.type === "put" && !prior ? [kind.id] : [],
      ),
    );
    for (const { event, kind, prior } of kinds) {
      if (kind.kind === "member" && event.type === "delete" && prior) {
        const name = parseJson(prior.value)?.name;
        const death: Death = {
          id: kind.id,
          revision,
          lease: prior.lease,
          name: typeof name === "string" ? name : undefined,
          adPuts: [],
        };
        this.deaths.push(death);
        this.openDeaths.set(kind.id, death);
      } else if (kind.kind === "member" && event.type === "put" && !prior) {
        if (!this.everLived.has(kind.id) && kind.id >= this.idHighWater)
          this.fail(
            "ids",
            revision,
            `ID ${kind.id} registered but never handed out (high-water mark ${this.idHighWater})`,
          );
        const name = parseJson(event.value)?.name;
        const death = this.openDeaths.get(kind.id);
        const reclaimed =
          death !== undefined &&
          ((name !== undefined && death.name === name) || this.reclaims.has(`${event.lease}/${kind.id}`));
        if (reclaimed && death.adPuts.length === 0) death.reclaimedAt = revision;
        if (this.everLived.has(kind.id) && !adDeleted.has(kind.id) && !reclaimed) {
          if (!this.claimedLeaderless(event.lease, kind.id, revision))
            this.fail("slots", revision, `ID ${kind.id} reused without claiming its advertisement`);
          else if (death && death.adPuts.length === 0) death.claimedLeaderlessAt = revision;
        }
        this.openDeaths.delete(kind.id);
        this.everLived.add(kind.id);
      } else if (kind.kind === "failover" && event.type === "put") {
        const death = this.openDeaths.get(kind.id);
        if (this.liveMember(kind.id))
          this.fail("slots", revision, `slot ${kind.id} advertised while its member is live`);
        else if (death) death.adPuts.push(revision);
        else if (this.everLived.has(kind.id) || kind.id >= this.idHighWater)
          this.fail("slots", revision, `slot ${kind.id} advertised but it never failed nor was handed out`);
      } else if (kind.kind === "failover" && event.type === "delete" && !memberCreated.has(kind.id)) {
        this.fail("slots", revision, `advertisement of slot ${kind.id} deleted without a claim`);
      }
    }
  }

  private trackFailovers(revision: number, kinds: Touched[]): void {
    for (const { event, kind, prior } of kinds) {
      if (kind.kind !== "leader" || kind.slot !== 1) continue;
      if (event.type === "delete" && prior) {
        this.vacatedPrimaries.set(kind.grouping, {
          revision,
          at: event.receivedAt,
          from: idOf(prior.value),
          life: prior,
        });
      } else if (event.type === "put" && !prior) {
        const vacated = this.vacatedPrimaries.get(kind.grouping);
        this.vacatedPrimaries.delete(kind.grouping);
        if (!vacated) continue;
        this.failovers.push({
          grouping: kind.grouping,
          deletedRevision: vacated.revision,
          putRevision: revision,
          deletedAt: vacated.at,
          putAt: event.receivedAt,
          gapMs: event.receivedAt - vacated.at,
          from: vacated.from,
          to: idOf(event.value),
          cause: this.resignedTokens.has(vacated.life.createRevision) ? "resigned" : "expired",
        });
      }
    }
  }
}

type Touched = { event: ObservedEvent; kind: KeyKind; prior: Life | undefined; priorLease?: string };

function leaderRecords(histories: readonly HistoryRecord[]): LeaderRecord[] {
  return histories.filter((r): r is LeaderRecord => r.kind === "leader");
}

/**
 * Every leader key created under the lease of a node with a history is one that node recorded as
 * won: a campaign or promotion that committed is never reported refused or failed (as when a lost
 * reply is re-sent and the re-sent compare fails against the node's own first attempt).
 */
function checkLeaderKeysWon(input: CheckInput, replay: Replay): Violation[] {
  const nodeByLease = new Map<string, string>();
  for (const r of input.histories) if (r.lease !== undefined) nodeByLease.set(r.lease, r.node);
  const won = new Set(
    leaderRecords(input.histories).flatMap((r) =>
      r.outcome === "ok" && (r.action === "campaign" || r.action === "promote")
        ? [`${r.grouping}/${r.slot}/${r.token}`]
        : [],
    ),
  );
  const violations: Violation[] = [];
  for (const [key, lives] of replay.lives) {
    const kind = classifyKey(input.layout, key);
    if (kind.kind !== "leader") continue;
    for (const life of lives) {
      const node = nodeByLease.get(life.lease);
      if (
        life.foreign ||
        node === undefined ||
        won.has(`${kind.grouping}/${kind.slot}/${life.createRevision}`)
      )
        continue;
      violations.push({
        rule: "fencing",
        node,
        revision: life.createRevision,
        message: `${key} created at revision ${life.createRevision} under ${node}'s lease ${life.lease}, which recorded no won campaign or promotion for it`,
      });
    }
  }
  return violations;
}

/** Every acknowledged leader action committed while its leader key existed with its token. */
function checkFencing(input: CheckInput, replay: Replay): Violation[] {
  const { layout } = input;
  const violations: Violation[] = [];
  const adsMatched = new Set<ObservedEvent>();
  const fail = (record: LeaderRecord, message: string, revision?: number) =>
    violations.push({
      rule: "fencing",
      node: record.node,
      revision,
      message: `${record.node} ${record.action}: ${message}`,
    });
  for (const record of leaderRecords(input.histories)) {
    if (record.outcome !== "ok" || record.token === undefined) continue;
    const key = layout.keys.leaderKey(record.grouping, record.slot);
    const lives = replay.lives.get(key) ?? [];
    const office = lives.find((life) => life.createRevision === record.token);
    if (record.action === "campaign" || record.action === "promote") {
      if (!office || record.revision !== record.token)
        fail(record, `no ${key} created at revision ${record.token}`, record.revision);
      else if (record.lease !== undefined && office.createdUnder !== record.lease)
        fail(
          record,
          `${key} created under lease ${office.createdUnder}, not the node's ${record.lease}`,
          record.token,
        );
    } else if (record.action === "write") {
      if (record.revision === undefined || !office || !covers(office, record.revision))
        fail(
          record,
          `committed at ${record.revision} while ${key} did not have create revision ${record.token}`,
          record.revision,
        );
    } else if (record.action === "resign") {
      if (!office || office.deletedAt === undefined)
        fail(record, `${key} with token ${record.token} was never deleted`);
    } else if (record.action === "advertise") {
      const slot = Number(/slot (\d+)/.exec(record.detail ?? "")?.[1]);
      // An advertiser that finds its own advertisement already there acknowledges it again (a view
      // that lagged, a lost reply): such a record matches the put an earlier one matched.
      const candidates = input.events.filter(
        (e) =>
          e.type === "put" && e.key === layout.keys.failoverKey(slot) && tokenOf(e.value) === record.token,
      );
      const ad = candidates.sort(
        (a, b) =>
          Number(adsMatched.has(a)) - Number(adsMatched.has(b)) ||
          Math.abs(a.receivedAt - record.t) - Math.abs(b.receivedAt - record.t),
      )[0];
      if (!ad) fail(record, `no advertisement of slot ${slot} with token ${record.token} in etcd`);
      else {
        adsMatched.add(ad);
        if (!office || !covers(office, ad.revision))
          fail(
            record,
            `slot ${slot} advertised at ${ad.revision} while ${key} did not have create revision ${record.token}`,
            ad.revision,
          );
      }
    }
  }
  return violations;
}

/** A leader key from one revision on: its create revision and lease, or absent. */
interface LeaderKeyState {
  revision: number;
  held?: { createRevision: number; lease: string };
}

/** Each leader key's states in revision order, from the observer's events. */
function leaderKeyTimelines(
  layout: ClusterLayout,
  events: readonly ObservedEvent[],
): Map<string, LeaderKeyState[]> {
  const timelines = new Map<string, LeaderKeyState[]>();
  for (const event of [...events].sort((a, b) => a.revision - b.revision)) {
    if (classifyKey(layout, event.key).kind !== "leader") continue;
    const held =
      event.type === "put" ? { createRevision: event.createRevision, lease: event.lease } : undefined;
    const states = timelines.get(event.key);
    if (states) states.push({ revision: event.revision, held });
    else timelines.set(event.key, [{ revision: event.revision, held }]);
  }
  return timelines;
}

/** The key as a transaction committed at `revision` compared it: after every earlier revision. */
function heldBefore(states: readonly LeaderKeyState[], revision: number): LeaderKeyState["held"] {
  let [low, high] = [0, states.length];
  while (low < high) {
    const middle = (low + high) >> 1;
    if ((states[middle]?.revision ?? 0) < revision) low = middle + 1;
    else high = middle;
  }
  return states[low - 1]?.held;
}

/**
 * An acknowledged write, advertisement or handoff committed while its leader key had the action's
 * lease as well as its token. A graceful handoff keeps the primary key's create revision (the token)
 * and moves it to the backup's lease, so the token alone cannot tell the old primary's late action
 * from the new primary's. Only a key with the action's token is judged here: a token that does not
 * match is `checkFencing`'s violation. (Campaigns and promotions create their key: `checkFencing`
 * compares the lease it was created under.)
 */
function checkActionLeases(input: CheckInput): Violation[] {
  const { layout } = input;
  const timelines = leaderKeyTimelines(layout, input.events);
  const violations: Violation[] = [];
  for (const record of leaderRecords(input.histories)) {
    if (record.outcome !== "ok" || record.token === undefined || record.lease === undefined) continue;
    const key = layout.keys.leaderKey(record.grouping, record.slot);
    const states = timelines.get(key) ?? [];
    let revisions: number[];
    if (record.action === "write" || record.action === "handoff")
      revisions = record.revision === undefined ? [] : [record.revision];
    else if (record.action === "advertise") {
      const slot = Number(/slot (\d+)/.exec(record.detail ?? "")?.[1]);
      revisions = input.events
        .filter(
          (e) =>
            e.type === "put" && e.key === layout.keys.failoverKey(slot) && tokenOf(e.value) === record.token,
        )
        .map((e) => e.revision);
    } else continue;
    const token = record.token;
    const underToken = revisions.flatMap((revision) => {
      const held = heldBefore(states, revision);
      return held !== undefined && held.createRevision === token ? [{ revision, lease: held.lease }] : [];
    });
    if (underToken.length === 0 || underToken.some(({ lease }) => lease === record.lease)) continue;
    const [first] = underToken;
    violations.push({
      rule: "fencing",
      node: record.node,
      revision: first?.revision,
      message: `${record.node} ${record.action}: committed at ${first?.revision} while ${key} (token ${record.token}) was bound to lease ${first?.lease}, not the node's lease ${record.lease}`,
    });
  }
  return violations;
}

/**
 * Per node, grouping and seat, the tokens of acknowledged actions never decrease. (Per seat: a
 * backup handed the primary key takes that key's token, older than its own backup key's.)
 */
function checkTokenOrder(histories: readonly HistoryRecord[]): Violation[] {
  const scopes = new Map<string, LeaderRecord[]>();
  for (const record of leaderRecords(histories)) {
    if (record.outcome !== "ok" || record.token === undefined) continue;
    const scope = `${record.node}/${record.grouping}/${record.slot}`;
    scopes.set(scope, [...(scopes.get(scope) ?? []), record]);
  }
  const violations: Violation[] = [];
  for (const records of scopes.values()) {
    records.sort((a, b) => (BigInt(a.mono) < BigInt(b.mono) ? -1 : BigInt(a.mono) > BigInt(b.mono) ? 1 : 0));
    records.forEach((record, i) => {
      const previous = records[i - 1];
      if (previous && (previous.token ?? 0) > (record.token ?? 0))
        violations.push({
          rule: "fencing",
          node: record.node,
          message: `${record.node} ${record.action} with token ${record.token} after ${previous.action} with token ${previous.token}`,
        });
    });
  }
  return violations;
}

/** No acknowledged leader action at or after the node's local deadline. */
function checkDeadlines(histories: readonly HistoryRecord[]): Violation[] {
  return leaderRecords(histories)
    .filter((r) => r.outcome === "ok" && r.deadlineMs !== undefined && r.deadlineMs <= 0)
    .map((r) => ({
      rule: "deadline" as const,
      node: r.node,
      revision: r.revision,
      message: `${r.node} ${r.action} (token ${r.token}) acknowledged ${-(r.deadlineMs ?? 0)} ms after its local deadline`,
    }));
}

/** Every identity matches a member key under the node's lease, and no member key serves two nodes. */
function checkIdentities(input: CheckInput, replay: Replay): Violation[] {
  const violations: Violation[] = [];
  const nodesByLife = new Map<Life, Set<string>>();
  for (const record of input.histories) {
    if (record.kind !== "identity") continue;
    const key = input.layout.keys.memberKey(record.group, record.id);
    const life = (replay.lives.get(key) ?? []).find((l) => l.lease === record.lease);
    if (!life) {
      violations.push({
        rule: "ids",
        node: record.node,
        message: `${record.node} took ID ${record.id} under lease ${record.lease}, but no such member key was ever written`,
      });
      continue;
    }
    nodesByLife.set(life, new Set([...(nodesByLife.get(life) ?? []), record.node]));
  }
  for (const [life, nodes] of nodesByLife)
    if (nodes.size > 1)
      violations.push({
        rule: "ids",
        revision: life.createRevision,
        message: `${life.key} (created at ${life.createRevision}) claimed by ${[...nodes].join(" and ")}`,
      });
  return violations;
}

/** Each death's slot is advertised at most once, and at least once when the member was not stopped gracefully. */
function checkDeaths(input: CheckInput, replay: Replay): Violation[] {
  const gracefulLeases = new Set(
    input.histories.flatMap((r) =>
      r.kind === "transition" && r.to === "stopping" && r.lease ? [r.lease] : [],
    ),
  );
  // A process without a history (the example server) is known to stop gracefully by the harness.
  const stopped = new Set((input.processes ?? []).flatMap((p) => (p.stopped ? [p.name] : [])));
  const stoppedGracefully = (death: Death) =>
    input.endedAt !== undefined &&
    death.name !== undefined &&
    stopped.has(death.name) &&
    (replay.revisionTimes.get(death.revision) ?? 0) >= input.endedAt;
  return replay.deaths.flatMap((death): Violation[] => {
    if (death.adPuts.length > 1)
      return [
        {
          rule: "slots",
          revision: death.revision,
          message: `slot ${death.id} advertised ${death.adPuts.length} times (revisions ${death.adPuts.join(", ")}) after one death`,
        },
      ];
    if (
      death.adPuts.length === 0 &&
      death.reclaimedAt === undefined &&
      death.claimedLeaderlessAt === undefined &&
      !gracefulLeases.has(death.lease) &&
      !stoppedGracefully(death)
    )
      return [
        {
          rule: "slots",
          revision: death.revision,
          message: `slot ${death.id} expired at revision ${death.revision} (lease ${death.lease}) and was never advertised`,
        },
      ];
    return [];
  });
}

/** Only processes the scenario killed may be gone; the ones the harness stopped exit with code 0. */
function checkExits(processes: readonly ProcessFate[]): Violation[] {
  return processes.flatMap((p): Violation[] => {
    if (p.killed || !p.exit) return [];
    if (p.stopped && p.exit.code === 0) return [];
    const how = `code ${p.exit.code}, signal ${p.exit.signal}`;
    return [
      {
        rule: "exits",
        node: p.name,
        message: p.stopped
          ? `${p.name} did not stop cleanly on SIGTERM (${how})`
          : `${p.name} exited (${how}) although the scenario did not kill it`,
      },
    ];
  });
}

/** At the end, one lease holds at most one member key, and every live node holds exactly one. */
function checkFinalMembership({ members, liveNodes }: FinalMembership): Violation[] {
  const violations: Violation[] = [];
  const byLease = new Map<string, string[]>();
  for (const m of members) byLease.set(m.lease, [...(byLease.get(m.lease) ?? []), m.key]);
  for (const [lease, keys] of byLease)
    if (keys.length > 1)
      violations.push({
        rule: "members",
        message: `at the end, lease ${lease} holds ${keys.length} member keys: ${keys.join(", ")}`,
      });
  for (const node of liveNodes) {
    const keys = members.filter((m) => m.name === node).map((m) => m.key);
    if (keys.length !== 1)
      violations.push({
        rule: "members",
        node,
        message: `at the end, live node ${node} holds ${keys.length} member keys${keys.length ? `: ${keys.join(", ")}` : ""}`,
      });
  }
  return violations;
}

/** The grouping whose commit records live under `key`, if any. */
function groupingOfRecordKey(layout: ClusterLayout, key: string): number | undefined {
  const grouping = layout.groupings.findIndex((_, k) => key.startsWith(layout.keys.commitRecordKey(k, "")));
  return grouping < 0 ? undefined : grouping;
}

/**
 * A write reported committed is in etcd (at the reported revision, under the token of the primary
 * key that existed then); one reported refused is not; unknown may be either, but must be said.
 */
function checkWrites(input: CheckInput, replay: Replay): Violation[] {
  const violations: Violation[] = [];
  const fail = (attempt: WriteAttempt, message: string, revision?: number) =>
    violations.push({
      rule: "writes",
      node: attempt.node,
      revision,
      message: `write of ${attempt.key}=${attempt.value} via ${attempt.node}: ${message}`,
    });
  for (const attempt of input.writes ?? []) {
    const commits = input.events.filter(
      (e) => e.type === "put" && e.key === attempt.key && parseJson(e.value)?.value === attempt.value,
    );
    const revisions = commits.map((e) => e.revision);
    const outcome = writeOutcomeOf(attempt.status);
    if (outcome === undefined)
      fail(
        attempt,
        `answered HTTP ${attempt.status}: neither committed (2xx), refused (409) nor unknown (503/504)`,
      );
    else if (outcome === "committed" && commits.length === 0)
      fail(attempt, `reported committed (HTTP ${attempt.status}) but etcd never held it`, attempt.revision);
    else if (
      outcome === "committed" &&
      attempt.revision !== undefined &&
      !revisions.includes(attempt.revision)
    )
      fail(
        attempt,
        `reported committed at revision ${attempt.revision}, but etcd has it at ${revisions.join(", ")}`,
      );
    else if (outcome === "refused" && commits.length > 0)
      fail(
        attempt,
        `reported refused (HTTP 409) but etcd committed it at revision ${revisions.join(", ")}`,
        revisions[0],
      );
    const grouping = groupingOfRecordKey(input.layout, attempt.key);
    for (const commit of commits) {
      const token = tokenOf(commit.value);
      const primary =
        grouping === undefined ? [] : (replay.lives.get(input.layout.keys.leaderKey(grouping, 1)) ?? []);
      const office = primary.find((life) => life.createRevision === token);
      if (!office || !covers(office, commit.revision))
        fail(
          attempt,
          `committed at ${commit.revision} under token ${token}, but the primary key then had another create revision`,
          commit.revision,
        );
    }
  }
  return violations;
}

/** Milliseconds of [from, to] covered by the impairments that concern `node` (or everyone). */
function impairedMs(
  from: number,
  to: number,
  node: string | undefined,
  impairments: readonly Impairment[],
): number {
  const spans = impairments
    .filter((i) => i.node === undefined || i.node === node)
    .map((i) => [Math.max(from, i.from), Math.min(to, i.to)] as const)
    .filter(([a, b]) => b > a)
    .sort((x, y) => x[0] - y[0]);
  let covered = 0;
  let reached = from;
  for (const [a, b] of spans) {
    const start = Math.max(a, reached);
    if (b > start) covered += b - start;
    reached = Math.max(reached, b);
  }
  return covered;
}

/**
 * A vacant primary seat with a live backup lasts at most TTL (the backup's lease may need that to
 * be seen valid) + the re-read interval (a missed delete is found by the next re-read) + grace.
 */
function measureVacancies(
  input: CheckInput,
  replay: Replay,
): { vacancies: Vacancy[]; violations: Violation[] } {
  const timing = input.vacancy;
  if (!timing) return { vacancies: [], violations: [] };
  const lastSeen = Math.max(0, ...replay.revisionTimes.values());
  const endedAt = input.endedAt ?? lastSeen;
  const boundMs = timing.ttlMs + (timing.rereadMs ?? timing.ttlMs) + (timing.graceMs ?? VACANCY_GRACE_MS);
  const vacancies: Vacancy[] = [];
  const violations: Violation[] = [];
  for (const v of replay.vacancies) {
    if (v.from >= endedAt) continue;
    const to = Math.min(v.to ?? endedAt, endedAt);
    const ms = to - v.from - impairedMs(v.from, to, v.backup, input.impairments ?? []);
    vacancies.push({
      grouping: v.grouping,
      fromRevision: v.fromRevision,
      toRevision: v.toRevision,
      ms,
      backup: v.backup,
    });
    if (ms > boundMs)
      violations.push({
        rule: "vacancy",
        revision: v.fromRevision,
        node: v.backup,
        message: `grouping ${v.grouping}: primary seat vacant with backup ${v.backup} held for ${Math.round(ms)} ms from revision ${v.fromRevision}${v.toRevision === undefined ? " (still vacant at the end)" : ` to ${v.toRevision}`}; bound ${boundMs} ms`,
      });
  }
  return { vacancies, violations };
}

/** One stretch in which a node acted as its grouping's primary, on the shared monotonic clock (ms). */
interface PrimaryTerm {
  node: string;
  grouping: number;
  from: number;
  to: number;
}

const monoMs = (record: HistoryRecord) => Number(record.mono) / 1e6;

/**
 * Per node: from entering primary until it leaves primary, its local deadline passes or it is
 * killed, whichever comes first. The deadline is the latest one the node recorded while primary
 * (a keepalive may have extended it since it entered).
 */
export function primaryTerms(
  layout: ClusterLayout,
  histories: readonly HistoryRecord[],
  killedAtMs: ReadonlyMap<string, number> = new Map(),
): PrimaryTerm[] {
  const byNode = new Map<string, HistoryRecord[]>();
  for (const r of histories) byNode.set(r.node, [...(byNode.get(r.node) ?? []), r]);
  const terms: PrimaryTerm[] = [];
  for (const [node, records] of byNode) {
    const killed = killedAtMs.get(node) ?? Number.POSITIVE_INFINITY;
    records.sort((a, b) => (BigInt(a.mono) < BigInt(b.mono) ? -1 : BigInt(a.mono) > BigInt(b.mono) ? 1 : 0));
    let open: { grouping: number; from: number; deadline: number } | undefined;
    for (const r of records) {
      const at = monoMs(r);
      if (open && r.kind === "transition" && r.role !== "primary") {
        terms.push({
          node,
          grouping: open.grouping,
          from: open.from,
          to: Math.min(at, open.deadline, killed),
        });
        open = undefined;
      } else if (open && r.deadlineMs !== undefined) {
        open.deadline = Math.max(open.deadline, at + r.deadlineMs);
      } else if (
        !open &&
        r.kind === "transition" &&
        r.role === "primary" &&
        r.id !== undefined &&
        layout.isNodeId(r.id)
      ) {
        open = { grouping: layout.groupingOfNode(r.id), from: at, deadline: at + (r.deadlineMs ?? 0) };
      }
    }
    if (open)
      terms.push({ node, grouping: open.grouping, from: open.from, to: Math.min(open.deadline, killed) });
  }
  return terms;
}

/** No two nodes act as primary of one grouping at overlapping times. */
function checkPrimaryOverlap(input: CheckInput): Violation[] {
  const killedAt = new Map(
    (input.processes ?? []).flatMap((p) =>
      p.killedAtMs === undefined ? [] : [[p.name, p.killedAtMs] as const],
    ),
  );
  const terms = primaryTerms(input.layout, input.histories, killedAt).filter((t) => t.to > t.from);
  const violations: Violation[] = [];
  for (let i = 0; i < terms.length; i++)
    for (let j = i + 1; j < terms.length; j++) {
      const [a, b] = [terms[i], terms[j]];
      if (!a || !b || a.node === b.node || a.grouping !== b.grouping) continue;
      const overlap = Math.min(a.to, b.to) - Math.max(a.from, b.from);
      if (overlap > 0)
        violations.push({
          rule: "overlap",
          node: b.node,
          message: `grouping ${a.grouping}: ${a.node} and ${b.node} both acted as primary for ${overlap.toFixed(1)} ms`,
        });
    }
  return violations;
}

/** Checks the observer's events, the nodes' histories and what the harness saw against the safety rules. */
export function checkHistory(input: CheckInput): CheckReport {
  const resignedTokens = new Set(
    leaderRecords(input.histories).flatMap((r) =>
      r.action === "resign" && r.outcome === "ok" && r.token !== undefined ? [r.token] : [],
    ),
  );
  const stoppingLeases = new Set(
    input.histories.flatMap((r) =>
      r.kind === "transition" && r.to === "stopping" && r.lease ? [r.lease] : [],
    ),
  );
  // A node that took its own ID back says so in its history: under that lease, that ID.
  const reclaims = new Set(
    input.histories.flatMap((r) =>
      r.kind === "identity" && r.joinedVia === "reclaimed" && r.previousId === r.id && r.lease
        ? [`${r.lease}/${r.id}`]
        : [],
    ),
  );
  // A node that took a fresh ID says so too; its first record under the lease dates its session.
  const sessionsOpened = new Map<string, number>();
  for (const r of input.histories)
    if (r.lease) {
      const key = `${r.node}/${r.lease}`;
      sessionsOpened.set(key, Math.min(sessionsOpened.get(key) ?? r.t, r.t));
    }
  const freshClaims = new Map(
    input.histories.flatMap((r) =>
      r.kind === "identity" && r.joinedVia === "fresh" && r.lease
        ? [[`${r.lease}/${r.id}`, sessionsOpened.get(`${r.node}/${r.lease}`) ?? r.t] as const]
        : [],
    ),
  );
  const replay = new Replay(
    input.layout,
    input.foreignRevisions ?? new Set(),
    resignedTokens,
    stoppingLeases,
    reclaims,
    freshClaims,
  );
  replay.run(input.events);
  const vacancy = measureVacancies(input, replay);
  const violations = [
    ...replay.violations,
    ...checkFencing(input, replay),
    ...checkActionLeases(input),
    ...checkLeaderKeysWon(input, replay),
    ...checkTokenOrder(input.histories),
    ...checkDeadlines(input.histories),
    ...checkIdentities(input, replay),
    ...checkDeaths(input, replay),
    ...checkExits(input.processes ?? []),
    ...(input.finalMembership ? checkFinalMembership(input.finalMembership) : []),
    ...checkWrites(input, replay),
    ...vacancy.violations,
    ...checkPrimaryOverlap(input),
  ];
  return {
    ok: violations.length === 0,
    violations,
    failovers: replay.failovers,
    vacancies: vacancy.vacancies,
    counts: {
      events: input.events.length,
      revisions: replay.revisionTimes.size,
      records: input.histories.length,
      leaderActions: leaderRecords(input.histories).length,
      nodes: new Set(input.histories.map((r) => r.node)).size,
    },
  };
}
