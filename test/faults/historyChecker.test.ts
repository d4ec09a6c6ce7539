import { describe, expect, test } from "vitest";
import type { HistoryRecord } from "../../src/runtime/history.js";
import { FAULT_LAYOUT } from "./faultCluster.js";
import { checkHistory, type Rule } from "./historyChecker.js";
import type { ObservedEvent, ObservedKeyValue } from "./observer.js";

const keys = FAULT_LAYOUT.keys;
const PRIMARY = keys.leaderKey(0, 1);
const BACKUP = keys.leaderKey(0, 2);
const member = (id: number) => keys.memberKey(FAULT_LAYOUT.nodeGroup(id), id);
const node = (id: number) => JSON.stringify({ id, name: `n${id}`, address: "h:1" });

type Op = { put: string; value: string; lease?: string } | { del: string };

/** Builds observer events one transaction (one revision) at a time, 10 ms apart. */
class EtcdLog {
  readonly events: ObservedEvent[] = [];
  private revision = 1;
  private readonly live = new Map<string, ObservedKeyValue>();

  txn(...ops: Op[]): number {
    this.revision += 1;
    const revision = this.revision;
    for (const op of ops) {
      const key = "put" in op ? op.put : op.del;
      const prev = this.live.get(key);
      const receivedAt = revision * 10;
      if ("put" in op) {
        const kv = {
          value: op.value,
          size: op.value.length,
          createRevision: prev?.createRevision ?? revision,
          modRevision: revision,
          lease: op.lease ?? "0",
        };
        this.live.set(key, kv);
        this.events.push({ ...kv, revision, type: "put", key, prev, receivedAt });
      } else {
        this.live.delete(key);
        this.events.push({
          value: "",
          size: 0,
          createRevision: 0,
          modRevision: revision,
          lease: "0",
          revision,
          type: "delete",
          key,
          prev,
          receivedAt,
        });
      }
    }
    return revision;
  }

  /** Fresh allocation of `id` under `lease`. */
  join(id: number, lease: string): number {
    return this.txn({ put: keys.idKey, value: String(id + 1) }, { put: member(id), value: node(id), lease });
  }
}

let mono = 0n;
function record(nodeName: string, lease: string, facts: Record<string, unknown>): HistoryRecord {
  mono += 1_000n;
  return {
    node: nodeName,
    lease,
    mono: String(mono),
    t: Number(mono / 1000n),
    deadlineMs: 1_000,
    ...facts,
  } as HistoryRecord;
}

const identity = (name: string, lease: string, id: number) =>
  record(name, lease, { kind: "identity", id, group: FAULT_LAYOUT.nodeGroup(id) });
const leader = (name: string, lease: string, facts: Record<string, unknown>) =>
  record(name, lease, { kind: "leader", grouping: 0, outcome: "ok", ...facts });

/** Two nodes join; node 0 becomes primary, node 1 backup; node 0 dies; node 1 is promoted and advertises slot 0; node 2 claims it. */
function cleanFailover() {
  const log = new EtcdLog();
  const histories: HistoryRecord[] = [];
  log.join(0, "10");
  histories.push(identity("a", "10", 0));
  log.join(1, "11");
  histories.push(identity("b", "11", 1));
  const t1 = log.txn({ put: PRIMARY, value: node(0), lease: "10" });
  histories.push(leader("a", "10", { action: "campaign", slot: 1, token: t1, revision: t1 }));
  const t2 = log.txn({ put: BACKUP, value: node(1), lease: "11" });
  histories.push(leader("b", "11", { action: "campaign", slot: 2, token: t2, revision: t2 }));
  const w = log.txn({ put: "data", value: "x" });
  histories.push(leader("a", "10", { action: "write", slot: 1, token: t1, revision: w }));
  log.txn({ del: PRIMARY }, { del: member(0) });
  const t3 = log.txn({ put: PRIMARY, value: node(1), lease: "11" }, { del: BACKUP });
  histories.push(leader("b", "11", { action: "promote", slot: 1, token: t3, revision: t3 }));
  log.txn({
    put: keys.failoverKey(0),
    value: JSON.stringify({ id: 0, group: 0, advertisedBy: 1, token: t3 }),
  });
  histories.push(leader("b", "11", { action: "advertise", slot: 1, token: t3, detail: "slot 0" }));
  log.txn({ del: keys.failoverKey(0) }, { put: member(0), value: node(0), lease: "12" });
  histories.push(identity("c", "12", 0));
  return { log, histories };
}

const rulesOf = (report: ReturnType<typeof checkHistory>): Rule[] => report.violations.map((v) => v.rule);

describe("history checker", () => {
  test("a clean crash failover passes and yields its failover time", () => {
    const { log, histories } = cleanFailover();
    const report = checkHistory({ layout: FAULT_LAYOUT, events: log.events, histories });
    expect(report.violations).toEqual([]);
    expect(report.failovers).toEqual([
      expect.objectContaining({ grouping: 0, from: 0, to: 1, gapMs: 10, cause: "expired" }),
    ]);
  });

  test("primary and backup on one node at some revision", () => {
    const log = new EtcdLog();
    log.join(0, "10");
    log.txn({ put: PRIMARY, value: node(0), lease: "10" });
    log.txn({ put: BACKUP, value: node(0), lease: "10" });
    const report = checkHistory({ layout: FAULT_LAYOUT, events: log.events, histories: [] });
    expect(rulesOf(report)).toContain("leaders");
  });

  test("a leader key put for a node that is not a live member under that lease", () => {
    const log = new EtcdLog();
    log.join(0, "10");
    log.txn({ put: PRIMARY, value: node(0), lease: "99" });
    expect(rulesOf(checkHistory({ layout: FAULT_LAYOUT, events: log.events, histories: [] }))).toEqual([
      "leaders",
    ]);
  });

  test("an acknowledged write at a revision where the leader key had another token", () => {
    const { log, histories } = cleanFailover();
    const late = log.txn({ put: "data", value: "stale" });
    const token = histories.find((r) => r.kind === "leader" && r.action === "campaign" && r.slot === 1);
    const stale = leader("a", "10", {
      action: "write",
      slot: 1,
      token: token?.kind === "leader" ? token.token : 0,
      revision: late,
    });
    const report = checkHistory({
      layout: FAULT_LAYOUT,
      events: log.events,
      histories: [...histories, stale],
    });
    expect(rulesOf(report)).toEqual(["fencing"]);
  });

  test("an acknowledged advertisement that etcd never saw, and tokens going backwards", () => {
    const { log, histories } = cleanFailover();
    const bogus = leader("b", "11", { action: "advertise", slot: 1, token: 3, detail: "slot 2" });
    const report = checkHistory({
      layout: FAULT_LAYOUT,
      events: log.events,
      histories: [...histories, bogus],
    });
    expect(report.violations.map((v) => v.message)).toEqual([
      expect.stringContaining("no advertisement of slot 2"),
      expect.stringContaining("with token 3 after advertise"),
    ]);
  });

  test("an acknowledged action after the local deadline", () => {
    const { log, histories } = cleanFailover();
    const late = histories.map((r) =>
      r.kind === "leader" && r.action === "promote" ? { ...r, deadlineMs: -40 } : r,
    );
    expect(rulesOf(checkHistory({ layout: FAULT_LAYOUT, events: log.events, histories: late }))).toEqual([
      "deadline",
    ]);
  });

  test("one member key claimed by two nodes, and an identity with no member key", () => {
    const { log, histories } = cleanFailover();
    const report = checkHistory({
      layout: FAULT_LAYOUT,
      events: log.events,
      histories: [...histories, identity("d", "12", 0), identity("e", "77", 5)],
    });
    expect(report.violations.map((v) => v.message)).toEqual([
      expect.stringContaining("no such member key"),
      expect.stringContaining("claimed by c and d"),
    ]);
  });

  test("a dead slot advertised twice, a slot reused without a claim, an expired slot never advertised", () => {
    const log = new EtcdLog();
    log.join(0, "10");
    log.join(1, "11");
    log.join(2, "12");
    const t = log.txn({ put: PRIMARY, value: node(1), lease: "11" });
    const ad = JSON.stringify({ id: 0, group: 0, advertisedBy: 1, token: t });
    log.txn({ del: member(0) });
    log.txn({ put: keys.failoverKey(0), value: ad });
    log.txn({ put: keys.failoverKey(0), value: ad });
    log.txn({ del: member(2) });
    log.txn({ put: member(2), value: node(2), lease: "13" });
    log.txn({ del: member(1) }, { del: PRIMARY });
    const report = checkHistory({ layout: FAULT_LAYOUT, events: log.events, histories: [] });
    expect(report.violations.map((v) => v.message)).toEqual([
      expect.stringContaining("ID 2 reused without claiming"),
      expect.stringContaining("slot 0 advertised 2 times"),
      expect.stringContaining("slot 2 expired"),
      expect.stringContaining("slot 1 expired"),
    ]);
  });

  test("writes the test made itself are not attributed to nodes", () => {
    const { log, histories } = cleanFailover();
    const planted = log.txn({ put: BACKUP, value: node(7) });
    const removed = log.txn({ del: BACKUP });
    const report = checkHistory({
      layout: FAULT_LAYOUT,
      events: log.events,
      histories,
      foreignRevisions: new Set([planted, removed]),
    });
    expect(report.violations).toEqual([]);
  });
});
