import { closeSync, openSync, writeSync } from "node:fs";
import type { Etcd3, IKeyValue, Watcher } from "etcd3";
import type { ObservedEvent, ObservedKeyValue } from "../../src/testing/historyChecker.js";
import { waitUntil } from "../support/waitUntil.js";

/** Values longer than this are kept truncated; `size` keeps the real length. */
const KEPT_VALUE_CHARS = 4096;

export type { ObservedEvent, ObservedKeyValue } from "../../src/testing/historyChecker.js";

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
 * and receive time, in memory and as JSON lines. etcd3 resumes a watch from the header revision of
 * the last reply it got, and a creation reply's header is ahead of the catch-up events still to
 * come, so the observer sets the resume revision itself, from the last event it kept, whenever the
 * watch disconnects. `verify` checks the result against etcd.
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
    watcher.on("disconnected", () => {
      watcher.request.start_revision = String(this.lastRevision + 1);
    });
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

  /**
   * Replays the kept events and compares the result with etcd's current key space (read at the
   * revision the events reached): a lost event would leave the replay different. Returns the
   * differences, empty when the observer saw everything.
   */
  async verify(client: Etcd3): Promise<string[]> {
    const revision = this.lastRevision;
    const read = await client.getAll().prefix("").revision(String(revision)).exec();
    const replayed = new Map<string, number>();
    for (const event of [...this.events].sort((a, b) => a.revision - b.revision)) {
      if (event.type === "put") replayed.set(event.key, event.modRevision);
      else replayed.delete(event.key);
    }
    const differences: string[] = [];
    for (const kv of read.kvs) {
      const key = kv.key.toString();
      if (replayed.get(key) !== Number(kv.mod_revision))
        differences.push(`${key}: etcd has mod revision ${kv.mod_revision}, replay ${replayed.get(key)}`);
      replayed.delete(key);
    }
    for (const [key, modRevision] of replayed)
      differences.push(`${key}: replay has mod revision ${modRevision}, etcd has no such key`);
    return differences;
  }

  async stop(): Promise<void> {
    await this.watcher.cancel().catch(() => undefined);
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
