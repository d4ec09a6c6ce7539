import type { Etcd3, IKeyValue } from "etcd3";
import type { ClusterLayout } from "../config/index.js";
import { type NodeRecord, nodeRecordSchema } from "./codec.js";
import { certainlyNotApplied, deadlineIn, OutcomeUnknownError, retryWithin } from "./outcome.js";

/** How a node's attempt to take back the ID it held before ended. */
export type ReclaimResult =
  | { kind: "reclaimed"; id: number; via: "free" | "advertised" }
  | { kind: "taken"; id: number; holder?: string };

/** A failover advertisement that changes under a claim is re-read this many times before giving up for now. */
const RECLAIM_ROUNDS = 3;

type TxnResult = Awaited<ReturnType<ReturnType<Etcd3["if"]>["commit"]>>;

/**
 * Takes back `id`, the ID this node held before (its member key vanished with its lease, or it
 * restarted). A free slot (no member key, no advertisement) is claimed by one create-only
 * transaction; an advertised slot by claiming the advertisement (unchanged) in the same
 * transaction that writes the member key, as any failover claim. Either compare makes exactly
 * one claimer win, against another reclaim, a failover claim or a primary advertising the slot.
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
  const value = JSON.stringify({ ...record, id });
  const attempt = async (build: () => Promise<TxnResult>): Promise<TxnResult | undefined> => {
    try {
      return await build();
    } catch (err) {
      if (certainlyNotApplied(err)) throw err;
      const held = await retryWithin(callTimeoutMs, callTimeoutMs, async (options) => {
        return (await client.get(memberKey).options(options).exec()).kvs[0];
      }).catch((readErr: unknown) => {
        throw new OutcomeUnknownError(`reclaim of ID ${id}`, err, readErr);
      });
      if (held?.lease === leaseId) return undefined;
      throw new OutcomeUnknownError(`reclaim of ID ${id}`, err, new Error("member key not held yet"));
    }
  };
  for (let round = 0; round < RECLAIM_ROUNDS; round++) {
    const free = await attempt(() =>
      client
        .if(memberKey, "Create", "==", 0)
        .and(adKey, "Create", "==", 0)
        .then(client.put(memberKey).value(value).lease(leaseId))
        .else(client.get(memberKey), client.get(adKey))
        .options(deadlineIn(callTimeoutMs))
        .commit(),
    );
    if (!free || free.succeeded) return { kind: "reclaimed", id, via: "free" };
    const member = free.responses[0]?.response_range?.kvs[0];
    const ad = free.responses[1]?.response_range?.kvs[0];
    if (member) return heldOrTaken(member, leaseId, id, "free");
    if (!ad) continue;
    const claim = await attempt(() =>
      client
        .if(adKey, "Mod", "==", ad.mod_revision)
        .and(memberKey, "Create", "==", 0)
        .then(client.delete().key(adKey), client.put(memberKey).value(value).lease(leaseId))
        .else(client.get(memberKey))
        .options(deadlineIn(callTimeoutMs))
        .commit(),
    );
    if (!claim || claim.succeeded) return { kind: "reclaimed", id, via: "advertised" };
    const now = claim.responses[0]?.response_range?.kvs[0];
    if (now) return heldOrTaken(now, leaseId, id, "advertised");
    // The advertisement changed (rewritten or claimed and released): read the slot again.
  }
  throw new Error(`reclaim of ID ${id}: its failover advertisement kept changing; retrying later`);
}

function heldOrTaken(
  member: IKeyValue,
  leaseId: string,
  id: number,
  via: "free" | "advertised",
): ReclaimResult {
  if (member.lease === leaseId) return { kind: "reclaimed", id, via };
  return { kind: "taken", id, holder: holderName(member) };
}

function holderName(member: IKeyValue): string | undefined {
  try {
    const parsed = nodeRecordSchema.safeParse(JSON.parse(member.value.toString()));
    return parsed.success ? parsed.data.name : undefined;
  } catch {
    return undefined;
  }
}
