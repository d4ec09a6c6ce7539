import { describe, expect, test } from "vitest";
import { ClusterLayout } from "../../src/config/index.js";
import type { KeyEntry, PrefixSnapshot } from "../../src/etcd/index.js";
import { adoptedOrphans } from "../../src/runtime/groupingViews.js";
import { SEED_CONFIG } from "../support/clusterNodes.js";

/** Five groupings of one group each. */
const layout = new ClusterLayout({ ...SEED_CONFIG, groups: 5, reads: 1 });

/** A snapshot of every leader key, with the given seats held: `[grouping, seat]`. */
function seats(...held: [number, 1 | 2][]): PrefixSnapshot {
  const entries = new Map<string, KeyEntry>();
  for (const [grouping, seat] of held) {
    const key = layout.keys.leaderKey(grouping, seat);
    entries.set(key, { key, value: "{}", createRevision: 2, modRevision: 2, version: 1, lease: "1" });
  }
  return { prefix: layout.keys.allLeadersPrefix, revision: 9, entries, source: "list" };
}

describe("which orphaned groupings a primary adopts", () => {
  test("each orphan goes to the nearest grouping after it, in ring order, that has a primary", () => {
    const snapshot = seats([1, 1], [3, 1]);
    // 4's nearest after it, wrapping around, is 1 (0 is an orphan too).
    expect(adoptedOrphans(snapshot, layout, 1)).toEqual([0, 4]);
    expect(adoptedOrphans(snapshot, layout, 3)).toEqual([2]);
    expect(adoptedOrphans(seats([1, 1]), layout, 1)).toEqual([0, 2, 3, 4]);
  });

  test("a grouping with any leader key is not an orphan, but does not stop the walk without a primary", () => {
    // 2 has only a backup (it will promote itself): not adopted; the orphan 1 before it goes to 3.
    const snapshot = seats([2, 2], [3, 1], [0, 1]);
    expect(adoptedOrphans(snapshot, layout, 3)).toEqual([1]);
    expect(adoptedOrphans(snapshot, layout, 0)).toEqual([4]);
  });

  test("every grouping seated: nothing to adopt; keys that are not leader keys are ignored", () => {
    const snapshot = seats([0, 1], [1, 1], [2, 1], [3, 1], [4, 1]);
    const entries = new Map(snapshot.entries);
    const stray = `${layout.keys.allLeadersPrefix}7-1`;
    entries.set(stray, {
      key: stray,
      value: "{}",
      createRevision: 3,
      modRevision: 3,
      version: 1,
      lease: "0",
    });
    expect(adoptedOrphans({ ...snapshot, entries }, layout, 2)).toEqual([]);
  });
});
