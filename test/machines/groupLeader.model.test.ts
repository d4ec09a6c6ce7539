import { describe, expect, it } from "vitest";
import { type AnyActorRef, type AnyMachineSnapshot, type AnyStateMachine, createActor, setup } from "xstate";
import type { Office } from "../../machines/events.js";
import { failoverAdvertiserMachine } from "../../machines/failoverAdvertiser.js";
import { type GroupLeaderEvent, groupLeaderMachine } from "../../machines/groupLeader.js";
import { describeModel, type HostOptions, parentEffect, recording, type Subject } from "./runner.js";
import { failoverAdvertiserTable } from "./specs/failoverAdvertiser.js";
import { groupLeaderEvents, groupLeaderKey, groupLeaderTable } from "./specs/groupLeader.js";
import { EffectLog, effect } from "./support.js";

/** The real group leader with every effect recorded, advertiser included. */
function recordingLeader(log: EffectLog) {
  return recording(groupLeaderMachine, groupLeaderTable, log).provide({
    actors: { failoverAdvertiser: recording(failoverAdvertiserMachine, failoverAdvertiserTable, log) },
  });
}

const hosts = new WeakMap<AnyStateMachine, AnyStateMachine>();

/**
 * The leader run as the child of a parent that records what it is sent, so that the real
 * `reportOffice` (a sendParent) is what the spec checks; `parentEffect` names what it records.
 */
function hostFor(leader: AnyStateMachine, log: EffectLog): AnyStateMachine {
  const known = hosts.get(leader);
  if (known) return known;
  const host = setup({
    types: { input: {} as Office, context: {} as { office: Office } },
    actors: { leader },
  }).createMachine({
    id: "parent",
    context: ({ input }) => ({ office: input }),
    invoke: {
      id: "leader",
      src: "leader",
      input: ({ context }: { context: { office: Office } }) => context.office,
    },
    on: {
      "*": {
        actions: ({ event }) => {
          if (!event.type.startsWith("xstate.")) log.all.push(parentEffect(event));
        },
      },
    },
  });
  hosts.set(leader, host);
  return host;
}

function hosted(leader: AnyStateMachine, log: EffectLog, options: HostOptions): Subject {
  const actor = createActor(hostFor(leader, log), options).start();
  const child = () => actor.getSnapshot().children.leader as AnyActorRef;
  return {
    send: (event) => child().send(event),
    snapshot: () => child().getSnapshot() as AnyMachineSnapshot,
    persist: () => actor.getPersistedSnapshot(),
    stop: () => actor.stop(),
  };
}

describeModel({
  title: "groupLeader",
  table: groupLeaderTable,
  machines: [groupLeaderMachine, failoverAdvertiserMachine],
  inputs: [
    { seat: 1, token: 10 },
    { seat: 2, token: 20 },
  ],
  events: groupLeaderEvents,
  key: groupLeaderKey,
  machine: recordingLeader,
  host: (leader, options, log) => hosted(leader, log, options),
});

describe("groupLeader", () => {
  // When the primary crashes, its leader key and member key go in the same revision (one lease),
  // so the backup sees MEMBERS_CHANGED [old primary's ID] before its promotion completes, and the
  // runtime's missing-seat stream does not repeat it. The advertiser therefore asks for the
  // current set on start (readMissingSlots), and the runtime answers.
  it("a promoted backup asks for the slots that went missing before, and advertises them", () => {
    const log = new EffectLog();
    const leader = hosted(recordingLeader(log), log, {
      inspect: () => {},
      input: { seat: 2, token: 20 },
      snapshot: undefined,
    });
    const send = (event: GroupLeaderEvent) => leader.send(event);
    send({ type: "MEMBERS_CHANGED", missing: [0] });
    send({ type: "LEADERS_CHANGED", backup: { nodeId: 3, token: 20, mine: true } });
    send({ type: "PROMOTED", token: 31 });
    const advertiser = () => log.all.filter((e) => e.machine === "failoverAdvertiser");
    expect(advertiser()).toEqual([effect("failoverAdvertiser", "readMissingSlots")]);
    send({ type: "MEMBERS_CHANGED", missing: [0] });
    expect(advertiser()).toEqual([
      effect("failoverAdvertiser", "readMissingSlots"),
      effect("failoverAdvertiser", "advertiseSlots", { ids: [0] }),
    ]);
    leader.stop();
  });
});
