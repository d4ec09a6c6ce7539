import {
  ClientClosedError,
  type Etcd3,
  type IDuplexStream,
  type IEvent,
  type IWatchRequest,
  type IWatchResponse,
  Range,
} from "etcd3";
import { type Observable, Subject } from "rxjs";
import type { Logger } from "../logging.js";
import { deadlineIn } from "./outcome.js";
import { type BackoffPolicy, backoffDelay } from "./watchBackoff.js";

/**
 * Stream liveness. A blackholed link leaves the gRPC stream open and silent, so the stream is probed:
 * after `probeIntervalMs` without any response a `progress_request` is sent, which etcd 3.4 answers at
 * once (watch_id -1); no response of any kind within `probeTimeoutMs` means the stream is dead and it
 * is replaced. A probe is used rather than gRPC keepalive because it proves that etcd's watch stream
 * itself answers, not only the HTTP/2 connection, and because keepalive is a channel option of the
 * client shared with every other call (set where the client is made, bounded below by etcd's
 * --grpc-keepalive-min-time of 5 s), which this layer does not own.
 */
export interface WatchStreamOptions {
  probeIntervalMs?: number;
  probeTimeoutMs?: number;
  /** Delay between attempts to open a new stream after one broke. */
  reconnect?: BackoffPolicy;
}

/** A quiet client sends one progress request per 5 s; a dead stream is replaced 5–10 s after it died. */
const DEFAULTS: Required<WatchStreamOptions> = {
  probeIntervalMs: 5_000,
  probeTimeoutMs: 5_000,
  reconnect: { initialMs: 100, maxMs: 5_000 },
};

/** Longest delay setTimeout honours; longer ones fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** etcd's refusal of a watch created on a stream whose auth token has expired. */
const EXPIRED_TOKEN = /invalid auth token/;

/** Receives one watch's news. Calls never overlap and stop once the watch is cancelled or gone. */
export interface WatchListener {
  /** etcd accepted the watch; `resumed` is true when it was re-created on a new stream after a break. */
  attached(resumed: boolean): void;
  /** The events of one response, in revision order; all events of one revision arrive in one call. */
  events(events: readonly IEvent[]): void;
  /** etcd dropped the watch (`compactRevision` > 0: its start revision was compacted). It is gone. */
  canceled(cause: { compactRevision: number; reason: string }): void;
  /** The client was closed; the watch is gone. */
  closed(error: Error): void;
}

export interface WatchHandle {
  /** The watch_id this client assigned; unique per client. */
  readonly id: number;
  /** Stops the watch. A no-op when it is already gone. */
  cancel(): void;
}

/** What the shared stream does, for logs, metrics and tests that must act at a precise moment. */
export type WatchStreamActivity =
  | { kind: "opened" }
  | { kind: "created"; watchId: number; fromRevision: number }
  | { kind: "events"; watchId: number; count: number; lastRevision: number }
  | { kind: "canceled"; watchId: number; compactRevision: number; reason: string }
  | { kind: "broken"; reason: string };

interface Registration {
  readonly id: number;
  readonly key: Buffer;
  readonly rangeEnd: Buffer;
  /** Where a re-created watch starts: one past the last revision delivered to the listener. */
  nextRevision: number;
  readonly listener: WatchListener;
  attachedBefore: boolean;
}

type Stream = IDuplexStream<IWatchRequest, IWatchResponse>;

const streams = new WeakMap<Etcd3, WatchStream>();

/**
 * The one watch stream of `client`, created on first use. `options`, when given, replace the timing
 * of the stream's next probes and reconnects.
 */
export function watchStreamOf(client: Etcd3, log: Logger, options?: WatchStreamOptions): WatchStream {
  let stream = streams.get(client);
  if (stream === undefined) {
    stream = new WatchStream(client, log);
    streams.set(client, stream);
  }
  if (options !== undefined) stream.configure(options);
  return stream;
}

function positiveMs(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0 || value > MAX_TIMER_MS) {
    throw new RangeError(
      `watch stream option ${name} must be a number of milliseconds in (0, ${MAX_TIMER_MS}], got ${value}`,
    );
  }
  return value;
}

/**
 * Every watch of one etcd3 client on one bidirectional gRPC stream, driven directly instead of through
 * etcd3's WatchManager: each watch gets a client-assigned watch_id and responses are routed by it;
 * a response for an unknown id is ignored; nothing thrown while handling a response escapes the
 * stream's handlers. When the stream breaks, a new one is opened with jittered exponential backoff
 * and every watch is re-created from one past the last revision it delivered.
 */
export class WatchStream {
  private readonly watches = new Map<number, Registration>();
  private readonly activitySubject = new Subject<WatchStreamActivity>();
  /** Every step of the stream, emitted before the listeners concerned are called. */
  readonly activity$: Observable<WatchStreamActivity> = this.activitySubject.asObservable();
  private options: Required<WatchStreamOptions> = DEFAULTS;
  private lastId = 0;
  private stream: Stream | undefined;
  private opening = false;
  private reconnectAttempt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private probeTimer: NodeJS.Timeout | undefined;
  private silenceTimer: NodeJS.Timeout | undefined;
  private lastHeardAt = 0;
  /** Ids of the creates sent on the current stream and not answered yet, oldest first. */
  private readonly pendingCreates: number[] = [];

  constructor(
    private readonly client: Etcd3,
    private readonly log: Logger,
  ) {}

  configure(options: WatchStreamOptions): void {
    const merged = { ...this.options, ...options };
    positiveMs("probeIntervalMs", merged.probeIntervalMs);
    positiveMs("probeTimeoutMs", merged.probeTimeoutMs);
    positiveMs("reconnect.initialMs", merged.reconnect.initialMs);
    positiveMs("reconnect.maxMs", merged.reconnect.maxMs);
    this.options = merged;
  }

  /** Number of live watches. */
  get size(): number {
    return this.watches.size;
  }

  /** Watches every key starting with `prefix`, from `fromRevision` (inclusive). */
  watchPrefix(prefix: string, fromRevision: number, listener: WatchListener): WatchHandle {
    const range = Range.prefix(prefix);
    return this.watchRange(range.start, range.end, fromRevision, listener);
  }

  /** Watches keys in [key, rangeEnd), from `fromRevision` (inclusive). */
  watchRange(key: Buffer, rangeEnd: Buffer, fromRevision: number, listener: WatchListener): WatchHandle {
    this.lastId += 1;
    const registration: Registration = {
      id: this.lastId,
      key,
      rangeEnd,
      nextRevision: fromRevision,
      listener,
      attachedBefore: false,
    };
    this.watches.set(registration.id, registration);
    if (this.stream !== undefined) this.sendCreate(registration);
    else this.open();
    return { id: registration.id, cancel: () => this.cancel(registration) };
  }

  private cancel(registration: Registration): void {
    if (this.watches.get(registration.id) !== registration) return;
    this.watches.delete(registration.id);
    if (this.watches.size === 0) {
      // Ending the stream drops the watch in etcd as well.
      this.teardown();
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = undefined;
      this.reconnectAttempt = 0;
      return;
    }
    // Every watch is created on the stream as soon as the stream is there.
    if (this.stream !== undefined) {
      this.stream.write({ cancel_request: { watch_id: registration.id } });
    }
  }

  private open(): void {
    if (this.stream !== undefined || this.opening || this.reconnectTimer !== undefined) return;
    if (this.watches.size === 0) return;
    this.opening = true;
    this.client.watchClient
      .watch()
      .then(
        (stream) => this.onOpened(stream),
        (err: unknown) => this.onOpenFailed(err),
      )
      .catch((err: unknown) => this.log.error("opening the watch stream failed", { error: String(err) }));
  }

  private onOpened(stream: Stream): void {
    this.opening = false;
    // The error listener stays for the stream's whole life: an 'error' without one would throw.
    stream.on("data", (res) => this.guarded(stream, () => this.onResponse(res)));
    stream.on("error", (err) => this.guarded(stream, () => this.onBroken(`stream error: ${String(err)}`)));
    stream.on("end", () => this.guarded(stream, () => this.onBroken("stream ended")));
    if (this.watches.size === 0) {
      endQuietly(stream);
      return;
    }
    this.stream = stream;
    this.lastHeardAt = performance.now();
    this.activitySubject.next({ kind: "opened" });
    for (const registration of this.watches.values()) this.sendCreate(registration);
    this.armProbe();
  }

  private onOpenFailed(err: unknown): void {
    this.opening = false;
    if (err instanceof ClientClosedError) {
      this.closeAll(err);
      return;
    }
    this.log.warn("cannot open the etcd watch stream, retrying", { error: String(err) });
    this.scheduleReconnect();
  }

  /** Runs a handler of `stream` unless that stream was dropped; never lets it throw. */
  private guarded(stream: Stream, handle: () => void): void {
    if (stream !== this.stream) return;
    try {
      handle();
    } catch (err) {
      this.log.error("watch stream handler failed, reopening the stream", { error: String(err) });
      this.onBroken(`handler failed: ${String(err)}`);
    }
  }

  private sendCreate(registration: Registration): void {
    if (this.stream === undefined) return;
    this.pendingCreates.push(registration.id);
    this.stream.write({
      create_request: {
        key: registration.key,
        range_end: registration.rangeEnd,
        start_revision: registration.nextRevision,
        watch_id: registration.id,
      },
    });
  }

  private onResponse(res: IWatchResponse): void {
    this.heard();
    const id = Number(res.watch_id);
    if (id === -1) {
      // Either a reply to a progress request, or a create etcd refused without naming it (a bad range,
      // a duplicate id, no permission). etcd answers creates in the order they were sent, so a refusal
      // belongs to the oldest create still waiting for its reply.
      if (res.created && res.canceled) this.onCreateRefused(res.cancel_reason);
      return;
    }
    if (res.created) this.forgetPendingCreate(id);
    const registration = this.watches.get(id);
    if (registration === undefined) {
      this.log.debug("watch response for an unknown watch id ignored", {
        watchId: res.watch_id,
        created: res.created,
        canceled: res.canceled,
        events: res.events.length,
      });
      return;
    }
    if (res.created) this.onCreated(registration, res);
    if (res.events.length > 0) this.deliver(registration, res.events);
    if (res.canceled) this.onCanceled(registration, Number(res.compact_revision), res.cancel_reason);
  }

  private forgetPendingCreate(id: number): void {
    const index = this.pendingCreates.indexOf(id);
    if (index >= 0) this.pendingCreates.splice(index, 1);
  }

  private onCreated(registration: Registration, res: IWatchResponse): void {
    if (res.canceled) return;
    const resumed = registration.attachedBefore;
    registration.attachedBefore = true;
    this.activitySubject.next({
      kind: "created",
      watchId: registration.id,
      fromRevision: registration.nextRevision,
    });
    registration.listener.attached(resumed);
  }

  private deliver(registration: Registration, events: IEvent[]): void {
    const lastRevision = Number(events[events.length - 1]?.kv.mod_revision);
    registration.nextRevision = lastRevision + 1;
    this.activitySubject.next({
      kind: "events",
      watchId: registration.id,
      count: events.length,
      lastRevision,
    });
    registration.listener.events(events);
  }

  private onCanceled(registration: Registration, compactRevision: number, reason: string): void {
    this.watches.delete(registration.id);
    this.activitySubject.next({ kind: "canceled", watchId: registration.id, compactRevision, reason });
    registration.listener.canceled({ compactRevision, reason });
    if (this.watches.size === 0) this.teardown();
  }

  private onCreateRefused(reason: string): void {
    const id = this.pendingCreates.shift();
    const registration = id === undefined ? undefined : this.watches.get(id);
    if (registration === undefined) {
      this.log.warn("etcd refused a watch that is no longer wanted", { watchId: id, reason });
      return;
    }
    if (EXPIRED_TOKEN.test(reason)) {
      this.reopenWithNewToken(registration);
      return;
    }
    this.log.warn("etcd refused a watch", { watchId: registration.id, reason });
    this.onCanceled(registration, 0, reason);
  }

  /**
   * etcd checks a stream's auth token on every watch created on it, so once the token expires every
   * new watch on the open stream is refused. A read makes etcd3 log in again; the stream opened after
   * it carries the fresh token, and every watch is created anew on it.
   */
  private reopenWithNewToken(registration: Registration): void {
    this.log.warn("etcd refused a watch: the stream's auth token expired; reopening the stream", {
      watchId: registration.id,
    });
    this.activitySubject.next({ kind: "broken", reason: "auth token expired" });
    this.teardown();
    this.opening = true;
    void this.client
      .get(registration.key)
      .options(deadlineIn(this.options.probeTimeoutMs))
      .exec()
      .catch(() => undefined)
      .finally(() => {
        this.opening = false;
        this.scheduleReconnect();
      });
  }

  private heard(): void {
    this.lastHeardAt = performance.now();
    this.reconnectAttempt = 0;
    if (this.silenceTimer !== undefined) {
      clearTimeout(this.silenceTimer);
      this.silenceTimer = undefined;
      this.armProbe();
    }
  }

  private armProbe(delayMs = this.options.probeIntervalMs): void {
    clearTimeout(this.probeTimer);
    this.probeTimer = setTimeout(() => this.probe(), delayMs);
  }

  /** Runs from a timer that dropping the stream clears. */
  private probe(): void {
    const stream = this.stream;
    if (stream === undefined) return;
    const quietMs = performance.now() - this.lastHeardAt;
    if (quietMs < this.options.probeIntervalMs) {
      this.armProbe(this.options.probeIntervalMs - quietMs);
      return;
    }
    stream.write({ progress_request: {} });
    const timeoutMs = this.options.probeTimeoutMs;
    this.silenceTimer = setTimeout(() => {
      this.silenceTimer = undefined;
      this.guarded(stream, () => {
        this.log.warn("watch stream silent, reopening it", { silentForMs: Math.round(quietMs + timeoutMs) });
        this.onBroken("no reply to a progress request");
      });
    }, timeoutMs);
  }

  private onBroken(reason: string): void {
    this.log.warn("watch stream broke, reopening it", { reason, watches: this.watches.size });
    this.activitySubject.next({ kind: "broken", reason });
    this.teardown();
    this.scheduleReconnect();
  }

  /** Drops the current stream, if any; its handlers are ignored from now on. */
  private teardown(): void {
    clearTimeout(this.probeTimer);
    clearTimeout(this.silenceTimer);
    this.probeTimer = undefined;
    this.silenceTimer = undefined;
    this.pendingCreates.length = 0;
    const stream = this.stream;
    this.stream = undefined;
    if (stream !== undefined) endQuietly(stream);
  }

  private scheduleReconnect(): void {
    if (this.watches.size === 0 || this.reconnectTimer !== undefined) return;
    const delay = backoffDelay(this.reconnectAttempt, this.options.reconnect);
    this.reconnectAttempt += 1;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.open();
    }, delay);
  }

  private closeAll(error: Error): void {
    this.log.info("etcd client closed, ending its watches", { watches: this.watches.size });
    const registrations = [...this.watches.values()];
    this.watches.clear();
    this.teardown();
    for (const registration of registrations) registration.listener.closed(error);
  }
}

/**
 * Ends a stream without telling etcd3's connection pool it failed: with writes ended first, etcd3's
 * own error handler sees the stream as no longer writable and does not reset the client's channels
 * or count a failure toward its circuit breaker, which would also stop leases and reads.
 */
function endQuietly(stream: Stream): void {
  stream.end();
  stream.cancel();
}
