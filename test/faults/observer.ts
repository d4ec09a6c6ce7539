import { closeSync, openSync, writeSync } from "node:fs";
import type { Etcd3, IKeyValue, Watcher } from "etcd3";
import { waitUntil } from "../support/waitUntil.js";

/** Values longer than this are kept truncated; `size` keeps the real length. */
const KEPT_VALUE_CHARS = 4096;

export interface ObservedKeyValue {
  value: string;
  size: number;
  createRevision: number;
  modRevision: number;
  lease: string;
}

/** One watch event of the whole key space, as the observer received it. */
export interface ObservedEvent extends ObservedKeyValue {
  revision: number;
  type: "put" | "delete";
  key: string;
  prev?: ObservedKeyValue;
  /** Wall-clock milliseconds when the observer received the event. */
  receivedAt: number;
}

function keyValueOf(kv: IKeyValue): ObservedKeyValue {
  const value = kv.value.toString();
  return {
    value: value.length > KEPT_VALUE_CHARS ? value.slice(0, KEPT_VALUE_CHARS) : value,
    size: value.length,
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
    lease: String(kv.lease),
  };
}

/**
 * Watches every key from revision 1 with previous values, and keeps each event with its revision
 * and receive time, in memory and as JSON lines. etcd3 resumes the watch from the last revision
 * it saw after a reconnect, so member kills lose nothing.
 */
export class Observer {
  readonly events: ObservedEvent[] = [];
  private lastRevision = 0;
  private fd: number | undefined;

  private constructor(
    private readonly watcher: Watcher,
    readonly file: string,
  ) {
    this.fd = openSync(file, "a");
    watcher.on("data", (res) => {
      const receivedAt = Date.now();
      for (const event of res.events) {
        const observed: ObservedEvent = {
          ...keyValueOf(event.kv),
          revision: Number(event.kv.mod_revision),
          type: event.type === "Put" ? "put" : "delete",
          key: event.kv.key.toString(),
          prev: event.prev_kv ? keyValueOf(event.prev_kv) : undefined,
          receivedAt,
        };
        this.events.push(observed);
        if (this.fd !== undefined) writeSync(this.fd, `${JSON.stringify(observed)}\n`);
        this.lastRevision = Math.max(this.lastRevision, observed.revision);
      }
    });
  }

  static async start(client: Etcd3, file: string): Promise<Observer> {
    const watcher = await client.watch().prefix("").withPreviousKV().startRevision("1").create();
    return new Observer(watcher, file);
  }

  /** The highest revision seen in an event. */
  get revision(): number {
    return this.lastRevision;
  }

  /** Waits until every event up to the store's current revision has arrived. */
  async catchUp(client: Etcd3, timeoutMs = 15_000): Promise<void> {
    const current = Number((await client.get("\0").exec()).header.revision);
    await waitUntil(
      `the observer to reach revision ${current}`,
      () => this.lastRevision >= current,
      timeoutMs,
    );
  }

  async stop(): Promise<void> {
    await this.watcher.cancel().catch(() => undefined);
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
