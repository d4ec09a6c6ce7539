import type { Etcd3, IKeyValue, IRangeResponse, Watcher } from "etcd3";
import { Observable } from "rxjs";
import type { Logger } from "../logging.js";

export interface KeyEntry {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
  lease: string;
}

/** The keys under one prefix as of one etcd revision. */
export interface PrefixSnapshot {
  prefix: string;
  revision: number;
  entries: ReadonlyMap<string, KeyEntry>;
}

function toEntry(kv: IKeyValue): KeyEntry {
  return {
    key: kv.key.toString(),
    value: kv.value.toString(),
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
    lease: String(kv.lease),
  };
}

/** A snapshot from a range response, as a watch would have built it. */
export function snapshotOf(prefix: string, listed: IRangeResponse): PrefixSnapshot {
  return {
    prefix,
    revision: Number(listed.header.revision),
    entries: new Map(listed.kvs.map((kv) => [kv.key.toString(), toEntry(kv)])),
  };
}

const RELIST_BACKOFF_MS = 100;

/**
 * A live view of every key under `prefix`: lists it, then watches from the listed revision + 1.
 * etcd3's watcher resumes from its last seen revision after a reconnect; events at or below the
 * view's revision are dropped (de-duplication), and a cancelled or compacted watch is re-listed,
 * so no change is ever lost. Emits a new snapshot after each change.
 */
export function watchPrefix(client: Etcd3, prefix: string, log: Logger): Observable<PrefixSnapshot> {
  return new Observable<PrefixSnapshot>((subscriber) => {
    let closed = false;
    let watcher: Watcher | undefined;
    let entries = new Map<string, KeyEntry>();
    let revision = 0;

    const emit = () => subscriber.next({ prefix, revision, entries: new Map(entries) });

    const resync = async (reason: string): Promise<void> => {
      while (!closed) {
        try {
          const listed = await client.getAll().prefix(prefix).exec();
          if (closed) return;
          const snapshot = snapshotOf(prefix, listed);
          entries = new Map(snapshot.entries);
          revision = snapshot.revision;
          emit();
          const created = await client
            .watch()
            .prefix(prefix)
            .startRevision(String(revision + 1))
            .create();
          if (closed) {
            await created.cancel();
            return;
          }
          watcher = created;
          attach(created);
          return;
        } catch (err) {
          log.warn("watch resync failed, retrying", { prefix, reason, error: String(err) });
          await new Promise((r) => setTimeout(r, RELIST_BACKOFF_MS));
        }
      }
    };

    const attach = (w: Watcher) => {
      w.on("data", (res) => {
        // One transaction's events share a revision and arrive in one response, so duplicates are
        // judged against the revision before this response. Only event revisions advance the view:
        // a catch-up response's header may be ahead of events still to come in later responses.
        const seen = revision;
        let changed = false;
        for (const event of res.events) {
          const entry = toEntry(event.kv);
          if (entry.modRevision <= seen) continue;
          if (event.type === "Put") entries.set(entry.key, entry);
          else entries.delete(entry.key);
          revision = Math.max(revision, entry.modRevision);
          changed = true;
        }
        if (changed) emit();
      });
      w.on("error", (err) => {
        if (closed || watcher !== w) return;
        log.warn("watch cancelled by etcd, re-listing", { prefix, error: String(err) });
        watcher = undefined;
        void w.cancel().catch(() => undefined);
        void resync("watch cancelled");
      });
    };

    void resync("start");
    return () => {
      closed = true;
      void watcher?.cancel().catch(() => undefined);
    };
  });
}
