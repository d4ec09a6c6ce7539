import { checkFencedWrites, type ObservedEvent } from "rdeebee-cluster/testing";
import { describe, expect, test } from "vitest";

/** The fenced-write checker of the testing kit, on histories written by hand. */

const PRIMARY = "leader-0-1";

function put(revision: number, key: string, value: unknown, createRevision = revision): ObservedEvent {
  const text = JSON.stringify(value);
  return {
    revision,
    type: "put",
    key,
    value: text,
    size: text.length,
    createRevision,
    modRevision: revision,
    lease: "1",
    receivedAt: revision,
  };
}

function del(revision: number, key: string): ObservedEvent {
  return { ...put(revision, key, ""), type: "delete", value: "", size: 0 };
}

const write = (revision: number, key: string, value: string, node: string, token: number) =>
  put(revision, `kv/${key}`, { value, node, token });

function check(history: ObservedEvent[], acknowledged: { key: string; value: string; revision?: number }[]) {
  return checkFencedWrites({
    history,
    acknowledged: acknowledged.map((a) => ({ ...a, key: `kv/${a.key}` })),
    isPrimaryKey: (key) => key === PRIMARY,
    fenceOf: (event) => {
      if (!event.key.startsWith("kv/")) return undefined;
      const record = JSON.parse(event.value) as { node: string; token: number };
      return { primaryKey: PRIMARY, token: record.token, writer: record.node };
    },
    clientValueOf: (event) => (JSON.parse(event.value) as { value: string }).value,
    holderOf: (value) => (JSON.parse(value) as { name: string }).name,
  });
}

/** a is primary (token 2), writes x; a's key goes; b is primary (token 5) and writes y. */
const CLEAN = [
  put(2, PRIMARY, { name: "a" }),
  write(3, "x", "x1", "a", 2),
  del(4, PRIMARY),
  put(5, PRIMARY, { name: "b" }),
  write(6, "y", "y1", "b", 5),
];

describe("checkFencedWrites", () => {
  test("a history that keeps the rules passes", () => {
    const report = check(CLEAN, [
      { key: "x", value: "x1", revision: 3 },
      { key: "y", value: "y1" },
    ]);
    expect(report.messages).toEqual([]);
    expect(report.ok).toBe(true);
  });

  test("reports a planted lost acknowledged write and a planted write from a deposed primary", () => {
    const history = [...CLEAN, write(7, "x", "x2", "a", 2)];
    const report = check(history, [
      { key: "x", value: "x1", revision: 3 },
      { key: "z", value: "never-written" },
      { key: "y", value: "y1", revision: 9 },
    ]);
    expect(report.ok).toBe(false);
    expect(report.lost.map((l) => l.write.value)).toEqual(["never-written", "y1"]);
    expect(report.deposed).toEqual([
      {
        key: "kv/x",
        revision: 7,
        fence: { primaryKey: PRIMARY, token: 2, writer: "a" },
        primary: { createRevision: 5, holder: "b" },
      },
    ]);
    expect(report.twoPrimaries).toEqual([{ revision: 7, primaryKey: PRIMARY, nodes: ["a", "b"] }]);
  });

  test("a write while no one holds the primary key is from a deposed primary", () => {
    const report = check([put(2, PRIMARY, { name: "a" }), del(3, PRIMARY), write(4, "x", "x1", "a", 2)], []);
    expect(report.deposed.map((d) => d.revision)).toEqual([4]);
  });

  test("after a handoff (same token, another holder) the old primary's write is deposed", () => {
    const handedOff = put(3, PRIMARY, { name: "b" }, 2);
    const report = check([put(2, PRIMARY, { name: "a" }), handedOff, write(4, "x", "x1", "a", 2)], []);
    expect(report.deposed.map((d) => d.revision)).toEqual([4]);
  });

  test("a write of an earlier term of the same node is deposed (its token is not the key's)", () => {
    const history = [put(2, PRIMARY, { name: "a" }), del(3, PRIMARY), put(4, PRIMARY, { name: "a" })];
    const report = check([...history, write(5, "x", "x1", "a", 2), write(6, "x", "x2", "a", 4)], []);
    expect(report.deposed.map((d) => d.revision)).toEqual([5]);
  });

  test("a write is judged against the primary key before its own revision", () => {
    // The new primary's key and a stale write in one revision cannot both be checked against the new key.
    const report = check(
      [
        put(2, PRIMARY, { name: "a" }),
        del(3, PRIMARY),
        put(4, PRIMARY, { name: "a" }),
        write(4, "x", "x1", "a", 4),
      ],
      [],
    );
    expect(report.deposed.map((d) => d.revision)).toEqual([4]);
  });

  test("two servers claiming one seat at one revision are reported", () => {
    const report = checkFencedWrites({
      history: CLEAN,
      acknowledged: [],
      isPrimaryKey: (key) => key === PRIMARY,
      fenceOf: () => undefined,
      primaryClaims: [
        { node: "a", primaryKey: PRIMARY, revision: 3 },
        { node: "a", primaryKey: PRIMARY, revision: 4 },
        { node: "b", primaryKey: PRIMARY, revision: 4 },
      ],
    });
    expect(report.twoPrimaries).toEqual([{ revision: 4, primaryKey: PRIMARY, nodes: ["a", "b"] }]);
  });
});
