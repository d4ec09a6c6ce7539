import type { ClusterConfig } from "./clusterConfig.js";

/** Leader slot of a grouping: 1 is the primary, 2 the backup. */
export type LeaderSlot = 1 | 2;
export const LEADER_SLOTS: readonly LeaderSlot[] = [1, 2];

/** Prefixes of the key names derived from `dbname`; a configured `id_key` or failover prefix must not start with one. */
export function reservedKeyPrefixes(db: string): string[] {
  return [leadersPrefixOf(db), electionsPrefixOf(db), membersPrefixOf(db)];
}

const leadersPrefixOf = (db: string) => `leader-${db}-group-`;
const electionsPrefixOf = (db: string) => `election-${db}-group-`;
const membersPrefixOf = (db: string) => `member-${db}-group-`;

/**
 * The one place that formats etcd key names. Names follow the seed so that
 * `etcdctl get --prefix` reads naturally; every prefix that holds several keys
 * ends in "/" so that group 1's prefix never matches group 10's keys.
 */
export class KeySpace {
  readonly db: string;
  /** Holds the next fresh node ID, as a decimal string. */
  readonly idKey: string;
  /** Advertised failed slots live under this prefix, one key per node ID. */
  readonly failoverPrefix: string;

  constructor(config: Pick<ClusterConfig, "dbname" | "id_key" | "failover_id_key_prefix">) {
    this.db = config.dbname;
    this.idKey = config.id_key;
    this.failoverPrefix = `${config.failover_id_key_prefix}/`;
  }

  /**
   * Reserved for candidate records of grouping `k`'s election for `slot`. A campaign is one
   * transaction on the leader key, so no candidate queue is written here (see DESIGN.md).
   */
  electionPrefix(grouping: number, slot: LeaderSlot): string {
    return `${electionsPrefixOf(this.db)}${grouping}-leader-${slot}/`;
  }

  /** The key a grouping's leader holds, bound to its lease; its create revision is the fencing token. */
  leaderKey(grouping: number, slot: LeaderSlot): string {
    return `${this.leaderPrefix(grouping)}${slot}`;
  }

  /** Both leader keys of grouping `k` start with this (and no other grouping's do). */
  leaderPrefix(grouping: number): string {
    return `${leadersPrefixOf(this.db)}${grouping}-`;
  }

  membershipPrefix(group: number): string {
    return `${membersPrefixOf(this.db)}${group}/`;
  }

  memberKey(group: number, nodeId: number): string {
    return `${this.membershipPrefix(group)}${nodeId}`;
  }

  /** Where the example server commits a value written by grouping `k`'s primary (see src/server). */
  commitRecordKey(grouping: number, key: string): string {
    return `kv-${this.db}-grouping-${grouping}/${key}`;
  }

  failoverKey(nodeId: number): string {
    return `${this.failoverPrefix}${nodeId}`;
  }

  /** Every grouping's leader keys start with this. */
  get allLeadersPrefix(): string {
    return leadersPrefixOf(this.db);
  }

  /** Every group's member keys start with this. */
  get allMembersPrefix(): string {
    return membersPrefixOf(this.db);
  }

  /** The grouping and seat a leader key names, or undefined when the key is not a leader key. */
  leaderSeatOf(key: string): { grouping: number; slot: LeaderSlot } | undefined {
    const match = /^(0|[1-9]\d{0,8})-([12])$/.exec(key.slice(this.allLeadersPrefix.length));
    if (!key.startsWith(this.allLeadersPrefix) || !match) return undefined;
    return { grouping: Number(match[1]), slot: match[2] === "1" ? 1 : 2 };
  }

  /** The node ID at the end of a member or failover key, or undefined when the key is not one. */
  nodeIdOf(key: string, prefix: string): number | undefined {
    if (!key.startsWith(prefix)) return undefined;
    const rest = key.slice(prefix.length);
    if (!/^(0|[1-9]\d{0,8})$/.test(rest)) return undefined;
    return Number(rest);
  }
}
