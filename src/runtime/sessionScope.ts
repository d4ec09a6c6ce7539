import { Subscription, type TeardownLogic } from "rxjs";
import type { NodeEvent } from "../../machines/node.js";
import type { EtcdSession } from "../etcd/index.js";
import type { Logger } from "../logging.js";

/** The timeouts of one node, all cleared when it shuts down. */
export class Timers {
  private readonly pending = new Set<NodeJS.Timeout>();

  after(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      this.pending.delete(timer);
      fn();
    }, ms);
    this.pending.add(timer);
  }

  clear(): void {
    for (const timer of this.pending) clearTimeout(timer);
    this.pending.clear();
  }
}

/**
 * What one etcd session of a node started: the session once it is open, the subscriptions and
 * the effects run under it. A result reaches the node machine only while its scope is current,
 * so a late answer meant for an earlier session is dropped instead of being taken for this one's.
 */
export class SessionScope {
  /** The session, once open; cleared when the node gives it up. */
  session: EtcdSession | undefined;
  /** The revision of this session's own last leader-key write; leader views older than it are stale. */
  lastWriteRevision = 0;
  private current = true;
  private readonly subscriptions = new Subscription();

  constructor(
    private readonly deliver: (event: NodeEvent) => void,
    private readonly timers: Timers,
    private readonly log: Logger,
  ) {}

  get isCurrent(): boolean {
    return this.current;
  }

  /** The session's lease; throws before the session is open. */
  get leaseId(): string {
    if (!this.session) throw new Error("no session");
    return this.session.leaseId;
  }

  /** True while the session's local deadline has not passed: check it right before acting as leader. */
  isValid(): boolean {
    return this.session?.isValid() ?? false;
  }

  send(event: NodeEvent): void {
    if (this.current) this.deliver(event);
  }

  sendAfter(ms: number, event: NodeEvent): void {
    this.timers.after(ms, () => this.send(event));
  }

  /** Runs one etcd effect; its result, or `onError`'s event for a failure (logged), is sent back. */
  run(
    name: string,
    work: (scope: SessionScope) => Promise<NodeEvent>,
    onError: (error: string) => NodeEvent,
  ): void {
    work(this).then(
      (event) => this.send(event),
      (err: unknown) => {
        const error = err instanceof Error ? err.message : String(err);
        this.log.warn("etcd operation failed", { effect: name, error });
        this.send(onError(error));
      },
    );
  }

  own(teardown: TeardownLogic): void {
    this.subscriptions.add(teardown);
  }

  noteWrite(revision: number): void {
    this.lastWriteRevision = Math.max(this.lastWriteRevision, revision);
  }

  /** Ends the scope: results still to come are dropped and its subscriptions end. */
  end(): void {
    this.current = false;
    this.subscriptions.unsubscribe();
  }
}
