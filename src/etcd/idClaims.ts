import type { Etcd3, IKeyValue } from "etcd3";
import type { ClusterLayout } from "../config/index.js";
import { classifyKey, type NodeRecord, nodeRecordSchema } from "./codec.js";
import { certainlyNotApplied, deadlineIn, OutcomeUnknownError, retryWithin } from "./outcome.js";

/** How a node's attempt to take back the ID it held before ended. */
export type ReclaimResult =
  | { kind: "reclaimed"; id: number; via: "free" | "advertised" }
  | { kind: "taken"; id: number; holder?: string };

type TxnResult = Awaited<ReturnType<ReturnType<Etcd3["if"]>["commit"]>>;

/**
 * Takes back `id`, the ID this node held before (its member key vanished with its lease, or it
 * restarted), in one transaction: *if* the member key is absent *then* write it under `leaseId`
 * and delete the slot's failover advertisement, if any. The member-key compare makes exactly one
 * claimer win the slot, against another reclaim, a failover claim (which needs the member key
 * absent too) or a primary advertising it (likewise); deleting the advertisement in the same
 * transaction means a slot that was advertised is claimed with it, as a failover claim would.
 * A slot whose member key is under another lease is `taken`.
 *
 * A reply that is lost is settled by reading the member key: held under `leaseId` means
 * reclaimed; otherwise the outcome is unknown (OutcomeUnknownError) and the caller retries this
 * same reclaim, never another ID, until it is reclaimed or definitely taken, so that one lease
 * never ends up with two member keys.
 */
export async function reclaimId(
  client: Etcd3,
  layout: ClusterLayout,
  id: number,
  record: Omit<NodeRecord, "id">,
  leaseId: string,
  callTimeoutMs: number,
): Promise<ReclaimResult> {
  if (!layout.isNodeId(id))
    throw new RangeError(`previous node ID ${id} is outside 0..${layout.capacity - 1}`);
  const memberKey = layout.keys.memberKey(layout.nodeGroup(id), id);
  const adKey = layout.keys.failoverKey(id);
  let txn: TxnResult;
  try {
    txn = await client
      .if(memberKey, "Create", "==", 0)
      .then(
        client
          .put(memberKey)
          .value(JSON.stringify({ ...record, id }))
          .lease(leaseId),
        client.delete().key(adKey),
      )
      .else(client.get(memberKey))
      .options(deadlineIn(callTimeoutMs))
      .commit();
  } catch (err) {
    if (certainlyNotApplied(err)) throw err;
    const held = await retryWithin(callTimeoutMs, callTimeoutMs, async (options) => {
      return (await client.get(memberKey).options(options).exec()).kvs[0];
    }).catch((readErr: unknown) => {
      throw new OutcomeUnknownError(`reclaim of ID ${id}`, err, readErr);
    });
    if (held?.lease === leaseId) return { kind: "reclaimed", id, via: "free" };
    throw new OutcomeUnknownError(`reclaim of ID ${id}`, err, new Error("the member key is not held yet"));
  }
  if (txn.succeeded) {
    const deleted = Number(txn.responses[1]?.response_delete_range?.deleted ?? 0);
    return { kind: "reclaimed", id, via: deleted > 0 ? "advertised" : "free" };
  }
  const member = txn.responses[0]?.response_range?.kvs[0];
  if (member?.lease === leaseId) return { kind: "reclaimed", id, via: "free" };
  return { kind: "taken", id, holder: member ? holderName(member) : undefined };
}

function holderName(member: IKeyValue): string | undefined {
  try {
    const parsed = nodeRecordSchema.safeParse(JSON.parse(member.value.toString()));
    return parsed.success ? parsed.data.name : undefined;
  } catch {
    return undefined;
  }
}

/**
 * How many of the lowest free slots a node chooses among. The first claim takes the lowest free
 * slot, so IDs stay dense (groups fill in order; a node alone, or nodes started one after another,
 * get 0, 1, 2, ...). After a lost claim the node knows it is in a crowd: it picks at random among
 * the most of one grouping's worth (a few nodes started together stay in one grouping), the IDs
 * handed out so far (a restart storm refills them) and twice the live members; 16 times more
 * after each further loss, so a crowd of starters spreads out in a few rounds instead of
 * queueing for one slot.
 */
export function searchWindow(
  layout: ClusterLayout,
  counter: number,
  members: number,
  lostClaims: number,
): number {
  if (lostClaims === 0) return 1;
  const span = layout.config.group_size * layout.config.reads;
  const base = Math.max(span, counter, 2 * members);
  return Math.min(layout.capacity, base * 16 ** Math.min(lostClaims - 1, 6));
}

/**
 * The lowest `window` IDs that have no member key and no failover advertisement, cut at the last
 * grouping boundary they reach (`span` IDs per grouping) when that leaves any: a crowd fills whole
 * groupings in order rather than spilling one node into the next.
 */
export function freeSlots(capacity: number, taken: ReadonlySet<number>, window: number, span = 1): number[] {
  const free: number[] = [];
  for (let id = 0; id < capacity && free.length < window; id++) if (!taken.has(id)) free.push(id);
  const last = free[free.length - 1];
  if (last === undefined || free.length < window) return free;
  const boundary = Math.floor((last + 1) / span) * span;
  const whole = free.filter((id) => id < boundary);
  return whole.length > 0 ? whole : free;
}

/** The IDs named by member keys and failover advertisements, from keys-only listings. */
export function takenSlots(layout: ClusterLayout, keys: readonly string[]): Set<number> {
  const taken = new Set<number>();
  for (const key of keys) {
    const name = classifyKey(layout, key);
    if (name.kind === "member" || name.kind === "failoverAd") taken.add(name.id);
  }
  return taken;
}

/** The slots as one read sees them. */
export interface SlotListing {
  counter: IKeyValue | undefined;
  taken: Set<number>;
  members: number;
}

/** Reads the counter, the member keys and the advertisements (keys only), in parallel. */
export async function listSlots(
  client: Etcd3,
  layout: ClusterLayout,
  callTimeoutMs: number,
): Promise<SlotListing> {
  const options = deadlineIn(callTimeoutMs);
  const [counter, members, ads] = await Promise.all([
    client.get(layout.keys.idKey).options(options).exec(),
    client.getAll().prefix(layout.keys.allMembersPrefix).options(options).keys(),
    client.getAll().prefix(layout.keys.failoverPrefix).options(options).keys(),
  ]);
  return {
    counter: counter.kvs[0],
    taken: takenSlots(layout, [...members, ...ads]),
    members: members.length,
  };
}

/**
 * One create-only claim of slot `id`: *if* its member key is absent *and* it is not advertised
 * *then* write the member key under the lease. A slot is free only then: an advertised slot is
 * claimed only with its advertisement (`claimAdvertisedSlot`). Exactly one claimer wins.
 * Returns whether the lease now holds the slot (a re-sent copy of its own claim counts).
 */
export async function claimFreeSlot(
  client: Etcd3,
  layout: ClusterLayout,
  id: number,
  record: Omit<NodeRecord, "id">,
  leaseId: string,
  options: { deadline: Date },
): Promise<boolean> {
  const memberKey = layout.keys.memberKey(layout.nodeGroup(id), id);
  const txn = await client
    .if(memberKey, "Create", "==", 0)
    .and(layout.keys.failoverKey(id), "Create", "==", 0)
    .then(
      client
        .put(memberKey)
        .value(JSON.stringify({ ...record, id }))
        .lease(leaseId),
    )
    .else(client.get(memberKey))
    .options(options)
    .commit();
  return txn.succeeded || txn.responses[0]?.response_range?.kvs[0]?.lease === leaseId;
}
