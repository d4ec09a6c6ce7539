import { createActor } from "xstate";
import { getPathsFromEvents, getShortestPaths } from "xstate/graph";
import { CLUSTER_MODEL_EVENTS, type ClusterModelEvent, clusterModel } from "./clusterModel.js";

/** The model's context after an event. */
export interface ExpectedAfterStep {
  /** Live nodes of the grouping. */
  live: number;
  /** Members of the three-member etcd that are down. */
  etcdDown: number;
  /** The primary after the step: the same node as before, or the node that was backup before. */
  primaryAfter: "unchanged" | "formerBackup";
}

/** How many live nodes hold each role once the cluster has settled after a step. */
export interface ExpectedRoles {
  primary: 1;
  backup: 0 | 1;
  follower: number;
}

/** One step of a path: the fault or change to apply, and what to expect once it settled. */
export interface FailoverStep {
  event: ClusterModelEvent["type"];
  expected: ExpectedAfterStep;
  roles: ExpectedRoles;
}

export interface ModelPath {
  name: string;
  events: ClusterModelEvent["type"][];
  /** The model's context after each event. */
  expected: ExpectedAfterStep[];
  /** The same path as steps, each with the roles expected after it. */
  steps: FailoverStep[];
}

/** A grouping of `live` nodes settles with one primary, a backup when there is a second node, the rest followers. */
export function expectedRoles(live: number): ExpectedRoles {
  return { primary: 1, backup: live >= 2 ? 1 : 0, follower: Math.max(0, live - 2) };
}

const serializeState = (s: { context: { live: number; etcdDown: number } }) =>
  JSON.stringify({ live: s.context.live, etcdDown: s.context.etcdDown });

function expectedAlong(events: ClusterModelEvent[]): ModelPath["expected"] {
  const actor = createActor(clusterModel).start();
  return events.map((event) => {
    actor.send(event);
    const { live, etcdDown, primaryAfter } = actor.getSnapshot().context;
    return { live, etcdDown, primaryAfter };
  });
}

/**
 * Failover paths generated from the cluster model, each a list of steps with the roles expected
 * after each. The paths to run: the shortest path to every model state (live nodes x etcd members down), then,
 * for every event no such path takes, the shortest path to a state where it is enabled plus that event.
 */
export function clusterModelPaths(): ModelPath[] {
  const shortest = getShortestPaths(clusterModel, { events: CLUSTER_MODEL_EVENTS, serializeState })
    .map(
      (p) =>
        p.steps
          .map((s) => s.event as { type: string })
          .filter((e) => e.type !== "xstate.init") as ClusterModelEvent[],
    )
    .filter((events) => events.length > 0)
    .sort((a, b) => a.length - b.length);
  const paths = [...shortest];
  for (const event of CLUSTER_MODEL_EVENTS) {
    if (paths.some((p) => p.some((e) => e.type === event.type))) continue;
    const prefix = [[], ...shortest].find((p) => {
      const actor = createActor(clusterModel).start();
      for (const e of p) actor.send(e);
      return actor.getSnapshot().can(event);
    });
    if (!prefix) throw new Error(`the model never enables ${event.type}`);
    const [path] = getPathsFromEvents(clusterModel, [...prefix, event], { serializeState });
    if (path) paths.push([...prefix, event]);
  }
  return paths.map((events) => {
    const expected = expectedAlong(events);
    return {
      name: events.map((e) => e.type).join(" -> "),
      events: events.map((e) => e.type),
      expected,
      steps: events.map((e, i) => {
        const after = expected[i] as ExpectedAfterStep;
        return { event: e.type, expected: after, roles: expectedRoles(after.live) };
      }),
    };
  });
}
