/** The two failover spans of the example server's metrics, on a clock the test moves (no etcd needed). */
import { describe, expect, test } from "vitest";
import type { LeadersSnapshot, LeaderView, NodeStatus } from "../../src/runtime/index.js";
import { FaultToNewPrimaryTimer, PrimaryKeyGapTimer } from "../../src/server/failoverTimers.js";

function clock() {
  let ms = 0;
  return {
    now: () => ms,
    at: (t: number) => {
      ms = t;
    },
  };
}

const seat = (token: number): LeaderView => ({ token, modRevision: token, lease: "1" });
const withPrimary = (token: number): LeadersSnapshot => ({ revision: token, primary: seat(token) });
const vacant: LeadersSnapshot = { revision: 0 };
const status = (role: NodeStatus["role"], token?: number): NodeStatus => ({
  name: "n",
  role,
  state: role,
  fence: token === undefined ? undefined : { grouping: 0, seat: 1, token },
});

describe("PrimaryKeyGapTimer", () => {
  test("spans the first view without the primary key to the first view with one, once", () => {
    const c = clock();
    const gap = new PrimaryKeyGapTimer(c.now);
    expect(gap.onLeaders(vacant), "no primary seen yet: no gap").toBeUndefined();
    expect(gap.onLeaders(withPrimary(5))).toBeUndefined();
    c.at(1_000);
    gap.onLeaders(vacant);
    c.at(1_500);
    expect(gap.onLeaders(vacant), "a later view of the same gap does not restart it").toBeUndefined();
    c.at(3_000);
    expect(gap.onLeaders(withPrimary(9))).toBe(2);
    c.at(4_000);
    expect(gap.onLeaders(withPrimary(9)), "closed once").toBeUndefined();
  });
});

describe("FaultToNewPrimaryTimer", () => {
  test("from the key going in the view to a primary with another token, not the same one", () => {
    const c = clock();
    const timer = new FaultToNewPrimaryTimer(c.now);
    timer.onLeaders(withPrimary(5));
    c.at(1_000);
    timer.onLeaders(vacant);
    c.at(1_200);
    expect(timer.onLeaders(withPrimary(5)), "the failed primary's own key, seen late").toBeUndefined();
    c.at(2_500);
    expect(timer.onLeaders(withPrimary(9))).toBe(1.5);
  });

  test("from this primary leaving its role (lease past the local deadline) to becoming primary again under a new token", () => {
    const c = clock();
    const timer = new FaultToNewPrimaryTimer(c.now);
    timer.onStatus(status("primary", 5));
    c.at(1_000);
    timer.onStatus(status("suspended"));
    c.at(1_800);
    timer.onLeaders(vacant);
    c.at(4_000);
    expect(timer.onStatus(status("primary", 9)), "from the first sign, the suspension").toBe(3);
  });

  test("a graceful stop is not a fault", () => {
    const c = clock();
    const timer = new FaultToNewPrimaryTimer(c.now);
    timer.onStatus(status("primary", 5));
    c.at(1_000);
    timer.onStatus(status("stopping"));
    c.at(2_000);
    expect(timer.onLeaders(withPrimary(9))).toBeUndefined();
  });
});
