import { asapScheduler, distinctUntilChanged, map, type Observable, observeOn } from "rxjs";
import type { ClusterLayout } from "../config/index.js";
import { type Etcd3, watchPrefix } from "../etcd/index.js";
import { type Logger, silentLogger } from "../logging.js";
import { type LeadersSnapshot, leadersOf } from "./groupingViews.js";

export interface LeaderWatchOptions {
  log?: Logger;
  /** Re-list the leader keys this often, repairing anything a watch missed; default 5 s. */
  resyncIntervalMs?: number;
  /** Deadline of each list; default 5 s. */
  callTimeoutMs?: number;
}

const DEFAULT_RESYNC_MS = 5_000;

const sameSeat = (a: LeadersSnapshot["primary"], b: LeadersSnapshot["primary"]) =>
  a?.token === b?.token && a?.modRevision === b?.modRevision;

/**
 * The primary and backup of any grouping, as etcd has them: emitted on subscription (after the
 * first list) and on every change of either seat; ends with an error when `client` is closed.
 * Works with any client, so a process that runs no node can follow the leaders too.
 */
export function watchLeaders(
  client: Etcd3,
  layout: ClusterLayout,
  grouping: number,
  options: LeaderWatchOptions = {},
): Observable<LeadersSnapshot> {
  layout.groupsOf(grouping); // a RangeError naming the grouping when it is not one of the layout's
  const prefix = layout.keys.leaderPrefix(grouping);
  const log = options.log ?? silentLogger();
  return watchPrefix(client, prefix, log, {
    resyncIntervalMs: options.resyncIntervalMs ?? DEFAULT_RESYNC_MS,
    callTimeoutMs: options.callTimeoutMs,
  }).pipe(
    map((snapshot) => leadersOf(snapshot, layout, grouping)),
    distinctUntilChanged((a, b) => sameSeat(a.primary, b.primary) && sameSeat(a.backup, b.backup)),
    // Delivered after the view's own step: a subscriber that leaves at its first value (firstValueFrom)
    // would otherwise stop the view while it lists, and the view would still open its watch and arm its resync.
    observeOn(asapScheduler),
  );
}
