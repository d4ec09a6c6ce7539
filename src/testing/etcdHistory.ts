import type { Etcd3 } from "../etcd/index.js";
import type { ObservedEvent, ObservedKeyValue } from "./historyChecker.js";

export interface ReadEtcdHistoryOptions {
  /** Only keys under this prefix; every key by default. */
  prefix?: string;
  /** Reject if the events up to the current revision have not all arrived by then. Default 15 s. */
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 15_000;
const READ_DEADLINE_MS = 5_000;

interface RawKeyValue {
  key: Buffer;
  value: Buffer;
  create_revision: string;
  mod_revision: string;
  lease: string;
}

function keyValueOf(kv: RawKeyValue): ObservedKeyValue {
  const value = kv.value.toString();
  return {
    value,
    size: value.length,
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
    lease: String(kv.lease),
  };
}

/**
 * Every event etcd has under `prefix` from revision 1 to the revision when called, in revision
 * order (so nothing may have been compacted): one watch of the whole key space from revision 1,
 * cancelled once it reached that revision. etcd3 resumes a dropped watch from its creation reply's revision, ahead of the
 * catch-up events, so the resume revision is set here from the last event kept.
 */
export async function readEtcdHistory(
  client: Etcd3,
  options: ReadEtcdHistoryOptions = {},
): Promise<ObservedEvent[]> {
  const { prefix = "", timeoutMs = DEFAULT_TIMEOUT_MS } = options;
  const deadline = () => ({ deadline: new Date(Date.now() + READ_DEADLINE_MS) });
  const current = Number((await client.get("\0").options(deadline()).exec()).header.revision);
  const events: ObservedEvent[] = [];
  let last = 0;
  // Revision 1 is the empty store; every later revision is some write, so an event reaches `current`.
  if (current <= 1) return events;
  const watcher = await client.watch().prefix("").withPreviousKV().startRevision("1").create();
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(new Error(`readEtcdHistory: events up to revision ${current} not read in ${timeoutMs} ms`)),
        timeoutMs,
      );
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      watcher.on("disconnected", () => {
        watcher.request.start_revision = String(last + 1);
      });
      watcher.on("data", (res) => {
        const receivedAt = Date.now();
        for (const event of res.events) {
          last = Math.max(last, Number(event.kv.mod_revision));
          if (!event.kv.key.toString().startsWith(prefix)) continue;
          events.push({
            ...keyValueOf(event.kv),
            revision: Number(event.kv.mod_revision),
            type: event.type === "Put" ? "put" : "delete",
            key: event.kv.key.toString(),
            prev: event.prev_kv ? keyValueOf(event.prev_kv) : undefined,
            receivedAt,
          });
        }
        if (last >= current) done();
      });
    });
  } finally {
    await watcher.cancel().catch(() => undefined);
  }
  return events.sort((a, b) => a.revision - b.revision);
}
