import type { Etcd3, IKeyValue } from "etcd3";
import type { ClusterLayout } from "../config/index.js";
import { type NodeRecord, nodeRecordSchema } from "./codec.js";
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
 * same reclaim, never another ID, until it is reclaimed or definitely taken. Even when taken, the
 * unsettled request may still reach etcd later and write the member key under `leaseId` once the
 * holder's key goes, so the caller takes no other ID under `leaseId` (it revokes it first): one
 * lease never ends up with two member keys.
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
