/**
 * Upper and lower bounds on every size and duration a cluster or a node is configured with.
 * README "Configuration reference" gives the reason for each one.
 */

/** Groups in a cluster: `status` and `layout` print one line per group, and each has a member prefix. */
export const MAX_GROUPS = 10_000;
/** Node IDs per group: a group's slots are listed as an array (`slotsOf`), a grouping's as reads × group_size. */
export const MAX_GROUP_SIZE = 1_000;
/** Groups per grouping: every member of a grouping keeps one watch per group of it. */
export const MAX_READS = 100;
/** Node IDs in a cluster (groups × group_size). */
export const MAX_CAPACITY = 1_000_000;

/** etcd raises a shorter TTL to about 2 s (its minimum is derived from the election timeout). */
export const MIN_LEASE_TTL_SECONDS = 2;
/**
 * One hour: a crashed primary is replaced only after its lease expires, so a longer TTL buys
 * nothing; and it keeps every keepalive interval and deadline (at most the TTL) about 600 times
 * below Node's timer limit of 2^31 - 1 ms (24.8 days), past which setTimeout fires at once.
 */
export const MAX_LEASE_TTL_SECONDS = 3_600;
/** Ten keepalives a second per node at most: a shorter interval only loads etcd. */
export const MIN_KEEPALIVE_INTERVAL_MS = 100;

const formatted = (n: number) => n.toLocaleString("en-US");

/** What is wrong with `seconds` as a lease TTL ("must be ..."), or undefined when nothing is. */
export function leaseTtlProblem(seconds: number): string | undefined {
  if (seconds > MAX_LEASE_TTL_SECONDS)
    return `must be at most ${formatted(MAX_LEASE_TTL_SECONDS)} s (one hour)`;
  if (!Number.isInteger(seconds)) return "must be a whole number of seconds";
  if (seconds < MIN_LEASE_TTL_SECONDS)
    return `must be at least ${MIN_LEASE_TTL_SECONDS} s (etcd raises shorter TTLs)`;
  return undefined;
}

/** What is wrong with `ms` as the keepalive interval of a lease of `ttlSeconds`, or undefined. */
export function keepaliveIntervalProblem(ms: number, ttlSeconds: number): string | undefined {
  if (ms >= ttlSeconds * 1000) return `must be below the lease TTL (${ttlSeconds} s)`;
  if (!Number.isInteger(ms)) return "must be a whole number of milliseconds";
  if (ms < MIN_KEEPALIVE_INTERVAL_MS) return `must be at least ${MIN_KEEPALIVE_INTERVAL_MS / 1000} s`;
  return undefined;
}

/** The size limits of a cluster config, by field, for the schema and the README. */
export const CONFIG_SIZE_LIMITS = {
  groups: MAX_GROUPS,
  group_size: MAX_GROUP_SIZE,
  reads: MAX_READS,
} as const;

/** Why `groups` × `group_size` is too many node IDs, or undefined when it is not. */
export function capacityProblem(groups: number, groupSize: number): string | undefined {
  const capacity = groups * groupSize;
  if (capacity <= MAX_CAPACITY) return undefined;
  return `must be at most ${formatted(MAX_CAPACITY)} node IDs, got ${formatted(capacity)}`;
}
