import { describe, expect, test } from "vitest";
import { ClusterLayout } from "../../src/config/index.js";
import type { HistoryRecord } from "../../src/runtime/history.js";
import { FAULT_CONFIG, FAULT_LAYOUT } from "./faultCluster.js";
import {
  type CheckInput,
  checkHistory,
  type FinalMember,
  type ProcessFate,
  type Rule,
  VACANCY_GRACE_MS,
  type WriteAttempt,
} from "./historyChecker.js";
import type { ObservedEvent, ObservedKeyValue } from "./observer.js";

const keys = FAULT_LAYOUT.keys;
const PRIMARY = keys.leaderKey(0, 1);
const BACKUP = keys.leaderKey(0, 2);
const member = (id: number) => keys.memberKey(FAULT_LAYOUT.nodeGroup(id), id);
const node = (id: number) => JSON.stringify({ id, name: `n${id}`, address: "h:1" });

type Op = { put: string; value: string; lease?: string } | { del: string };

/** Builds observer events one transaction (one revision) at a time, 10 ms apart unless told to wait. */
class EtcdLog {
  readonly events: ObservedEvent[] = [];
  private revision = 1;
  private clock = 10;
  private readonly live = new Map<string, ObservedKeyValue>();

  /** Observer time of the next transaction, in ms. */
  get now(): number {
    return this.clock + 10;
  }

  /** The next transaction is seen `ms` later than it would have been. */
  wait(ms: number): void {
    this.clock += ms;
  }

  txn(...ops: Op[]): number {
    this.revision += 1;
    this.clock += 10;
    const revision = this.revision;
    const receivedAt = this.clock;
    for (const op of ops) {
      const key = "put" in op ? op.put : op.del;
      const prev = this.live.get(key);
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

  test("a promotion over a live primary key (put under the backup's lease), reported won with the key's token", () => {
    const log = new EtcdLog();
    log.join(0, "10");
    log.join(1, "11");
    const seated = log.txn({ put: BACKUP, value: node(1), lease: "11" });
    const planted = log.txn({ put: PRIMARY, value: node(0), lease: "10" });
    const over = log.txn({ put: PRIMARY, value: node(1), lease: "11" }, { del: BACKUP });
    const histories = [
      leader("b", "11", { action: "campaign", slot: 2, token: seated, revision: seated }),
      leader("b", "11", { action: "promote", slot: 1, token: planted, revision: planted }),
    ];
    const report = checkHistory({
      layout: FAULT_LAYOUT,
      events: log.events,
      histories,
      foreignRevisions: new Set([planted]),
    });
    expect(report.violations).toEqual([
      expect.objectContaining({ rule: "leaders", revision: over }),
      expect.objectContaining({ rule: "fencing", message: expect.stringMatching(/created under lease 10/) }),
    ]);
  });

  test("a stopping primary's handoff (primary key to the backup's lease, backup key deleted) passes; the same put without a recorded stop does not", () => {
    const handoff = (stopped: boolean) => {
      const log = new EtcdLog();
      log.join(0, "10");
      log.join(1, "11");
      const primary = log.txn({ put: PRIMARY, value: node(0), lease: "10" });
      const backup = log.txn({ put: BACKUP, value: node(1), lease: "11" });
      const stopping = record("a", "10", {
        kind: "transition",
        from: "member",
        to: "stopping",
        role: "stopping",
        id: 0,
        event: "STOP",
      });
      log.txn({ put: PRIMARY, value: node(1), lease: "11" }, { del: BACKUP });
      const write = log.txn({ put: "app/x", value: "v", lease: "11" });
      const histories = [
        leader("a", "10", { action: "campaign", slot: 1, token: primary, revision: primary }),
        leader("b", "11", { action: "campaign", slot: 2, token: backup, revision: backup }),
        ...(stopped ? [stopping] : []),
        // The new primary's token is the key's create revision: older than its own backup key's.
        leader("b", "11", { action: "write", slot: 1, token: primary, revision: write }),
      ];
      return rulesOf(checkHistory({ layout: FAULT_LAYOUT, events: log.events, histories }));
    };
    expect(handoff(true)).toEqual([]);
    expect(handoff(false)).toEqual(["leaders"]);
  });

  test("after a handoff the primary key keeps its token under the backup's lease: the old primary's acknowledged actions from then on are violations, the new primary's are not", () => {
    const log = new EtcdLog();
    log.join(0, "10");
    log.join(1, "11");
    log.join(2, "12");
    const primary = log.txn({ put: PRIMARY, value: node(0), lease: "10" });
    const backup = log.txn({ put: BACKUP, value: node(1), lease: "11" });
    const before = log.txn({ put: "app/before", value: "v" });
    log.txn({ del: member(2) });
    const stopping = record("a", "10", {
      kind: "transition",
      from: "member",
      to: "stopping",
      role: "stopping",
      id: 0,
      event: "STOP",
    });
    const handedOff = log.txn({ put: PRIMARY, value: node(1), lease: "11" }, { del: BACKUP });
    const newWrite = log.txn({ put: "app/new", value: "v" });
    const oldWrite = log.txn({ put: "app/old", value: "v" });
    const ad = (advertisedBy: number) =>
      log.txn({
        put: keys.failoverKey(2),
        value: JSON.stringify({ id: 2, group: FAULT_LAYOUT.nodeGroup(2), advertisedBy, token: primary }),
      });
    const oldAd = ad(0);
    const histories = [
      leader("a", "10", { action: "campaign", slot: 1, token: primary, revision: primary }),
      leader("b", "11", { action: "campaign", slot: 2, token: backup, revision: backup }),
      leader("a", "10", { action: "write", slot: 1, token: primary, revision: before }),
      stopping,
      // The handoff compared the key as it was before its own revision: under the old primary's lease.
      leader("a", "10", { action: "handoff", slot: 1, token: primary, revision: handedOff }),
      leader("b", "11", { action: "write", slot: 1, token: primary, revision: newWrite }),
    ];
    expect(check({ events: log.events, histories }).violations).toEqual([]);

    const late = [
      leader("a", "10", { action: "write", slot: 1, token: primary, revision: oldWrite }),
      leader("a", "10", { action: "advertise", slot: 1, token: primary, detail: "slot 2" }),
      // A second handoff acknowledged where the key was no longer bound to the node's lease.
      leader("a", "10", { action: "handoff", slot: 1, token: primary, revision: oldWrite }),
    ];
    expect(check({ events: log.events, histories: [...histories, ...late] }).violations).toEqual([
      expect.objectContaining({
        rule: "fencing",
        node: "a",
        revision: oldWrite,
        message: `a write: committed at ${oldWrite} while ${PRIMARY} (token ${primary}) was bound to lease 11, not the node's lease 10`,
      }),
      expect.objectContaining({ rule: "fencing", node: "a", revision: oldAd }),
      expect.objectContaining({ rule: "fencing", node: "a", revision: oldWrite }),
    ]);
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

  test("a campaign that committed but was reported refused (its re-sent compare failed against itself)", () => {
    const { log, histories } = cleanFailover();
    const won = histories.map((r) =>
      r.kind === "leader" && r.action === "campaign" && r.slot === 2
        ? { ...r, outcome: "refused" as const }
        : r,
    );
    expect(check({ events: log.events, histories: won }).violations.map((v) => v.message)).toEqual([
      expect.stringContaining("recorded no won campaign or promotion"),
    ]);
  });

  test("an advertisement acknowledged again (found already in place) matches the put it made", () => {
    const { log, histories } = cleanFailover();
    const again = histories.find((r) => r.kind === "leader" && r.action === "advertise");
    if (!again) throw new Error("no advertisement");
    expect(check({ events: log.events, histories: [...histories, { ...again }] }).violations).toEqual([]);
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

  test("a live member key put again under another lease (a second node taking a held ID)", () => {
    const { log, histories } = cleanFailover();
    log.txn({ put: member(1), value: node(1), lease: "13" });
    const report = checkHistory({ layout: FAULT_LAYOUT, events: log.events, histories });
    expect(report.violations.map((v) => v.message)).toContainEqual(
      expect.stringContaining("member key of ID 1 moved from lease 11 to 13 while live"),
    );
  });

  test("fresh IDs by ticket (id_key put, then the member key in a later transaction), a burnt ticket's slot advertised, and a node taking its own ID back pass", () => {
    const log = new EtcdLog();
    log.txn({ put: keys.idKey, value: "1" });
    log.txn({ put: keys.idKey, value: "2" });
    log.txn({ put: keys.idKey, value: "2" }); // raced: the value lags, the version (3) does not
    log.txn({ put: member(0), value: node(0), lease: "10" });
    log.txn({ put: member(2), value: node(2), lease: "12" });
    const t = log.txn({ put: PRIMARY, value: node(0), lease: "10" });
    // Slot 1's ticket was burnt (its holder never claimed it): advertised as a gap, then claimed.
    log.txn({
      put: keys.failoverKey(1),
      value: JSON.stringify({ id: 1, group: 0, advertisedBy: 0, token: t }),
    });
    log.txn({ del: keys.failoverKey(1) }, { put: member(1), value: node(1), lease: "11" });
    // Node 2 lost its member key and took its ID back under a new lease before any advertisement.
    log.txn({ del: member(2) });
    log.txn({ put: member(2), value: node(2), lease: "13" });
    const report = checkHistory({ layout: FAULT_LAYOUT, events: log.events, histories: [] });
    expect(report.violations.map((v) => v.message)).toEqual([]);
  });

  test("a restarted process (another name) taking its ID back passes when its history says so, and only then", () => {
    const log = new EtcdLog();
    log.join(0, "10");
    log.join(1, "11");
    log.txn({ del: member(1) });
    log.txn({
      put: member(1),
      value: JSON.stringify({ id: 1, name: "n1-restarted", address: "h:1" }),
      lease: "12",
    });
    const reclaimed = record("n1-restarted", "12", {
      kind: "identity",
      id: 1,
      group: FAULT_LAYOUT.nodeGroup(1),
      joinedVia: "reclaimed",
      previousId: 1,
    });
    const slots = (histories: HistoryRecord[]) =>
      checkHistory({ layout: FAULT_LAYOUT, events: log.events, histories })
        .violations.filter((v) => v.rule === "slots")
        .map((v) => v.message);
    expect(slots([reclaimed])).toEqual([]);
    expect(slots([{ ...reclaimed, lease: "13" } as HistoryRecord])).toEqual([
      expect.stringContaining("ID 1 reused without claiming its advertisement"),
      expect.stringContaining("slot 1 expired"),
    ]);
  });

  test("an ID above the high-water mark registered beside an id_key put, and a slot above it advertised", () => {
    const log = new EtcdLog();
    log.txn({ put: keys.idKey, value: "1" }, { put: member(1), value: node(1), lease: "11" });
    const t = log.txn({ put: PRIMARY, value: node(1), lease: "11" });
    log.txn({
      put: keys.failoverKey(2),
      value: JSON.stringify({ id: 2, group: 0, advertisedBy: 1, token: t }),
    });
    const report = checkHistory({ layout: FAULT_LAYOUT, events: log.events, histories: [] });
    expect(report.violations.map((v) => v.message)).toEqual([
      expect.stringContaining("ID 1 registered but never handed out (high-water mark 1)"),
      expect.stringContaining("slot 2 advertised but it never failed nor was handed out"),
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
    log.txn({ put: member(2), value: JSON.stringify({ id: 2, name: "other", address: "h:1" }), lease: "13" });
    log.txn({ del: member(1) }, { del: PRIMARY });
    const report = checkHistory({ layout: FAULT_LAYOUT, events: log.events, histories: [] });
    expect(report.violations.map((v) => v.message)).toEqual([
      expect.stringContaining("ID 2 reused without claiming"),
      expect.stringContaining("slot 0 advertised 2 times"),
      expect.stringContaining("slot 2 expired"),
      expect.stringContaining("slot 1 expired"),
    ]);
  });

  test("a member key of a process the harness stopped, deleted after it began stopping, needs no advertisement", () => {
    const log = new EtcdLog();
    log.join(0, "10");
    log.join(1, "11");
    log.txn({ put: PRIMARY, value: node(1), lease: "11" });
    const stoppingFrom = log.now;
    log.txn({ del: member(0) });
    const stopped = (endedAt: number, name = "n0") =>
      rulesOf(
        check({
          events: log.events,
          histories: [],
          endedAt,
          processes: [{ name, killed: false, stopped: true, exit: { code: 0, signal: null } }],
        }),
      );
    expect(stopped(stoppingFrom)).toEqual([]);
    expect(stopped(stoppingFrom + 1)).toEqual(["slots"]);
    expect(stopped(stoppingFrom, "n7")).toEqual(["slots"]);
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

const check = (input: Omit<CheckInput, "layout">) => checkHistory({ layout: FAULT_LAYOUT, ...input });

describe("process exits", () => {
  const fate = (name: string, fields: Partial<ProcessFate>): ProcessFate => ({
    name,
    killed: false,
    stopped: false,
    ...fields,
  });

  test("only processes the scenario killed may be gone; stopped ones exit 0", () => {
    const report = check({
      events: [],
      histories: [],
      processes: [
        fate("killed", { killed: true, exit: { code: null, signal: "SIGKILL" } }),
        fate("stopped", { stopped: true, exit: { code: 0, signal: null } }),
        fate("running", {}),
        fate("crashed", { exit: { code: 1, signal: null } }),
        fate("hung", { stopped: true, exit: { code: null, signal: "SIGKILL" } }),
      ],
    });
    expect(report.violations.map((v) => [v.rule, v.node])).toEqual([
      ["exits", "crashed"],
      ["exits", "hung"],
    ]);
  });
});

describe("member keys at the end", () => {
  const m = (id: number, lease: string, name: string): FinalMember => ({ key: member(id), lease, name });

  test("one member key per live node passes", () => {
    const finalMembership = { members: [m(0, "10", "a"), m(1, "11", "b")], liveNodes: ["a", "b"] };
    expect(check({ events: [], histories: [], finalMembership }).violations).toEqual([]);
  });

  test("a lease with two member keys, and a live node with none", () => {
    const finalMembership = {
      members: [m(0, "10", "a"), m(3, "10", "a"), m(1, "11", "b")],
      liveNodes: ["a", "b", "c"],
    };
    expect(check({ events: [], histories: [], finalMembership }).violations.map((v) => v.message)).toEqual([
      expect.stringContaining("lease 10 holds 2 member keys"),
      expect.stringContaining("live node a holds 2 member keys"),
      expect.stringContaining("live node c holds 0 member keys"),
    ]);
  });
});

describe("fenced write outcomes", () => {
  const RECORD = keys.commitRecordKey(0, "k");
  const commit = (value: string, token: number) => JSON.stringify({ value, node: "n0", token });
  const attempt = (value: string, status: number, revision?: number): WriteAttempt => ({
    node: "n0",
    key: RECORD,
    value,
    status,
    revision,
  });

  /** Node 0 primary; writes v1 and v2 committed under its token; its primary key goes; v3 put under its old token. */
  function writes() {
    const log = new EtcdLog();
    log.join(0, "10");
    const token = log.txn({ put: PRIMARY, value: node(0), lease: "10" });
    const v1 = log.txn({ put: RECORD, value: commit("v1", token) });
    const v2 = log.txn({ put: RECORD, value: commit("v2", token) });
    log.txn({ del: PRIMARY });
    const v3 = log.txn({ put: RECORD, value: commit("v3", token) });
    return { log, v1, v2, v3 };
  }

  test("committed in etcd iff the server said so; unknown either way", () => {
    const { log, v1, v2 } = writes();
    const report = check({
      events: log.events,
      histories: [],
      writes: [attempt("v1", 200, v1), attempt("v2", 503), attempt("never", 504), attempt("lost", 0)],
    });
    expect(report.violations).toEqual([]);
    expect(v2).toBeGreaterThan(v1);
  });

  test("refused but committed, committed but absent, committed at another revision, an unclassified status", () => {
    const { log, v1, v2 } = writes();
    const report = check({
      events: log.events,
      histories: [],
      writes: [
        attempt("v1", 409),
        attempt("absent", 200, v2 + 100),
        attempt("v2", 200, v1),
        attempt("never", 500),
      ],
    });
    expect(report.violations.map((v) => [v.rule, v.message])).toEqual([
      ["writes", expect.stringContaining("reported refused (HTTP 409) but etcd committed it")],
      ["writes", expect.stringContaining("reported committed (HTTP 200) but etcd never held it")],
      ["writes", expect.stringContaining(`reported committed at revision ${v1}, but etcd has it at ${v2}`)],
      ["writes", expect.stringContaining("answered HTTP 500")],
    ]);
  });

  test("a record committed under a token whose primary key was gone", () => {
    const { log, v3 } = writes();
    const report = check({ events: log.events, histories: [], writes: [attempt("v3", 200, v3)] });
    expect(report.violations.map((v) => v.message)).toEqual([
      expect.stringContaining(`committed at ${v3} under token`),
    ]);
  });
});

describe("vacant primary seat with a live backup", () => {
  const TTL = 2_000;
  const BOUND = 2 * TTL + VACANCY_GRACE_MS;

  /** Node 0 primary, node 1 ("n1") backup; the primary key goes; node 1 is promoted `vacantMs` later. */
  function vacancy(vacantMs: number) {
    const log = new EtcdLog();
    log.join(0, "10");
    log.join(1, "11");
    log.txn({ put: PRIMARY, value: node(0), lease: "10" });
    log.txn({ put: BACKUP, value: node(1), lease: "11" });
    const from = log.now;
    log.txn({ del: PRIMARY });
    log.wait(vacantMs - 10);
    log.txn({ put: PRIMARY, value: node(1), lease: "11" }, { del: BACKUP });
    return { log, from };
  }

  test("within TTL + re-read interval + grace passes, and is measured", () => {
    const { log } = vacancy(BOUND - 100);
    const report = check({ events: log.events, histories: [], vacancy: { ttlMs: TTL } });
    expect(report.violations).toEqual([]);
    expect(report.vacancies).toEqual([
      expect.objectContaining({ grouping: 0, ms: BOUND - 100, backup: "n1" }),
    ]);
  });

  test("longer than the bound is a violation", () => {
    const { log } = vacancy(BOUND + 100);
    const report = check({ events: log.events, histories: [], vacancy: { ttlMs: TTL } });
    expect(rulesOf(report)).toEqual(["vacancy"]);
  });

  test("time in which the scenario impaired that backup, or etcd, is not counted; another node's is", () => {
    const { log, from } = vacancy(BOUND + 1_000);
    const impaired = (node?: string) => [{ from: from + 100, to: from + 1_600, node, what: "cut" }];
    const judge = (node?: string) =>
      rulesOf(
        check({ events: log.events, histories: [], vacancy: { ttlMs: TTL }, impairments: impaired(node) }),
      );
    expect(judge("n1")).toEqual([]);
    expect(judge(undefined)).toEqual([]);
    expect(judge("n0")).toEqual(["vacancy"]);
  });

  test("still vacant when the harness began stopping: measured to then; vacancies after it are not judged", () => {
    const log = new EtcdLog();
    log.join(0, "10");
    log.join(1, "11");
    log.txn({ put: PRIMARY, value: node(0), lease: "10" });
    log.txn({ put: BACKUP, value: node(1), lease: "11" });
    const from = log.now;
    log.txn({ del: PRIMARY });
    const late = (endedAt: number) =>
      check({ events: log.events, histories: [], vacancy: { ttlMs: TTL }, endedAt });
    expect(rulesOf(late(from + BOUND + 500))).toEqual(["vacancy"]);
    expect(rulesOf(late(from + BOUND - 500))).toEqual([]);
    expect(late(from - 5).vacancies).toEqual([]);
  });
});

describe("two nodes acting as primary at once", () => {
  /** A record at `ms` on the shared monotonic clock, with `deadlineMs` left. */
  const at = (ms: number, deadlineMs: number, r: HistoryRecord): HistoryRecord => ({
    ...r,
    mono: String(BigInt(ms) * 1_000_000n),
    t: ms,
    deadlineMs,
  });
  const become = (name: string, id: number, role: string, ms: number, deadlineMs: number) =>
    at(
      ms,
      deadlineMs,
      record(name, `${id}`, { kind: "transition", from: "x", to: "y", role, id, event: "E" }),
    );
  const write = (name: string, ms: number, deadlineMs: number) =>
    at(ms, deadlineMs, leader(name, "0", { action: "write", slot: 1, token: 1, outcome: "refused" }));

  test("a node acts until it leaves primary or its deadline passes, whichever first", () => {
    const histories = [
      become("a", 0, "primary", 1_000, 1_500),
      become("a", 0, "follower", 5_000, 1_500),
      become("b", 1, "primary", 3_000, 1_500),
    ];
    expect(check({ events: [], histories }).violations).toEqual([]);
  });

  test("a primary whose deadline has not passed when another enters", () => {
    const histories = [
      become("a", 0, "primary", 1_000, 1_500),
      become("b", 1, "primary", 2_000, 1_500),
      become("a", 0, "follower", 5_000, 0),
    ];
    expect(check({ events: [], histories }).violations).toEqual([
      expect.objectContaining({ rule: "overlap", message: expect.stringContaining("a and b both acted") }),
    ]);
  });

  test("a node killed while primary stops acting when it is killed", () => {
    const histories = [become("a", 0, "primary", 1_000, 1_500), become("b", 1, "primary", 1_300, 1_500)];
    const killed = (killedAtMs?: number) =>
      rulesOf(
        check({
          events: [],
          histories,
          processes: [
            { name: "a", killed: true, killedAtMs, stopped: false, exit: { code: null, signal: "SIGKILL" } },
          ],
        }),
      );
    expect(killed(1_200)).toEqual([]);
    expect(killed(undefined)).toEqual(["overlap"]);
  });

  test("a deadline extended while primary (a later record) counts; other groupings do not", () => {
    const extended = [
      become("a", 0, "primary", 1_000, 1_500),
      write("a", 2_200, 1_500),
      become("b", 1, "primary", 3_000, 1_500),
    ];
    expect(rulesOf(check({ events: [], histories: extended }))).toEqual(["overlap"]);
    const twoGroupings = new ClusterLayout({ ...FAULT_CONFIG, groups: 6 });
    const elsewhere = [become("a", 0, "primary", 1_000, 9_000), become("c", 9, "primary", 2_000, 9_000)];
    expect(checkHistory({ layout: twoGroupings, events: [], histories: elsewhere }).violations).toEqual([]);
  });
});

describe("a full cluster that nobody leads (every member died at once, no state directories)", () => {
  const capacity = FAULT_LAYOUT.capacity;
  const newcomer = (id: number) => JSON.stringify({ id, name: `new${id}`, address: "h:1" });

  /**
   * Every ID handed out and held, node 0 primary; every member dies at once (their leases expire),
   * the primary key with them unless `primaryLives`. `newcomersOpenedAt` is the wall time at which
   * the newcomers' sessions opened (their first history record), relative to the observer's clock.
   */
  function powerCut({ primaryLives = false, full = true } = {}) {
    const log = new EtcdLog();
    const ids = [...Array(full ? capacity : capacity - 1).keys()];
    for (const id of ids) log.join(id, `${10 + id}`);
    const token = log.txn({ put: PRIMARY, value: node(0), lease: "10" });
    const sessionsOpenedAt = log.now; // the newcomers booted while the old leases still lived
    log.txn(...ids.filter((id) => !primaryLives || id !== 0).map((id) => ({ del: member(id) })));
    if (!primaryLives) log.txn({ del: PRIMARY });
    return { log, token, sessionsOpenedAt };
  }

  /** A newcomer's history: its session opened at `openedAt`, then it recorded `id` as a fresh ID. */
  function freshClaim(id: number, lease: string, openedAt: number, joinedVia = "fresh"): HistoryRecord[] {
    const name = `new${id}`;
    return [
      {
        ...record(name, lease, { kind: "transition", from: "connecting", to: "bootstrapping" }),
        t: openedAt,
      },
      {
        ...record(name, lease, { kind: "identity", id, group: FAULT_LAYOUT.nodeGroup(id), joinedVia }),
        t: openedAt + 1_000,
      },
    ];
  }

  const slotMessages = (log: EtcdLog, histories: HistoryRecord[]) =>
    checkHistory({ layout: FAULT_LAYOUT, events: log.events, histories }).violations.map(
      (v) => `${v.rule}: ${v.message}`,
    );

  test("a newcomer claiming a free slot itself (no advertisement: nobody leads) passes, and the dead slot needs no advertisement", () => {
    const { log, sessionsOpenedAt } = powerCut();
    log.txn({ put: member(0), value: newcomer(0), lease: "50" });
    log.txn({ put: member(1), value: newcomer(1), lease: "51" });
    const histories = [...freshClaim(0, "50", sessionsOpenedAt), ...freshClaim(1, "51", sessionsOpenedAt)];
    // Nothing about slots 0 and 1; the slots nobody claimed are still deaths no one advertised.
    expect(slotMessages(log, histories)).toEqual(
      [2, 3, 4, 5, 6, 7, 8].map((id) => expect.stringContaining(`slot ${id} expired`)),
    );
  });

  const reused = [expect.stringContaining("ID 1 reused without claiming its advertisement")];

  test("a poisoned leader key (no lease) leads nobody: the claim beside it passes; one bound to a lease does not", () => {
    // The poisoned key is there before the power cut and stays after it.
    const poisoned = (lease?: string) => {
      const log = new EtcdLog();
      const ids = [...Array(capacity).keys()];
      for (const id of ids) log.join(id, `${10 + id}`);
      log.txn({ put: PRIMARY, value: node(0), lease: "10" });
      log.txn({ put: BACKUP, value: "not a node record", ...(lease === undefined ? {} : { lease }) });
      const sessionsOpenedAt = log.now;
      log.txn(...ids.map((id) => ({ del: member(id) })));
      log.txn({ del: PRIMARY });
      log.txn({ put: member(1), value: newcomer(1), lease: "51" });
      return slotMessages(log, freshClaim(1, "51", sessionsOpenedAt));
    };
    expect(poisoned()).not.toContainEqual(expect.stringContaining("ID 1 reused"));
    expect(poisoned("77")).toEqual(expect.arrayContaining(reused));
  });

  test("the same claim while a leader key lives stays a violation", () => {
    const { log, sessionsOpenedAt } = powerCut({ primaryLives: true });
    log.txn({ put: member(1), value: newcomer(1), lease: "51" });
    expect(slotMessages(log, freshClaim(1, "51", sessionsOpenedAt))).toEqual(expect.arrayContaining(reused));
  });

  test("the same claim in a cluster that is not full (a ticket would do) stays a violation", () => {
    const { log, sessionsOpenedAt } = powerCut({ full: false });
    log.txn({ put: member(1), value: newcomer(1), lease: "51" });
    expect(slotMessages(log, freshClaim(1, "51", sessionsOpenedAt))).toEqual(expect.arrayContaining(reused));
  });

  test("the same claim by a node whose session opened after the leaderless span ended stays a violation", () => {
    // Nobody led for a while, then a newcomer campaigned; a node that booted after that read a led cluster.
    const { log, sessionsOpenedAt } = powerCut();
    log.txn({ put: member(0), value: newcomer(0), lease: "50" });
    log.txn({ put: PRIMARY, value: newcomer(0), lease: "50" });
    const bootedAfter = log.now + 100;
    log.wait(200);
    log.txn({ put: member(1), value: newcomer(1), lease: "51" });
    const messages = slotMessages(log, [
      ...freshClaim(0, "50", sessionsOpenedAt),
      ...freshClaim(1, "51", bootedAfter),
    ]);
    expect(messages).toEqual(expect.arrayContaining(reused));
    expect(messages).not.toContainEqual(expect.stringContaining("ID 0 reused"));
  });

  test("the same claim without a fresh identity in the node's history stays a violation", () => {
    const { log, sessionsOpenedAt } = powerCut();
    log.txn({ put: member(1), value: newcomer(1), lease: "51" });
    expect(slotMessages(log, freshClaim(1, "51", sessionsOpenedAt, "advertised"))).toEqual(
      expect.arrayContaining(reused),
    );
  });

  test("two newcomers holding one ID stays a violation: the key moved to another lease while live, and two nodes claim it", () => {
    const { log, sessionsOpenedAt } = powerCut();
    log.txn({ put: member(0), value: newcomer(0), lease: "50" });
    log.txn({ put: member(0), value: newcomer(0), lease: "51" });
    const histories = [
      ...freshClaim(0, "50", sessionsOpenedAt),
      ...freshClaim(0, "51", sessionsOpenedAt),
    ].map((r, i) => (i >= 2 ? ({ ...r, node: "intruder" } as HistoryRecord) : r));
    expect(slotMessages(log, histories)).toEqual(
      expect.arrayContaining([
        expect.stringContaining("ids: member key of ID 0 moved from lease 50 to 51 while live"),
      ]),
    );
  });
});
