import { assign, setup } from "xstate";

/** Faults and changes a cluster can go through, as the model names them. */
export type ClusterModelEvent =
  | { type: "PRIMARY_CRASHES" }
  | { type: "BACKUP_CRASHES" }
  | { type: "PRIMARY_STOPS" }
  | { type: "PRIMARY_PAUSES_PAST_TTL" }
  | { type: "NEW_NODE_JOINS" }
  | { type: "ETCD_MEMBER_DIES" }
  | { type: "ETCD_MEMBER_RESTARTS" };

export const CLUSTER_MODEL_EVENTS: ClusterModelEvent[] = [
  { type: "PRIMARY_CRASHES" },
  { type: "BACKUP_CRASHES" },
  { type: "PRIMARY_STOPS" },
  { type: "PRIMARY_PAUSES_PAST_TTL" },
  { type: "NEW_NODE_JOINS" },
  { type: "ETCD_MEMBER_DIES" },
  { type: "ETCD_MEMBER_RESTARTS" },
];

export const MIN_LIVE = 2;
export const MAX_LIVE = 5;

export interface ClusterModelContext {
  /** Live nodes of the one grouping. */
  live: number;
  /** Members of the three-member etcd that are down. */
  etcdDown: number;
  /** Who the model expects to be primary after the last event, relative to before it. */
  primaryAfter: "unchanged" | "formerBackup";
}

/**
 * A cluster of one grouping on a three-member etcd, at the level of faults. Its paths are run
 * against real nodes and a real etcd (clusterFailover.test.ts); the context says what to expect.
 */
export const clusterModel = setup({
  types: { context: {} as ClusterModelContext, events: {} as ClusterModelEvent },
  guards: {
    canLoseNode: ({ context }) => context.live > MIN_LIVE,
    canAddNode: ({ context }) => context.live < MAX_LIVE,
    etcdWhole: ({ context }) => context.etcdDown === 0,
    etcdDegraded: ({ context }) => context.etcdDown > 0,
  },
}).createMachine({
  id: "cluster",
  context: { live: 3, etcdDown: 0, primaryAfter: "unchanged" },
  initial: "running",
  states: {
    running: {
      on: {
        PRIMARY_CRASHES: {
          guard: "canLoseNode",
          actions: assign({ live: ({ context }) => context.live - 1, primaryAfter: "formerBackup" }),
        },
        PRIMARY_STOPS: {
          guard: "canLoseNode",
          actions: assign({ live: ({ context }) => context.live - 1, primaryAfter: "formerBackup" }),
        },
        BACKUP_CRASHES: {
          guard: "canLoseNode",
          actions: assign({ live: ({ context }) => context.live - 1, primaryAfter: "unchanged" }),
        },
        PRIMARY_PAUSES_PAST_TTL: { actions: assign({ primaryAfter: "formerBackup" }) },
        NEW_NODE_JOINS: {
          guard: "canAddNode",
          actions: assign({ live: ({ context }) => context.live + 1, primaryAfter: "unchanged" }),
        },
        ETCD_MEMBER_DIES: {
          guard: "etcdWhole",
          actions: assign({ etcdDown: 1, primaryAfter: "unchanged" }),
        },
        ETCD_MEMBER_RESTARTS: {
          guard: "etcdDegraded",
          actions: assign({ etcdDown: 0, primaryAfter: "unchanged" }),
        },
      },
    },
  },
});
