import { describe, expect, it } from "vitest";
import { createActor } from "xstate";
import { bootstrapIdMachine } from "../../machines/bootstrapId.js";
import { candidateMachine } from "../../machines/candidate.js";
import { failoverAdvertiserMachine } from "../../machines/failoverAdvertiser.js";
import { followerMachine } from "../../machines/follower.js";
import { groupLeaderMachine } from "../../machines/groupLeader.js";
import { type NodeEvent, nodeMachine } from "../../machines/node.js";
import { describeModel, recording } from "./runner.js";
import { bootstrapIdTable } from "./specs/bootstrapId.js";
import { candidateTable } from "./specs/candidate.js";
import { failoverAdvertiserTable } from "./specs/failoverAdvertiser.js";
import { followerTable } from "./specs/follower.js";
import { groupLeaderTable } from "./specs/groupLeader.js";
import { nodeEvents, nodeKey, nodeTable } from "./specs/node.js";
import { EffectLog, effect } from "./support.js";

/** The real node with its real children, every named effect of every machine recorded. */
function recordingNode(log: EffectLog) {
  return recording(nodeMachine, nodeTable, log).provide({
    actors: {
      bootstrapId: recording(bootstrapIdMachine, bootstrapIdTable, log),
      follower: recording(followerMachine, followerTable, log),
      candidate: recording(candidateMachine, candidateTable, log),
      // reportOffice stays the real sendParent: the node must receive OFFICE_CHANGED.
      groupLeader: recording(groupLeaderMachine, groupLeaderTable, log).provide({
        actors: { failoverAdvertiser: recording(failoverAdvertiserMachine, failoverAdvertiserTable, log) },
      }),
    },
  });
}

describeModel({
  title: "node",
  table: nodeTable,
  machines: [
    nodeMachine,
    bootstrapIdMachine,
    followerMachine,
    candidateMachine,
    groupLeaderMachine,
    failoverAdvertiserMachine,
  ],
  events: nodeEvents,
  key: nodeKey,
  // The node's context is compared whole; what its children keep is explored in their own suites.
  explore: "states",
  machine: recordingNode,
});

const mine = (token: number) => ({ nodeId: 3, token, mine: true });

function run(events: NodeEvent[]) {
  const log = new EffectLog();
  const actor = createActor(recordingNode(log)).start();
  for (const e of events) actor.send(e);
  return { log, actor };
}

describe("node", () => {
  // Found by the first model suite: `member`'s exit cleared the office before `stopping`'s entry
  // read it, so leaveCluster never got one and a leader never resigned its key on a graceful stop.
  it("a leader that stops gracefully hands its office to leaveCluster, to resign it", () => {
    const { log, actor } = run([
      { type: "SESSION_OPENED", leaseId: "lease-1" },
      { type: "SLOT_CLAIMED", id: 7 },
      { type: "LEADERS_CHANGED" },
      { type: "CAMPAIGN_WON", token: 21 },
      { type: "STOP" },
    ]);
    expect(log.all.filter((e) => e.name === "leaveCluster")).toEqual([
      effect("node", "leaveCluster", { id: 7, office: { seat: 1, token: 21 } }),
    ]);
    actor.stop();
  });

  // A follower that finds its backup key still its own resumes the backup office even when the
  // primary key is vacant: that vacancy was already seen and no new change may come. The backup
  // asks for the keys on taking office, and the runtime's answer promotes it.
  it("a node that resumes the backup office with the primary vacant re-reads the keys and promotes", () => {
    const { log, actor } = run([
      { type: "SESSION_OPENED", leaseId: "lease-1" },
      { type: "SLOT_CLAIMED", id: 7 },
      { type: "LEADERS_CHANGED", backup: mine(22) },
      { type: "LEADERS_CHANGED", backup: mine(22) },
      { type: "PROMOTED", token: 31 },
    ]);
    expect(log.all.filter((e) => e.machine === "groupLeader")).toEqual([
      effect("groupLeader", "readLeaders"),
      effect("groupLeader", "promote", { token: 22 }),
    ]);
    expect(actor.getSnapshot().context.office).toEqual({ seat: 1, token: 31 });
    actor.stop();
  });
});
