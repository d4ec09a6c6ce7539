/** Attack on the fault-to-new-primary metric, on a clock the test moves (no etcd needed). */
import { expect, test } from "vitest";
import type { LeadersSnapshot, NodeStatus } from "../../src/runtime/index.js";
import { FaultToNewPrimaryTimer } from "../../src/server/failoverTimers.js";

const withPrimary = (token: number): LeadersSnapshot => ({
  revision: token,
  primary: { token, modRevision: token, lease: "1" },
});
const status = (role: NodeStatus["role"], token?: number): NodeStatus => ({
  name: "n",
  role,
  state: role,
  fence: token === undefined ? undefined : { grouping: 0, seat: 1, token },
});

// Was: a primary suspended for a moment and back in office under the same token (its lease
// outlived the suspension) left its fault pending, so the next real failover, however much later,
// was measured from that old suspension.
test("a primary back in office under the same token ends its fault: a later failover is timed from its own start", () => {
  let ms = 0;
  const timer = new FaultToNewPrimaryTimer(() => ms);
  timer.onStatus(status("primary", 5));
  ms = 1_000;
  timer.onStatus(status("suspended"));
  ms = 1_200;
  expect(timer.onStatus(status("primary", 5)), "no new primary: nothing to time").toBeUndefined();
  ms = 100_000;
  timer.onStatus(status("suspended"));
  ms = 101_000;
  expect(timer.onLeaders(withPrimary(9))).toBe(1);
});
