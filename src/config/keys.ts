import type { ClusterConfig } from "./clusterConfig.js";
import { ConfigError } from "./errors.js";

/**
 * A leader seat of a grouping: 1 the primary, 2 the backup. Not a *slot*, which is a node ID's
 * place in its group (a failed slot is advertised and claimed).
 */
export type LeaderSeat = 1 | 2;
export const LEADER_SEATS: readonly LeaderSeat[] = [1, 2];

/** Prefixes of the key names derived from `dbname`; a configured `id_key` or failover prefix must not start with one. */
export function reservedKeyPrefixes(db: string): string[] {
  return [
    leadersPrefixOf(db),
    electionsPrefixOf(db),
    membersPrefixOf(db),
    writeMarkersPrefixOf(db),
    commitRecordsPrefixOf(db),
  ];
}

const leadersPrefixOf = (db: string) => `leader-${db}-group-`;
const electionsPrefixOf = (db: string) => `election-${db}-group-`;
const membersPrefixOf = (db: string) => `member-${db}-group-`;
const writeMarkersPrefixOf = (db: string) => `fenced-write-${db}-grouping-`;
const commitRecordsPrefixOf = (db: string) => `kv-${db}-grouping-`;

/** One or more path segments, each ending in "/": "prod/", "team-a/prod/". */
const NAMESPACE = /^([\w.-]+\/)+$/;
const MAX_NAMESPACE_LENGTH = 128;

/**
 * What is wrong with `namespace` as the prefix of every key of a cluster ("must be ..."), or
 * undefined. It ends in "/" so that one cluster's keys never start with another's prefix
 * ("a/" never matches "ab/..."), and an etcd role's permission can cover exactly its range.
 */
export function namespaceProblem(namespace: string): string | undefined {
  if (namespace === "") return undefined;
  if (namespace.length > MAX_NAMESPACE_LENGTH)
    return `must be at most ${MAX_NAMESPACE_LENGTH} characters, got ${namespace.length}`;
  if (!NAMESPACE.test(namespace))
    return `must be empty or segments of letters, digits, '.', '_' or '-' each ending in "/" (e.g. "prod/"), got ${JSON.stringify(namespace)}`;
  return undefined;
}

/** A decimal number as this runtime writes it: no sign, no leading zero, at most nine digits. */
const DECIMAL = "(0|[1-9]\\d{0,8})";
const exactly = (pattern: string) => new RegExp(`^${pattern}$`);
const LEADER_REST = exactly(`${DECIMAL}-([12])`);
const MEMBER_REST = exactly(`${DECIMAL}/${DECIMAL}`);
const ID_REST = exactly(DECIMAL);
const GROUPING_REST = exactly(`${DECIMAL}/(.+)`);

/**
 * What a key's name says, before it is checked against a layout (see `classifyKey` in
 * `src/etcd/codec.ts`): the one grammar of the key names below.
 */
export type KeyName =
  | { kind: "idCounter" }
  | { kind: "leader"; grouping: number; seat: LeaderSeat }
  | { kind: "member"; group: number; id: number }
  | { kind: "failoverAd"; id: number }
  | { kind: "writeMarker"; grouping: number; marker: string }
  | { kind: "commitRecord"; grouping: number; key: string }
  | { kind: "unknown" };

/**
 * The one place that formats and parses etcd key names. Names follow the seed so that
 * `etcdctl get --prefix` reads naturally; every prefix that holds several keys
 * ends in "/" so that group 1's prefix never matches group 10's keys. Every key starts with the
 * namespace (default "", none), so that several clusters can share one etcd.
 */
export class KeySpace {
  readonly db: string;
  /** The prefix of every key of the cluster: "" or ends in "/". */
  readonly namespace: string;
  /** Holds the next fresh node ID, as a decimal string. */
  readonly idKey: string;
  /** Advertised failed slots live under this prefix, one key per node ID. */
  readonly failoverPrefix: string;

  /** Throws a ConfigError naming `namespace` when it is not a valid key prefix (see `namespaceProblem`). */
  constructor(config: Pick<ClusterConfig, "dbname" | "id_key" | "failover_id_key_prefix">, namespace = "") {
    const problem = namespaceProblem(namespace);
    if (problem !== undefined) throw new ConfigError("cluster layout", [`namespace: ${problem}`]);
    this.db = config.dbname;
    this.namespace = namespace;
    this.idKey = `${namespace}${config.id_key}`;
    this.failoverPrefix = `${namespace}${config.failover_id_key_prefix}/`;
  }

  /** Every key of the cluster starts with this: the namespace and the database name's families. */
  private derived(prefixOf: (db: string) => string): string {
    return `${this.namespace}${prefixOf(this.db)}`;
  }

  /**
   * Reserved for candidate records of grouping `k`'s election for `seat`. A campaign is one
   * transaction on the leader key, so no candidate queue is written here.
   */
  electionPrefix(grouping: number, seat: LeaderSeat): string {
    return `${this.derived(electionsPrefixOf)}${grouping}-leader-${seat}/`;
  }

  /** The key a grouping's leader holds, bound to its lease; its create revision is the fencing token. */
  leaderKey(grouping: number, seat: LeaderSeat): string {
    return `${this.leaderPrefix(grouping)}${seat}`;
  }

  /** Both leader keys of grouping `k` start with this (and no other grouping's do). */
  leaderPrefix(grouping: number): string {
    return `${this.derived(leadersPrefixOf)}${grouping}-`;
  }

  membershipPrefix(group: number): string {
    return `${this.derived(membersPrefixOf)}${group}/`;
  }

  memberKey(group: number, nodeId: number): string {
    return `${this.membershipPrefix(group)}${nodeId}`;
  }

  /** Where the example server commits a value written by grouping `k`'s primary (see src/server). */
  commitRecordKey(grouping: number, key: string): string {
    return `${this.derived(commitRecordsPrefixOf)}${grouping}/${key}`;
  }

  /** The outcome marker of one fenced write of grouping `k`'s leader (see `FencedWriter`). */
  writeMarkerKey(grouping: number, marker: string): string {
    return `${this.writeMarkerPrefix(grouping)}${marker}`;
  }

  /** Every outcome marker of grouping `k`'s fenced writes starts with this. */
  writeMarkerPrefix(grouping: number): string {
    return `${this.derived(writeMarkersPrefixOf)}${grouping}/`;
  }

  failoverKey(nodeId: number): string {
    return `${this.failoverPrefix}${nodeId}`;
  }

  /** Every grouping's leader keys start with this. */
  get allLeadersPrefix(): string {
    return this.derived(leadersPrefixOf);
  }

  /** Every group's member keys start with this. */
  get allMembersPrefix(): string {
    return this.derived(membersPrefixOf);
  }

  /**
   * What `key`'s name says; `unknown` for a name none of the formats above produces, which includes
   * every key outside the namespace (another cluster's): every format starts with the namespace.
   */
  parse(key: string): KeyName {
    if (key === this.idKey) return { kind: "idCounter" };
    const rest = (prefix: string) => (key.startsWith(prefix) ? key.slice(prefix.length) : undefined);
    const leader = LEADER_REST.exec(rest(this.allLeadersPrefix) ?? "");
    if (leader) return { kind: "leader", grouping: Number(leader[1]), seat: leader[2] === "1" ? 1 : 2 };
    const member = MEMBER_REST.exec(rest(this.allMembersPrefix) ?? "");
    if (member) return { kind: "member", group: Number(member[1]), id: Number(member[2]) };
    const ad = ID_REST.exec(rest(this.failoverPrefix) ?? "");
    if (ad) return { kind: "failoverAd", id: Number(ad[1]) };
    const marker = GROUPING_REST.exec(rest(this.derived(writeMarkersPrefixOf)) ?? "");
    if (marker) return { kind: "writeMarker", grouping: Number(marker[1]), marker: marker[2] ?? "" };
    const record = GROUPING_REST.exec(rest(this.derived(commitRecordsPrefixOf)) ?? "");
    if (record) return { kind: "commitRecord", grouping: Number(record[1]), key: record[2] ?? "" };
    return { kind: "unknown" };
  }
}
