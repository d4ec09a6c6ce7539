import { type ClusterConfig, parseClusterConfig } from "./clusterConfig.js";
import { KeySpace, LEADER_SEATS, type LeaderSeat } from "./keys.js";

/** The node IDs `first..last` (both included) of one group. */
export interface IdRange {
  first: number;
  last: number;
}

export interface LayoutOptions {
  /** Prefix of every key of the cluster, "" (none) or ending in "/": several clusters can share one etcd. */
  namespace?: string;
}

/**
 * Everything a node derives from the cluster config (the seed's `Config`), with the
 * seed's bugs fixed: the last grouping may be shorter and never names a missing group.
 * Every answer is arithmetic on the config: nothing here is sized by the capacity.
 */
export class ClusterLayout {
  readonly config: ClusterConfig;
  readonly keys: KeySpace;
  /** Number of node IDs: `groups * group_size`. */
  readonly capacity: number;
  /** Number of groupings: `ceil(groups / reads)`. */
  readonly groupingCount: number;
  private groupingsCache: readonly (readonly number[])[] | undefined;

  /** Checks the config against the schema and its bounds, and the namespace; a ConfigError names the field. */
  constructor(config: ClusterConfig, options: LayoutOptions = {}) {
    this.config = parseClusterConfig(config, "cluster config");
    this.keys = new KeySpace(this.config, options.namespace);
    this.capacity = this.config.groups * this.config.group_size;
    this.groupingCount = Math.ceil(this.config.groups / this.config.reads);
  }

  /** Groups `0..groups-1` cut into consecutive chunks of `reads` groups. */
  get groupings(): readonly (readonly number[])[] {
    this.groupingsCache ??= Array.from({ length: this.groupingCount }, (_, k) => this.groupsOf(k));
    return this.groupingsCache;
  }

  isNodeId(id: number): boolean {
    return Number.isInteger(id) && id >= 0 && id < this.capacity;
  }

  /** `floor(id / group_size)`; throws for an ID outside `0..capacity-1`. */
  nodeGroup(id: number): number {
    if (!this.isNodeId(id)) throw new RangeError(`node ID ${id} is outside 0..${this.capacity - 1}`);
    return Math.floor(id / this.config.group_size);
  }

  private checkGroup(group: number): void {
    if (!Number.isInteger(group) || group < 0 || group >= this.config.groups)
      throw new RangeError(`group ${group} is outside 0..${this.config.groups - 1}`);
  }

  private checkGrouping(grouping: number): void {
    if (!Number.isInteger(grouping) || grouping < 0 || grouping >= this.groupingCount)
      throw new RangeError(`grouping ${grouping} is outside 0..${this.groupingCount - 1}`);
  }

  groupingOf(group: number): number {
    this.checkGroup(group);
    return Math.floor(group / this.config.reads);
  }

  groupingOfNode(id: number): number {
    return this.groupingOf(this.nodeGroup(id));
  }

  /** The first and last node ID of `group`. */
  idRangeOf(group: number): IdRange {
    this.checkGroup(group);
    const size = this.config.group_size;
    return { first: group * size, last: (group + 1) * size - 1 };
  }

  /** The node IDs that belong to `group` (at most group_size of them). */
  slotsOf(group: number): number[] {
    const { first } = this.idRangeOf(group);
    return Array.from({ length: this.config.group_size }, (_, i) => first + i);
  }

  /** The groups of `grouping` (at most `reads` of them). */
  groupsOf(grouping: number): readonly number[] {
    this.checkGrouping(grouping);
    const first = grouping * this.config.reads;
    const last = Math.min(first + this.config.reads, this.config.groups);
    return Array.from({ length: last - first }, (_, i) => first + i);
  }

  leaderKeys(grouping: number): Record<LeaderSeat, string> {
    return { 1: this.keys.leaderKey(grouping, 1), 2: this.keys.leaderKey(grouping, 2) };
  }

  /**
   * A plain description, as printed by `rdeebee-cluster layout --json`: one entry per grouping
   * and per group, with ID ranges, never one per node ID.
   */
  describe() {
    const groupings = this.groupings;
    return {
      dbname: this.config.dbname,
      capacity: this.capacity,
      groupSize: this.config.group_size,
      groupings,
      groupGrouping: Object.fromEntries(groupings.flatMap((gs, k) => gs.map((g) => [g, k]))),
      groupNodeIds: Array.from({ length: this.config.groups }, (_, g) => this.idRangeOf(g)),
      electionPrefixes: groupings.map((_, k) => LEADER_SEATS.map((s) => this.keys.electionPrefix(k, s))),
      leaderKeys: groupings.map((_, k) => LEADER_SEATS.map((s) => this.keys.leaderKey(k, s))),
      membershipPrefixes: Array.from({ length: this.config.groups }, (_, g) => this.keys.membershipPrefix(g)),
      idKey: this.keys.idKey,
      failoverPrefix: this.keys.failoverPrefix,
    };
  }
}
