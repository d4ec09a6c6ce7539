import { describe, expect, it } from "vitest";
import { type Actor, createActor } from "xstate";
import type { SeatHolder } from "../../machines/events.js";
import { type NodeEvent, nodeMachine } from "../../machines/node.js";
import { ClusterLayout } from "../../src/config/index.js";
import { silentLogger } from "../../src/logging.js";
import { type HistoryRecord, HistoryRecorder } from "../../src/runtime/history.js";
import { StatusProjection } from "../../src/runtime/nodeStatus.js";
import { SEED_CONFIG } from "../support/clusterNodes.js";

const layout = new ClusterLayout(SEED_CONFIG);
const mine = (token: number): SeatHolder => ({ nodeId: 7, token, mine: true });
const other = (token: number): SeatHolder => ({ nodeId: 8, token, mine: false });

/** The real node machine (effects left as no-ops) followed by a status projection, no etcd. */
function projectedNode() {
  const history: HistoryRecord[] = [];
  const recorder = new HistoryRecorder(
    "n",
    (r) => history.push(r),
    () => undefined,
  );
  let actor: Actor<typeof nodeMachine> | undefined;
  const projection = new StatusProjection("n", layout, silentLogger(), recorder, () => {
    if (!actor) throw new Error("not started");
    return actor.getSnapshot();
  });
  actor = createActor(nodeMachine, { inspect: projection.inspect });
  actor.start();
  const started = actor;
  return { projection, history, send: (event: NodeEvent) => started.send(event), stop: () => started.stop() };
}

describe("a node's status, a projection of its machine's snapshot", () => {
  it("role and fencing token change together, in the step that changes the office", () => {
    const { projection, history, send, stop } = projectedNode();
    const seen: string[] = [];
    projection.status$.subscribe(({ role, fence }) => seen.push(`${role} ${fence?.seat}/${fence?.token}`));
    send({ type: "SESSION_OPENED", leaseId: "lease-1" });
    send({ type: "SLOT_CLAIMED", id: 7 });
    send({ type: "LEADERS_CHANGED", primary: other(10), backup: mine(22) });
    expect(projection.status).toMatchObject({ role: "backup", fence: { grouping: 0, seat: 2, token: 22 } });

    // The primary key goes: the backup's promotion is in flight, so it is neither backup nor primary.
    send({ type: "LEADERS_CHANGED", backup: mine(22) });
    expect(projection.status).toMatchObject({ role: "candidate", state: "member.leader" });

    send({ type: "PROMOTED", token: 31 });
    expect(projection.status).toMatchObject({ role: "primary", fence: { grouping: 0, seat: 1, token: 31 } });

    send({ type: "LEADERS_CHANGED", primary: other(40) });
    expect(projection.status.role).toBe("follower");
    expect(projection.status.fence).toBeUndefined();

    // Every status emitted on the way, not only the last of each step.
    expect(seen.filter((s) => /^(primary|backup|candidate)/.test(s))).toEqual([
      "backup 2/22",
      "candidate 2/22",
      "primary 1/31",
    ]);
    const transitions = history.flatMap((r) => (r.kind === "transition" ? [`${r.role} on ${r.event}`] : []));
    expect(transitions.slice(-4)).toEqual([
      "backup on xstate.done.actor.role",
      "candidate on LEADERS_CHANGED",
      "primary on PROMOTED",
      "follower on xstate.done.actor.role",
    ]);
    stop();
  });

  it("records the identity before the node's first transition as a member, and again after a suspension", () => {
    const { history, send, stop } = projectedNode();
    send({ type: "SESSION_OPENED", leaseId: "lease-1" });
    send({ type: "SLOT_CLAIMED", id: 4 });
    send({ type: "SESSION_EXPIRED_LOCALLY" });
    send({ type: "SESSION_VALID" });
    const kinds = history.map((r) => (r.kind === "transition" ? r.to : r.kind));
    expect(kinds).toEqual([
      "connecting",
      "bootstrapping",
      "identity",
      "member.follower",
      "suspended",
      "identity",
      "member.follower",
    ]);
    stop();
  });
});
