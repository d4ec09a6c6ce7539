/**
 * The one codec of the cluster's key space: what any key is (`classifyKey`), and for each family
 * of keys one policy that decodes its value or says why it is bad. Nothing found in etcd throws
 * here: a bad key or value is reported, and each caller decides whether to log, list or skip it.
 */
import { z } from "zod";
import type { ClusterLayout, LeaderSeat } from "../config/index.js";

/** Who a node is, as written into its member key and any leader key it holds. */
export const nodeRecordSchema = z.strictObject({
  id: z.number().int().nonnegative(),
  name: z.string().min(1).max(256),
  address: z.string().min(1).max(256),
});
export type NodeRecord = z.infer<typeof nodeRecordSchema>;

/** A failed slot advertised by a grouping's leader. */
export const failoverAdSchema = z.strictObject({
  id: z.number().int().nonnegative(),
  group: z.number().int().nonnegative(),
  advertisedBy: z.number().int().nonnegative(),
  token: z.number().int().positive(),
});
export type FailoverAd = z.infer<typeof failoverAdSchema>;

export type Decoded<T> = { ok: true; value: T } | { ok: false; problem: string };

const MAX_VALUE_BYTES = 64 * 1024;

/** Parses a value found in etcd; never throws, so a bad value can be logged and ignored. */
export function decodeValue<T>(schema: z.ZodType<T>, text: string): Decoded<T> {
  if (text.length > MAX_VALUE_BYTES)
    return { ok: false, problem: `value of ${text.length} bytes is too large` };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, problem: "value is not JSON" };
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return {
      ok: false,
      problem: `value has the wrong shape (${issue?.path.join(".") || "(root)"}: ${issue?.message})`,
    };
  }
  return { ok: true, value: parsed.data };
}

/** A key of this cluster, its name checked against the layout (the IDs, groups and groupings it has). */
export type ClusterKey =
  | { kind: "idCounter" }
  | { kind: "leader"; grouping: number; seat: LeaderSeat }
  | { kind: "member"; group: number; id: number }
  | { kind: "failoverAd"; id: number }
  | { kind: "writeMarker"; grouping: number }
  | { kind: "commitRecord"; grouping: number; key: string }
  /** A name of one of the families above that the layout has no place for, e.g. ID 7 under group 0. */
  | { kind: "outOfLayout"; family: "leader" | "member" | "failoverAd" | "writeMarker" | "commitRecord" }
  | { kind: "unknown" };

/** What `key` is in `layout`'s key space. */
export function classifyKey(layout: ClusterLayout, key: string): ClusterKey {
  const name = layout.keys.parse(key);
  const grouping = (k: number) => k < layout.groupingCount;
  switch (name.kind) {
    case "idCounter":
    case "unknown":
      return name;
    case "leader":
      return grouping(name.grouping) ? name : { kind: "outOfLayout", family: "leader" };
    case "member":
      return layout.isNodeId(name.id) && layout.nodeGroup(name.id) === name.group
        ? name
        : { kind: "outOfLayout", family: "member" };
    case "failoverAd":
      return layout.isNodeId(name.id) ? name : { kind: "outOfLayout", family: "failoverAd" };
    case "writeMarker":
      return grouping(name.grouping)
        ? { kind: "writeMarker", grouping: name.grouping }
        : { kind: "outOfLayout", family: "writeMarker" };
    case "commitRecord":
      return grouping(name.grouping) ? name : { kind: "outOfLayout", family: "commitRecord" };
  }
}

/**
 * The holder of grouping `grouping`'s leader key: a node record of that grouping, or why the value
 * is poisoned. The one rule for leader values, for the runtime, status, repair and metrics.
 */
export function decodeLeaderValue(
  layout: ClusterLayout,
  grouping: number,
  value: string,
): Decoded<NodeRecord> {
  const decoded = decodeValue(nodeRecordSchema, value);
  if (!decoded.ok) return decoded;
  const { id } = decoded.value;
  if (!layout.isNodeId(id) || layout.groupingOfNode(id) !== grouping)
    return { ok: false, problem: `names node ${id}, which is not in this grouping` };
  return decoded;
}

/** A member key and its value: the member's record, or why the key or the value is bad. */
export type DecodedMember =
  | { kind: "member"; group: number; record: NodeRecord }
  | { kind: "badKey" }
  | { kind: "badValue"; problem: string };

export function decodeMember(layout: ClusterLayout, key: string, value: string): DecodedMember {
  const name = classifyKey(layout, key);
  if (name.kind !== "member") return { kind: "badKey" };
  const decoded = decodeValue(nodeRecordSchema, value);
  if (!decoded.ok) return { kind: "badValue", problem: decoded.problem };
  if (decoded.value.id !== name.id) return { kind: "badValue", problem: "id differs from key" };
  return { kind: "member", group: name.group, record: decoded.value };
}

/**
 * An advertisement of a failed slot: the node ID its key names, undefined when the key does not
 * name a node ID of the layout (not a real advertisement), and its value or why it is bad (a bad
 * value does not stop a claim: the key says which slot).
 */
export function decodeFailoverAd(
  layout: ClusterLayout,
  key: string,
  value: string,
): { id: number; ad: Decoded<FailoverAd> } | undefined {
  const name = classifyKey(layout, key);
  if (name.kind !== "failoverAd") return undefined;
  return { id: name.id, ad: decodeValue(failoverAdSchema, value) };
}

/**
 * The decimal node-ID counter under `id_key`, as the runtime wrote it before tickets (and as an
 * operator may still write it): how many IDs were handed out. Absent counts as 0; a malformed
 * value, or one beyond the capacity, counts as nothing handed out and comes with a problem.
 */
export function decodeCounter(
  value: string | undefined,
  capacity: number,
): { allocated: number; problem?: string } {
  if (value === undefined) return { allocated: 0 };
  const count = /^(0|[1-9]\d{0,8})$/.test(value) ? Number(value) : undefined;
  if (count !== undefined && count <= capacity) return { allocated: count };
  return { allocated: 0, problem: `not a node ID counter (0..${capacity})` };
}

/**
 * The one rule for the node-ID high-water mark: every ID handed out is below it. Each fresh ID is
 * a ticket, the `version` of `id_key` before the put that took it, so the version bounds them. The
 * value is decimal: each ticket put writes the mark it read just before plus one, a lower bound
 * (exact unless tickets were taken concurrently); the counter of old and an operator's floor write
 * it too, and it counts up to the capacity. Any other value is a problem to report, never a reason
 * to stop: the version still holds, and the next ticket put overwrites it. Absent: 0.
 */
export function idHighWaterMark(
  kv: { value: string; version: number } | undefined,
  capacity: number,
): { allocated: number; problem?: string } {
  if (!kv) return { allocated: 0 };
  const version = Math.min(Math.max(0, kv.version), capacity);
  const decimal = decodeCounter(kv.value, capacity);
  return decimal.problem
    ? { allocated: version, problem: decimal.problem }
    : { allocated: Math.max(version, decimal.allocated) };
}
