import { createActor } from "xstate";
import { getPathsFromEvents, getShortestPaths } from "xstate/graph";
import { CLUSTER_MODEL_EVENTS, type ClusterModelEvent, clusterModel } from "./clusterModel.js";

export interface ModelPath {
  name: string;
  events: ClusterModelEvent["type"][];
  /** The model's context after each event. */
  expected: { live: number; etcdDown: number; primaryAfter: "unchanged" | "formerBackup" }[];
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
 * The paths to run: the shortest path to every model state (live nodes x etcd members down), then,
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
  return paths.map((events) => ({
    name: events.map((e) => e.type).join(" -> "),
    events: events.map((e) => e.type),
    expected: expectedAlong(events),
  }));
}
