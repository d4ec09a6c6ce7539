import { BehaviorSubject, type Observable } from "rxjs";
import { afterEach, beforeEach, expect, test, vi } from "vitest";
import { ClusterLayout } from "../../src/config/index.js";
import type { KeyEntry, PrefixSnapshot } from "../../src/etcd/index.js";
import { silentLogger } from "../../src/logging.js";
import { GroupingViews, UNSEEN_SLOT_GRACE_MS } from "../../src/runtime/groupingViews.js";
import { ONE_GROUPING } from "../support/clusterNodes.js";

const LAYOUT = new ClusterLayout(ONE_GROUPING);
const KEYS = LAYOUT.keys;

/** The views' inputs, fed by hand: one subject per watched prefix. */
class Feed {
  private readonly subjects = new Map<string, BehaviorSubject<PrefixSnapshot>>();
  private revision = 1;

  readonly watch = (prefix: string): Observable<PrefixSnapshot> => this.subject(prefix);

  set(prefix: string, entries: Record<string, { value: string; version?: number; lease?: string }>): void {
    this.revision += 1;
    const map = new Map<string, KeyEntry>();
    for (const [key, e] of Object.entries(entries))
      map.set(key, {
        key,
        value: e.value,
        createRevision: 2,
        modRevision: this.revision,
        version: e.version ?? 1,
        lease: e.lease ?? "7",
      });
    this.subject(prefix).next({ prefix, revision: this.revision, entries: map, source: "watch" });
  }

  private subject(prefix: string) {
    let subject = this.subjects.get(prefix);
    if (!subject) {
      subject = new BehaviorSubject<PrefixSnapshot>({
        prefix,
        revision: 1,
        entries: new Map(),
        source: "list",
      });
      this.subjects.set(prefix, subject);
    }
    return subject;
  }
}

const member = (id: number) => ({
  [KEYS.memberKey(LAYOUT.nodeGroup(id), id)]: {
    value: JSON.stringify({ id, name: `n${id}`, address: "h:1" }),
  },
});

beforeEach(() => {
  vi.useFakeTimers({
    toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "performance", "Date"],
  });
});
afterEach(() => {
  vi.useRealTimers();
});

test("a handed-out slot never seen with a member counts as failed only after the grace; one that lost its member at once", async () => {
  const feed = new Feed();
  const views = new GroupingViews(feed.watch, LAYOUT, 0, silentLogger());
  let missing: readonly number[] = [];
  const sub = views.missingSlots$.subscribe((m) => {
    missing = m;
  });
  feed.set(KEYS.allLeadersPrefix, {
    [KEYS.leaderKey(0, 1)]: { value: JSON.stringify({ id: 0, name: "n0", address: "h:1" }) },
  });
  feed.set(KEYS.membershipPrefix(0), { ...member(0), ...member(1) });
  // Tickets 0..3 taken (a decimal lower bound of 2, the version 4): slots 2 and 3 are on their way.
  feed.set(KEYS.idKey, { [KEYS.idKey]: { value: "2", version: 4 } });
  await vi.advanceTimersByTimeAsync(0);
  expect(missing).toEqual([]);

  // Member 1 goes: it was seen, so its slot failed now.
  feed.set(KEYS.membershipPrefix(0), member(0));
  await vi.advanceTimersByTimeAsync(0);
  expect(missing).toEqual([1]);

  // Slot 2 is claimed within the grace: never advertised. Slot 3's ticket was burnt.
  feed.set(KEYS.membershipPrefix(0), { ...member(0), ...member(2) });
  await vi.advanceTimersByTimeAsync(UNSEEN_SLOT_GRACE_MS / 2);
  expect(missing).toEqual([1]);
  await vi.advanceTimersByTimeAsync(UNSEEN_SLOT_GRACE_MS);
  expect(missing).toEqual([1, 3]);
  sub.unsubscribe();
});

test("a slot seen with a member before the node became primary has no grace", async () => {
  const feed = new Feed();
  const views = new GroupingViews(feed.watch, LAYOUT, 0, silentLogger());
  // A member follows its grouping's members from the start; missingSlots$ only once it is primary.
  const members = views.members$.subscribe();
  feed.set(KEYS.allLeadersPrefix, {
    [KEYS.leaderKey(0, 1)]: { value: JSON.stringify({ id: 0, name: "n0", address: "h:1" }) },
  });
  feed.set(KEYS.idKey, { [KEYS.idKey]: { value: "2", version: 2 } });
  feed.set(KEYS.membershipPrefix(0), { ...member(0), ...member(1) });
  feed.set(KEYS.membershipPrefix(0), member(0));
  let missing: readonly number[] = [];
  const sub = views.missingSlots$.subscribe((m) => {
    missing = m;
  });
  await vi.advanceTimersByTimeAsync(0);
  expect(missing).toEqual([1]);
  sub.unsubscribe();
  members.unsubscribe();
});

test("the high-water mark is id_key's version; its decimal value counts when it is higher", async () => {
  const feed = new Feed();
  const views = new GroupingViews(feed.watch, LAYOUT, 0, silentLogger());
  let missing: readonly number[] = [];
  const sub = views.missingSlots$.subscribe((m) => {
    missing = m;
  });
  feed.set(KEYS.allLeadersPrefix, {
    [KEYS.leaderKey(0, 1)]: { value: JSON.stringify({ id: 0, name: "n0", address: "h:1" }) },
  });
  feed.set(KEYS.membershipPrefix(0), member(0));
  feed.set(KEYS.idKey, { [KEYS.idKey]: { value: "1", version: 3 } });
  await vi.advanceTimersByTimeAsync(2 * UNSEEN_SLOT_GRACE_MS);
  expect(missing).toEqual([1, 2]);
  feed.set(KEYS.idKey, { [KEYS.idKey]: { value: "4", version: 3 } });
  await vi.advanceTimersByTimeAsync(2 * UNSEEN_SLOT_GRACE_MS);
  expect(missing).toEqual([1, 2, 3]);
  sub.unsubscribe();
});
