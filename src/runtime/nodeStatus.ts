import { BehaviorSubject, distinctUntilChanged, map, type Observable } from "rxjs";
import type { InspectionEvent } from "xstate";
import type { ClusterLayout } from "../config/index.js";
import type { FencingToken } from "../etcd/index.js";
import type { Logger } from "../logging.js";
import type { HistoryRecorder } from "./history.js";
import { type NodeRole, type NodeSnapshot, roleFactsOf, roleOf } from "./roles.js";

/**
 * How a node got the ID it holds: `reclaimed` its previous one, claimed another node's
 * `advertised` failed slot, or took a `fresh` one. With `previousId` set and different from `id`,
 * the node came back with a different ID (its previous one was taken or outside the layout).
 */
export type JoinedVia = "fresh" | "advertised" | "reclaimed";

export interface NodeStatus {
  name: string;
  role: NodeRole;
  state: string;
  id?: number;
  group?: number;
  grouping?: number;
  leaseId?: string;
  fence?: FencingToken;
  /** The ID this node held before its current one (in an earlier session, or read from its state directory). */
  previousId?: number;
  /** How it got its current ID; set while it has one. */
  joinedVia?: JoinedVia;
}

function joinedViaOf(snapshot: NodeSnapshot, previousId: number | undefined): JoinedVia | undefined {
  const { id, joinedVia } = snapshot.context;
  if (id === undefined || joinedVia === undefined) return undefined;
  if (joinedVia === "fresh") return "fresh";
  return id === previousId ? "reclaimed" : "advertised";
}

/**
 * A node's status as a function of its machine's snapshot and the ID it held before: role and
 * fencing token both come from `roleFactsOf`, so the token is there exactly while the role is
 * primary, backup or a backup promoting (candidate).
 */
export function statusOf(
  name: string,
  layout: ClusterLayout,
  snapshot: NodeSnapshot,
  previousId?: number,
): NodeStatus {
  const facts = roleFactsOf(snapshot);
  const { id, leaseId } = snapshot.context;
  const group = id === undefined ? undefined : layout.nodeGroup(id);
  const grouping = group === undefined ? undefined : layout.groupingOf(group);
  const office = facts.leader?.office;
  return {
    name,
    role: roleOf(facts),
    state: facts.path,
    id,
    group,
    grouping,
    leaseId,
    fence: office && grouping !== undefined ? { grouping, ...office } : undefined,
    previousId: id === undefined ? undefined : previousId,
    joinedVia: joinedViaOf(snapshot, previousId),
  };
}

/** Which ID a node held before its current identity (an ID under a session's lease). */
class PreviousIds {
  private current: { id: number; leaseId?: string; previousId?: number } | undefined;

  constructor(private lastHeld: number | undefined) {}

  of(snapshot: NodeSnapshot): number | undefined {
    const { id, leaseId } = snapshot.context;
    if (id === undefined) return undefined;
    if (this.current?.id !== id || this.current.leaseId !== leaseId) {
      this.current = { id, leaseId, previousId: this.lastHeld };
      this.lastHeld = id;
    }
    return this.current.previousId;
  }
}

/**
 * Follows a node's machine: after every step of it, it recomputes the status and reports each
 * change of state or role, with the event that caused it, in the log and the history (an identity
 * record first when the node becomes a member). A step of the node includes its children's: every
 * event reaches them through the node, and the node's step ends after they have taken it.
 */
export class StatusProjection {
  private readonly subject: BehaviorSubject<NodeStatus>;
  private readonly previousIds: PreviousIds;
  private reported = false;

  /** `storedId`: the ID this node held before it started, read from its state directory. */
  constructor(
    private readonly name: string,
    private readonly layout: ClusterLayout,
    private readonly log: Logger,
    private readonly history: HistoryRecorder,
    private readonly snapshot: () => NodeSnapshot,
    storedId?: number,
  ) {
    this.previousIds = new PreviousIds(storedId);
    this.subject = new BehaviorSubject<NodeStatus>({ name, role: "connecting", state: "connecting" });
  }

  get status(): NodeStatus {
    return this.subject.value;
  }

  get status$(): Observable<NodeStatus> {
    return this.subject.asObservable();
  }

  get role$(): Observable<NodeRole> {
    return this.subject.pipe(
      map((s) => s.role),
      distinctUntilChanged(),
    );
  }

  get state$(): Observable<string> {
    return this.subject.pipe(
      map((s) => s.state),
      distinctUntilChanged(),
    );
  }

  /** For the actor's `inspect` option. A stopped actor (a crash) is reported by `stopped()`. */
  readonly inspect = (event: InspectionEvent): void => {
    if (event.type !== "@xstate.snapshot" || event.actorRef.sessionId !== event.rootId) return;
    const snapshot = this.snapshot();
    if (snapshot.status !== "stopped") this.update(this.statusOf(snapshot), event.event.type);
  };

  /** The node has shut down: no role, no fence, whatever its machine's last state. */
  stopped(): void {
    const last = this.statusOf(this.snapshot());
    this.emit({ ...last, role: "stopped", state: "stopped", fence: undefined });
  }

  private statusOf(snapshot: NodeSnapshot): NodeStatus {
    return statusOf(this.name, this.layout, snapshot, this.previousIds.of(snapshot));
  }

  private update(next: NodeStatus, event: string): void {
    const prev = this.subject.value;
    if (!this.reported || next.state !== prev.state || next.role !== prev.role) {
      const from = this.reported ? prev.state : "";
      const joining = next.id !== undefined && next.state.startsWith("member") && !from.startsWith("member");
      if (joining && next.id !== undefined)
        this.history.record({
          kind: "identity",
          id: next.id,
          group: this.layout.nodeGroup(next.id),
          joinedVia: next.joinedVia,
          previousId: next.previousId,
        });
      this.history.record({ kind: "transition", from, to: next.state, role: next.role, id: next.id, event });
      this.log.info("transition", {
        id: next.id,
        role: next.role,
        from: from || undefined,
        to: next.state,
        event,
        // How the node got its ID, said once per identity: a node back with a different ID says so here.
        ...(joining ? { joinedVia: next.joinedVia, previousId: next.previousId } : {}),
      });
      this.reported = true;
    }
    this.emit(next);
  }

  private emit(status: NodeStatus): void {
    if (JSON.stringify(this.subject.value) !== JSON.stringify(status)) this.subject.next(status);
  }
}
