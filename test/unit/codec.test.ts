import { describe, expect, it } from "vitest";
import { ClusterLayout } from "../../src/config/index.js";
import {
  classifyKey,
  decodeCounter,
  decodeFailoverAd,
  decodeLeaderValue,
  decodeMember,
} from "../../src/etcd/codec.js";
import { SEED_CONFIG } from "../support/clusterNodes.js";

// 10 groups of 3 (IDs 0..29), groupings of 3 groups: 0..3.
const layout = new ClusterLayout(SEED_CONFIG);
const { keys } = layout;
const record = (id: number) => JSON.stringify({ id, name: `n${id}`, address: "127.0.0.1:1" });

describe("classifyKey: every key of the key space, checked against the layout", () => {
  it.each([
    [keys.idKey, { kind: "idCounter" }],
    [keys.leaderKey(3, 2), { kind: "leader", grouping: 3, seat: 2 }],
    [keys.memberKey(9, 29), { kind: "member", group: 9, id: 29 }],
    [keys.failoverKey(29), { kind: "failoverAd", id: 29 }],
    [keys.writeMarkerKey(1, "9f2c"), { kind: "writeMarker", grouping: 1 }],
    [keys.commitRecordKey(0, "a/b"), { kind: "commitRecord", grouping: 0, key: "a/b" }],
  ])("%s", (key, kind) => {
    expect(classifyKey(layout, key)).toEqual(kind);
  });

  it.each([
    [keys.leaderKey(4, 1), "leader"],
    [keys.memberKey(0, 3), "member"],
    [keys.memberKey(10, 30), "member"],
    [keys.failoverKey(30), "failoverAd"],
    [keys.writeMarkerKey(4, "x"), "writeMarker"],
    [keys.commitRecordKey(9, "k"), "commitRecord"],
  ])("%s names no place of the layout", (key, family) => {
    expect(classifyKey(layout, key)).toEqual({ kind: "outOfLayout", family });
  });

  it.each([
    "leader-RDeeBee-group-0-3",
    "leader-RDeeBee-group-00-1",
    "member-RDeeBee-group-1/",
    "member-RDeeBee-group-1/04",
    "failover_id/07",
    "failover_id/x",
    "kv-RDeeBee-grouping-0/",
    "something-else",
  ])("%s is unknown", (key) => {
    expect(classifyKey(layout, key)).toEqual({ kind: "unknown" });
  });
});

describe("one policy per family of values", () => {
  it("a leader value is a node record of the key's grouping", () => {
    expect(decodeLeaderValue(layout, 0, record(8))).toMatchObject({ ok: true, value: { id: 8 } });
    expect(decodeLeaderValue(layout, 0, record(9))).toEqual({
      ok: false,
      problem: "names node 9, which is not in this grouping",
    });
    expect(decodeLeaderValue(layout, 0, "{")).toEqual({ ok: false, problem: "value is not JSON" });
  });

  it("a member's key and value name the same node of the key's group", () => {
    expect(decodeMember(layout, keys.memberKey(1, 4), record(4))).toMatchObject({ kind: "member", group: 1 });
    expect(decodeMember(layout, keys.memberKey(1, 4), record(5))).toEqual({
      kind: "badValue",
      problem: "id differs from key",
    });
    expect(decodeMember(layout, keys.memberKey(1, 7), record(7))).toEqual({ kind: "badKey" });
  });

  it("an advertisement is known by its key; a bad value does not hide its slot", () => {
    expect(decodeFailoverAd(layout, keys.failoverKey(4), "nonsense")).toMatchObject({
      id: 4,
      ad: { ok: false },
    });
    expect(decodeFailoverAd(layout, keys.failoverKey(30), "{}")).toBeUndefined();
  });

  it("the ID counter: absent is 0, anything this runtime would not write counts as 0 with a problem", () => {
    expect(decodeCounter(undefined, 30)).toEqual({ allocated: 0 });
    expect(decodeCounter("30", 30)).toEqual({ allocated: 30 });
    for (const bad of ["31", "07", "-1", "1e3", ""])
      expect(decodeCounter(bad, 30)).toEqual({ allocated: 0, problem: "not a node ID counter (0..30)" });
  });
});
