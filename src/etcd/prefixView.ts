import { ClientClosedError, type Etcd3, type IEvent, type IKeyValue, type IRangeResponse } from "etcd3";
import { Observable, type Subscriber } from "rxjs";
import type { Logger } from "../logging.js";
import { prefixListsOf } from "./prefixLists.js";
import { type BackoffPolicy, backoffDelay } from "./watchBackoff.js";
import { type WatchHandle, type WatchListener, watchStreamOf } from "./watchStream.js";

export interface KeyEntry {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
  /** Puts since the key was created (etcd's `version`); `id_key`'s is the node-ID high-water mark. */
  version: number;
  lease: string;
}

/** The keys under one prefix as of one etcd revision. */
export interface PrefixSnapshot {
  prefix: string;
  /** The revision of the last list or watch event the view delivered; the view's watch resumes after it. */
  revision: number;
  entries: ReadonlyMap<string, KeyEntry>;
  /** "list": a full read replaced the view (also emitted when nothing changed); "watch": events applied. */
  source: "list" | "watch";
}

export interface WatchPrefixOptions {
  /**
   * Anti-entropy: re-list with a linearizable read at least this often (jittered, between half and all
   * of it), besides the re-lists after every stream reconnect and every watch etcd cancels. None if unset.
   */
  resyncIntervalMs?: number;
  /** Deadline of each list call. */
  callTimeoutMs?: number;
}

const DEFAULT_CALL_TIMEOUT_MS = 5_000;
const LIST_RETRY: BackoffPolicy = { initialMs: 100, maxMs: 5_000 };
const MAX_TIMER_MS = 2 ** 31 - 1;

function toEntry(kv: IKeyValue): KeyEntry {
  return {
    key: kv.key.toString(),
    value: kv.value.toString(),
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
    version: Number(kv.version),
    lease: String(kv.lease),
  };
}

/** A snapshot from a range response, as a watch would have built it. */
export function snapshotOf(prefix: string, listed: IRangeResponse): PrefixSnapshot {
  return {
    prefix,
    revision: Number(listed.header.revision),
    entries: new Map(listed.kvs.map((kv) => [kv.key.toString(), toEntry(kv)])),
    source: "list",
  };
}

function optionalMs(name: string, value: number | undefined): number | undefined {
  if (value !== undefined && (!Number.isFinite(value) || value <= 0 || value > MAX_TIMER_MS)) {
    throw new RangeError(
      `watchPrefix option ${name} must be a number of milliseconds in (0, ${MAX_TIMER_MS}], got ${value}`,
    );
  }
  return value;
}

/**
 * A live view of every key under `prefix`: lists it, then watches from the listed revision + 1 on the
 * client's shared watch stream, and emits a snapshot after each list and each response that changed it.
 * Events at or below the view's revision are dropped; a list replaces the view only when it is not
 * older than what the view delivered. It re-lists after a stream reconnect, after etcd cancels the
 * watch (compaction), and every `resyncIntervalMs`, so a change the watch missed is repaired. Values
 * are delivered as they are; decoding them is the caller's job. Ends with etcd3's ClientClosedError
 * once the client is closed.
 */
export function watchPrefix(
  client: Etcd3,
  prefix: string,
  log: Logger,
  options: WatchPrefixOptions = {},
): Observable<PrefixSnapshot> {
  const resyncIntervalMs = optionalMs("resyncIntervalMs", options.resyncIntervalMs);
  const callTimeoutMs = optionalMs("callTimeoutMs", options.callTimeoutMs) ?? DEFAULT_CALL_TIMEOUT_MS;
  return new Observable<PrefixSnapshot>((subscriber) => {
    const view = new PrefixView(client, prefix, log, { resyncIntervalMs, callTimeoutMs }, subscriber);
    view.start();
    return () => view.stop();
  });
}

class PrefixView {
  private entries = new Map<string, KeyEntry>();
  private revision = 0;
  private watch: WatchHandle | undefined;
  private listFailures = 0;
  private listTimer: NodeJS.Timeout | undefined;
  private stopResync: (() => void) | undefined;
  private listsInFlight = 0;
  private stopped = false;

  constructor(
    private readonly client: Etcd3,
    private readonly prefix: string,
    private readonly log: Logger,
    private readonly timing: { resyncIntervalMs: number | undefined; callTimeoutMs: number },
    private readonly subscriber: Subscriber<PrefixSnapshot>,
  ) {}

  start(): void {
    this.requestList("start");
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.listTimer);
    this.listTimer = undefined;
    this.stopResync?.();
    this.stopResync = undefined;
    this.watch?.cancel();
    this.watch = undefined;
  }

  private fail(error: Error): void {
    this.stop();
    this.subscriber.error(error);
  }

  private emit(source: PrefixSnapshot["source"]): void {
    this.subscriber.next({
      prefix: this.prefix,
      revision: this.revision,
      entries: new Map(this.entries),
      source,
    });
  }

  /**
   * Lists now, even if another list is in flight: that one may have read etcd before whatever made
   * this one necessary. Results that arrive out of order are sorted out by `applyList`.
   */
  private requestList(reason: string): void {
    clearTimeout(this.listTimer);
    this.listTimer = undefined;
    void this.list(reason);
  }

  private async list(reason: string): Promise<void> {
    let listed: IRangeResponse | undefined;
    let failure: unknown;
    this.listsInFlight += 1;
    try {
      listed = await prefixListsOf(this.client).list(this.prefix, this.timing.callTimeoutMs);
    } catch (err) {
      failure = err;
    } finally {
      this.listsInFlight -= 1;
    }
    if (this.stopped) return;
    if (listed !== undefined) this.onListed(listed);
    else this.onListFailed(reason, failure);
  }

  private onListed(listed: IRangeResponse): void {
    this.listFailures = 0;
    this.applyList(listed);
    // A subscriber that takes only the first view unsubscribes inside applyList: open nothing after it.
    if (this.stopped) return;
    this.watch ??= watchStreamOf(this.client, this.log).watchPrefix(
      this.prefix,
      this.revision + 1,
      this.listener(),
    );
    this.scheduleResync();
  }

  private onListFailed(reason: string, failure: unknown): void {
    if (failure instanceof ClientClosedError) {
      this.fail(failure);
      return;
    }
    const delayMs = backoffDelay(this.listFailures, LIST_RETRY);
    this.listFailures += 1;
    this.log.warn("listing a prefix failed, retrying", {
      prefix: this.prefix,
      reason,
      error: String(failure),
      retryInMs: Math.round(delayMs),
    });
    clearTimeout(this.listTimer);
    this.listTimer = setTimeout(() => this.requestList(reason), delayMs);
  }

  /**
   * A list at revision R is etcd's whole state at R. It replaces the view unless R is below the
   * revision the view already delivered: then it would undo changes (a delete it would resurrect).
   * At R equal to the view's revision it is the same state, and it repairs an event the watch missed.
   */
  private applyList(listed: IRangeResponse): void {
    const snapshot = snapshotOf(this.prefix, listed);
    if (snapshot.revision < this.revision) {
      this.log.debug("dropping a list older than the view", {
        prefix: this.prefix,
        listed: snapshot.revision,
        view: this.revision,
      });
      return;
    }
    this.entries = new Map(snapshot.entries);
    this.revision = snapshot.revision;
    this.emit("list");
  }

  /**
   * On the client's shared clock, so that the views of one client re-list in one transaction. A
   * tick while a list is in flight or a failed one waits for its retry is skipped: a slow etcd
   * does not get more lists, and a failing one only the retries' backoff.
   */
  private scheduleResync(): void {
    const intervalMs = this.timing.resyncIntervalMs;
    if (intervalMs === undefined || this.stopResync !== undefined) return;
    this.stopResync = prefixListsOf(this.client).resyncEvery(intervalMs, () => {
      if (this.listsInFlight === 0 && this.listTimer === undefined) this.requestList("resync");
    });
  }

  private listener(): WatchListener {
    return {
      attached: (resumed) => {
        if (resumed) this.requestList("watch stream reconnected");
      },
      events: (events) => this.applyEvents(events),
      canceled: ({ compactRevision, reason }) => {
        this.watch = undefined;
        this.log.warn("watch cancelled by etcd, re-listing", {
          prefix: this.prefix,
          compactRevision,
          reason,
        });
        this.requestList("watch cancelled");
      },
      closed: (error) => this.fail(error),
    };
  }

  private applyEvents(events: readonly IEvent[]): void {
    // One transaction's events share a revision and arrive in one response, so duplicates are judged
    // against the revision before this response.
    const seen = this.revision;
    let changed = false;
    for (const event of events) {
      const entry = toEntry(event.kv);
      if (entry.modRevision <= seen) continue;
      if (event.type === "Put") this.entries.set(entry.key, entry);
      else this.entries.delete(entry.key);
      this.revision = Math.max(this.revision, entry.modRevision);
      changed = true;
    }
    if (changed) this.emit("watch");
  }
}
