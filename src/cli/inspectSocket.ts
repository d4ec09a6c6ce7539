import type { Logger } from "../logging.js";

/** The part of a `ws` WebSocket this module uses. */
export interface WireSocket {
  readonly readyState: number;
  readonly bufferedAmount: number;
  send(data: string, callback: (err?: Error) => void): void;
  close(): void;
  on(event: "open", listener: () => void): unknown;
  on(event: "error", listener: (err: Error) => void): unknown;
  on(event: "close", listener: () => void): unknown;
}

export type OpenWireSocket = (url: string) => WireSocket;

export interface InspectSocketOptions {
  url: string;
  open: OpenWireSocket;
  logger: Logger;
  /** Messages held while the receiver is down or slow; beyond it the oldest are dropped. */
  maxQueued?: number;
  /** Bytes the socket may hold unsent before messages wait in the queue instead. */
  maxUnsentBytes?: number;
  /** Reconnect delays: from about `initialMs`, doubling, up to `maxMs`, each with jitter. */
  backoff?: { initialMs: number; maxMs: number };
  random?: () => number;
}

export const DEFAULT_MAX_QUEUED = 1000;
const DEFAULT_MAX_UNSENT_BYTES = 1024 * 1024;
const DEFAULT_BACKOFF = { initialMs: 250, maxMs: 10_000 };
const OPEN = 1;
const SLOW_RECEIVER_RECHECK_MS = 100;

/** What the socket has done so far, for logs and tests. */
export interface InspectSocketCounts {
  sent: number;
  dropped: number;
  queued: number;
  connections: number;
}

/**
 * A WebSocket to an inspection receiver that never throws into its caller and never stops
 * trying: it reconnects with jittered exponential backoff, holds at most `maxQueued` messages while
 * the receiver is down or slow (dropping the oldest beyond that), logs one warning per outage, and
 * on every connection first sends the `greeting` (the registrations of the live actors), so a
 * receiver that joins late, or comes back, knows every actor the later messages are about.
 */
export class InspectSocket {
  private socket: WireSocket | undefined;
  private readonly queue: string[] = [];
  private retryTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private down = false;
  private closed = false;
  private droppedThisOutage = 0;
  private flushScheduled = false;
  private readonly counts = { sent: 0, dropped: 0, connections: 0 };
  private readonly maxQueued: number;
  private readonly maxUnsentBytes: number;
  private readonly backoff: { initialMs: number; maxMs: number };
  private readonly random: () => number;

  constructor(
    private readonly options: InspectSocketOptions,
    private readonly greeting: () => readonly string[] = () => [],
  ) {
    this.maxQueued = options.maxQueued ?? DEFAULT_MAX_QUEUED;
    this.maxUnsentBytes = options.maxUnsentBytes ?? DEFAULT_MAX_UNSENT_BYTES;
    this.backoff = options.backoff ?? DEFAULT_BACKOFF;
    this.random = options.random ?? Math.random;
  }

  get stats(): InspectSocketCounts {
    return { ...this.counts, queued: this.queue.length };
  }

  connect(): void {
    if (this.closed || this.socket) return;
    this.retryTimer = undefined;
    let socket: WireSocket;
    try {
      socket = this.options.open(this.options.url);
    } catch (err) {
      this.lost(err);
      return;
    }
    this.socket = socket;
    let lastError: unknown;
    socket.on("open", () => this.opened(socket));
    socket.on("error", (err) => {
      lastError = err;
    });
    socket.on("close", () => {
      if (this.socket === socket) {
        this.socket = undefined;
        this.lost(lastError);
      }
    });
  }

  /** Sends one message now if the receiver keeps up, else queues it. */
  send(message: string): void {
    if (this.closed) return;
    if (this.queue.length === 0 && this.writable()) this.write(message);
    else this.enqueue(message);
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.queue.length = 0;
    const socket = this.socket;
    this.socket = undefined;
    try {
      socket?.close();
    } catch {
      // closing a socket that never connected may throw in some clients; it is gone either way
    }
  }

  private opened(socket: WireSocket): void {
    if (this.socket !== socket) return;
    this.counts.connections++;
    this.failures = 0;
    if (this.down) {
      this.options.logger.info("inspection receiver connected", {
        url: this.options.url,
        droppedWhileDown: this.droppedThisOutage,
      });
    }
    this.down = false;
    this.droppedThisOutage = 0;
    for (const message of this.greeting()) this.write(message);
    this.flush();
  }

  private writable(): boolean {
    const socket = this.socket;
    return socket !== undefined && socket.readyState === OPEN && socket.bufferedAmount <= this.maxUnsentBytes;
  }

  private flush(): void {
    while (this.queue.length > 0 && this.writable()) this.write(this.queue.shift() as string);
    // A slow receiver is not announced by `ws`; look again shortly while messages wait.
    if (this.queue.length > 0 && this.socket?.readyState === OPEN && !this.flushScheduled) {
      this.flushScheduled = true;
      setTimeout(() => {
        this.flushScheduled = false;
        this.flush();
      }, SLOW_RECEIVER_RECHECK_MS).unref();
    }
  }

  private write(message: string): void {
    try {
      // A failed write closes the socket; the close handler takes it from there.
      this.socket?.send(message, () => undefined);
      this.counts.sent++;
    } catch {
      this.enqueue(message);
    }
  }

  private enqueue(message: string): void {
    this.queue.push(message);
    if (this.queue.length > this.maxQueued) {
      this.queue.shift();
      this.counts.dropped++;
      this.droppedThisOutage++;
    }
  }

  private lost(err: unknown): void {
    if (this.closed) return;
    const delayMs = this.retryDelay();
    const meta = {
      url: this.options.url,
      error: err instanceof Error ? err.message : err === undefined ? "connection closed" : String(err),
      retryInMs: Math.round(delayMs),
      maxQueued: this.maxQueued,
    };
    if (!this.down) {
      this.options.logger.warn(
        "inspection receiver unreachable: the node runs on, inspection events are held (oldest dropped beyond maxQueued) and sent once it is back",
        meta,
      );
    } else {
      this.options.logger.debug("inspection receiver still unreachable", meta);
    }
    this.down = true;
    this.failures++;
    this.retryTimer = setTimeout(() => this.connect(), delayMs);
    this.retryTimer.unref();
  }

  /** Equal jitter: between half and all of the capped exponential step, never zero. */
  private retryDelay(): number {
    const step = Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** Math.min(this.failures, 30));
    return step / 2 + this.random() * (step / 2);
  }
}
