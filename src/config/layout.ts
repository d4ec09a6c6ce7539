import type { ClusterConfig } from "./clusterConfig.js";
import { KeySpace, LEADER_SLOTS, type LeaderSlot } from "./keys.js";

/**
 * Everything a node derives from the cluster config (the seed's `Config`), with the
 * seed's bugs fixed: the last grouping may be shorter and never names a missing group.
 */
export class ClusterLayout {
  readonly keys: KeySpace;
  /** Groups `0..groups-1` cut into consecutive chunks of `reads` groups. */
  readonly groupings: readonly (readonly number[])[];
  /** Number of node IDs: `groups * group_size`. */
  readonly capacity: number;
  private readonly groupingOfGroup: readonly number[];

  constructor(readonly config: ClusterConfig) {
    this.keys = new KeySpace(config);
    this.capacity = config.groups * config.group_size;
    const groupings: number[][] = [];
    for (let first = 0; first < config.groups; first += config.reads) {
      const last = Math.min(first + config.reads, config.groups);
      groupings.push(Array.from({ length: last - first }, (_, i) => first + i));
    }
    this.groupings = groupings;
    this.groupingOfGroup = groupings.flatMap((members, k) => members.map(() => k));
  }

  isNodeId(id: number): boolean {
    return Number.isInteger(id) && id >= 0 && id < this.capacity;
  }

  /** `floor(id / group_size)`; throws for an ID outside `0..capacity-1`. */
  nodeGroup(id: number): number {
    if (!this.isNodeId(id)) throw new RangeError(`node ID ${id} is outside 0..${this.capacity - 1}`);
    return Math.floor(id / this.config.group_size);
  }

  groupingOf(group: number): number {
    const k = this.groupingOfGroup[group];
    if (k === undefined) throw new RangeError(`group ${group} is outside 0..${this.config.groups - 1}`);
    return k;
  }

  groupingOfNode(id: number): number {
    return this.groupingOf(this.nodeGroup(id));
  }

  /** The node IDs that belong to `group`. */
  slotsOf(group: number): number[] {
    const size = this.config.group_size;
    return Array.from({ length: size }, (_, i) => group * size + i);
  }

  groupsOf(grouping: number): readonly number[] {
    const groups = this.groupings[grouping];
    if (groups === undefined)
      throw new RangeError(`grouping ${grouping} is outside 0..${this.groupings.length - 1}`);
    return groups;
  }

  leaderKeys(grouping: number): Record<LeaderSlot, string> {
    return { 1: this.keys.leaderKey(grouping, 1), 2: this.keys.leaderKey(grouping, 2) };
  }

  /** A plain description, as printed by `rdeebee-cluster layout --json`. */
  describe() {
    const byGrouping = <T>(f: (k: number) => T) => this.groupings.map((_, k) => f(k));
    return {
      dbname: this.config.dbname,
      capacity: this.capacity,
      groupings: this.groupings,
      nodeGroup: Object.fromEntries(
        Array.from({ length: this.capacity }, (_, id) => [id, this.nodeGroup(id)]),
      ),
      groupGrouping: Object.fromEntries(this.groupings.flatMap((gs, k) => gs.map((g) => [g, k]))),
      electionPrefixes: byGrouping((k) => LEADER_SLOTS.map((s) => this.keys.electionPrefix(k, s))),
      leaderKeys: byGrouping((k) => LEADER_SLOTS.map((s) => this.keys.leaderKey(k, s))),
      membershipPrefixes: Array.from({ length: this.config.groups }, (_, g) => this.keys.membershipPrefix(g)),
      idKey: this.keys.idKey,
      failoverPrefix: this.keys.failoverPrefix,
    };
  }
}
