import { BehaviorSubject, type Observable, Subscription } from "rxjs";
import type { FencingToken } from "../etcd/index.js";
import type { Logger } from "../logging.js";
import type { NodeStatus } from "./nodeStatus.js";

/** Why a term of leadership ended. */
export type LeadershipEndReason =
  /** The primary key is no longer this node's (promotion of another node, a fenced write refused, a watch). */
  | "deposed"
  /** The node left `member` (suspended on its local deadline, or lost its session). */
  | "suspended"
  /** No keepalive acknowledgement for so long that the local deadline is near: stop before it passes. */
  | "deadline"
  | "resigned"
  | "stopping";

/** One term as the grouping's primary, from taking the primary seat until it must stop acting. */
export interface LeadershipTerm {
  /**
   * Aborts the moment this node must stop acting as primary: its seat lost, the node suspended,
   * resigning or stopping, or its lease's local deadline near. It aborts before the local deadline
   * passes, and so before etcd can expire the lease and give the seat to another node.
   * `signal.reason` is a `LeadershipLostError`.
   */
  readonly signal: AbortSignal;
  readonly seat: 1;
  /** The fence of this term; every `fencedTxn` of the term is checked against it. */
  readonly fence: FencingToken;
}

/** Callbacks in the style of client-go's `OnStartedLeading`/`OnStoppedLeading` and Curator's `LeaderLatchListener`. */
export interface LeadershipHandlers {
  /** Called when a term starts; stop the work it starts when `term.signal` aborts. A rejection is logged. */
  started(term: LeadershipTerm): void | Promise<void>;
  /** Called once the term's signal has aborted. */
  stopped?(end: { fence: FencingToken; reason: LeadershipEndReason }): void;
}

export class LeadershipLostError extends Error {
  override readonly name = "LeadershipLostError";
  constructor(
    readonly fence: FencingToken,
    readonly reason: LeadershipEndReason,
  ) {
    super(`leadership of grouping ${fence.grouping} (token ${fence.token}) ended: ${reason}`);
  }
}

export interface LeadershipSources {
  status$: Observable<NodeStatus>;
  /** Milliseconds left before the current session's local deadline; undefined without a session. */
  remainingMs(): number | undefined;
  /** Fires whenever the local deadline moved (an acknowledged keepalive). */
  deadlineMoved$: Observable<unknown>;
  /** How long before the local deadline a term ends when no keepalive has been acknowledged. */
  leadMs: number;
  log: Logger;
}

interface ActiveTerm {
  term: LeadershipTerm;
  controller: AbortController;
}

/**
 * The primary's terms. A term starts when the node becomes primary with time left on its lease
 * and ends (its signal aborts) when the status leaves that office, when the deadline timer finds
 * less than `leadMs` left, or when the node resigns or stops. A term that ended on the deadline
 * while the node still holds the same seat starts again once a keepalive is acknowledged; a
 * resigned seat's token never starts a term again.
 */
export class LeadershipTerms {
  private readonly subject = new BehaviorSubject<LeadershipTerm | undefined>(undefined);
  private readonly subscriptions: Subscription[] = [];
  private active: ActiveTerm | undefined;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private readonly retiredTokens = new Set<number>();
  private closed = false;
  private status: NodeStatus | undefined;

  constructor(private readonly sources: LeadershipSources) {
    this.subscriptions.push(
      sources.status$.subscribe((status) => {
        this.status = status;
        this.follow();
      }),
      sources.deadlineMoved$.subscribe(() => this.follow()),
    );
  }

  /** The current term, undefined while the node is not acting as primary. */
  get term$(): Observable<LeadershipTerm | undefined> {
    return this.subject.asObservable();
  }

  get term(): LeadershipTerm | undefined {
    return this.subject.value;
  }

  /** Calls `handlers` for every term, the current one first; returns the unsubscribe. */
  observe(handlers: LeadershipHandlers): () => void {
    const log = this.sources.log;
    const listeners = new Subscription();
    const subscription = this.subject.subscribe((term) => {
      if (!term) return;
      const onAbort = () => {
        const reason = (term.signal.reason as LeadershipLostError).reason;
        try {
          handlers.stopped?.({ fence: term.fence, reason });
        } catch (err) {
          log.error("leadership stopped handler failed", { error: String(err) });
        }
      };
      term.signal.addEventListener("abort", onAbort, { once: true });
      listeners.add(() => term.signal.removeEventListener("abort", onAbort));
      Promise.resolve()
        .then(() => handlers.started(term))
        .catch((err) => log.error("leadership started handler failed", { error: String(err) }));
    });
    return () => {
      subscription.unsubscribe();
      listeners.unsubscribe();
    };
  }

  /** Ends the current term; with `retire`, its seat's token never starts another (resign, stop). */
  end(reason: LeadershipEndReason, retire = false): void {
    const active = this.active;
    if (retire && this.status?.fence) this.retiredTokens.add(this.status.fence.token);
    if (!active) return;
    if (retire) this.retiredTokens.add(active.term.fence.token);
    this.active = undefined;
    clearTimeout(this.deadlineTimer);
    this.subject.next(undefined);
    active.controller.abort(new LeadershipLostError(active.term.fence, reason));
  }

  /** Ends the current term and starts no other: the node is stopping. */
  close(reason: LeadershipEndReason = "stopping"): void {
    this.closed = true;
    this.end(reason, true);
    for (const subscription of this.subscriptions) subscription.unsubscribe();
    this.subject.complete();
  }

  private follow(): void {
    const status = this.status;
    const fence = status?.role === "primary" && status.fence?.seat === 1 ? status.fence : undefined;
    const active = this.active;
    if (active && (!fence || fence.token !== active.term.fence.token)) {
      this.end(status?.role === "suspended" || status?.role === "connecting" ? "suspended" : "deposed");
    }
    if (!fence || this.closed || this.retiredTokens.has(fence.token)) return;
    const remaining = this.sources.remainingMs();
    if (remaining === undefined || remaining <= this.sources.leadMs) {
      if (this.active) this.end("deadline");
      return;
    }
    if (!this.active) this.begin({ ...fence, seat: 1 });
    this.armDeadline(remaining);
  }

  private begin(fence: FencingToken & { seat: 1 }): void {
    const controller = new AbortController();
    this.active = { controller, term: { signal: controller.signal, seat: 1, fence } };
    this.subject.next(this.active.term);
  }

  private armDeadline(remainingMs: number): void {
    clearTimeout(this.deadlineTimer);
    this.deadlineTimer = setTimeout(() => this.follow(), remainingMs - this.sources.leadMs);
  }
}
