import type { Etcd3, ITxnResponse } from "etcd3";
import type { ClusterLayout } from "../config/index.js";
import { FenceLostError, type FencingToken } from "./clusterStore.js";

/**
 * What became of a poisoned leader key:
 * `removed` this call deleted it; `gone` it was already absent (deleted by another remover, by
 * its lease, or by this call's own first attempt whose reply was lost and which etcd3 re-sent);
 * `rewritten` it was written again since it was read (mod revision now `modRevision`) and is left
 * alone, since the new value was not judged.
 */
export type LeaderKeyRemoval =
  | { kind: "removed"; revision: number }
  | { kind: "gone" }
  | { kind: "rewritten"; modRevision: number };

/** The outcome of a deletion could not be learned: neither the transaction nor the read after it answered. */
export class RemovalOutcomeUnknownError extends Error {
  override readonly name = "RemovalOutcomeUnknownError";
  constructor(key: string, cause: unknown) {
    super(`deleting ${key}: outcome unknown (${cause instanceof Error ? cause.message : String(cause)})`);
  }
}

const deadline = (timeoutMs: number) => ({ deadline: new Date(Date.now() + timeoutMs) });

/**
 * Learns by a read what a deletion whose reply never came did: absent means gone (deleted, by it
 * or by another); a new mod revision means rewritten; unchanged means not deleted, and the
 * transaction's error stands. When the read fails too, the outcome is unknown.
 */
async function settleByRead(
  client: Etcd3,
  key: string,
  modRevision: number,
  timeoutMs: number,
  txnError: unknown,
): Promise<LeaderKeyRemoval> {
  let found: { mod_revision: string } | undefined;
  try {
    found = (await client.get(key).options(deadline(timeoutMs)).exec()).kvs[0];
  } catch {
    throw new RemovalOutcomeUnknownError(key, txnError);
  }
  if (!found) return { kind: "gone" };
  if (Number(found.mod_revision) === modRevision) throw txnError;
  return { kind: "rewritten", modRevision: Number(found.mod_revision) };
}

/**
 * Deletes `key` only if its mod revision is still `modRevision`, the one it had when it was read
 * and judged poisoned, in one transaction: a key written since is never deleted. For the operator's
 * `rdeebee-cluster repair --yes`; the runtime uses the fenced `removePoisonedLeaderKey`.
 */
export async function deletePoisonedLeaderKey(
  client: Etcd3,
  key: string,
  modRevision: number,
  timeoutMs: number,
): Promise<LeaderKeyRemoval> {
  let txn: ITxnResponse;
  try {
    txn = await client
      .if(key, "Mod", "==", modRevision)
      .then(client.delete().key(key))
      .else(client.get(key))
      .options(deadline(timeoutMs))
      .commit();
  } catch (err) {
    return settleByRead(client, key, modRevision, timeoutMs, err);
  }
  if (txn.succeeded) return { kind: "removed", revision: Number(txn.header.revision) };
  const now = txn.responses[0]?.response_range?.kvs[0];
  return now ? { kind: "rewritten", modRevision: Number(now.mod_revision) } : { kind: "gone" };
}

/**
 * The grouping's other leader removes a poisoned leader key, in one transaction: if the remover's
 * own leader key still has create revision `fence.token` under `leaseId` AND the poisoned key's mod revision is
 * still `modRevision`, the poisoned key is deleted. Throws FenceLostError when the remover no
 * longer holds its seat (nothing is deleted then), and RangeError when `poisonedKey` is not the
 * other seat of the remover's grouping.
 */
export async function removePoisonedLeaderKey(
  client: Etcd3,
  layout: ClusterLayout,
  fence: FencingToken,
  leaseId: string,
  poisonedKey: string,
  modRevision: number,
  timeoutMs: number,
): Promise<LeaderKeyRemoval> {
  const ownKey = layout.keys.leaderKey(fence.grouping, fence.seat);
  const otherKey = layout.keys.leaderKey(fence.grouping, fence.seat === 1 ? 2 : 1);
  if (poisonedKey !== otherKey)
    throw new RangeError(
      `${poisonedKey} is not the other leader key of the remover's grouping (${otherKey})`,
    );
  let txn: ITxnResponse;
  try {
    txn = await client
      .if(ownKey, "Create", "==", fence.token)
      .and(ownKey, "Lease", "==", leaseId)
      .and(poisonedKey, "Mod", "==", modRevision)
      .then(client.delete().key(poisonedKey))
      .else(client.get(ownKey), client.get(poisonedKey))
      .options(deadline(timeoutMs))
      .commit();
  } catch (err) {
    return settleByRead(client, poisonedKey, modRevision, timeoutMs, err);
  }
  if (txn.succeeded) return { kind: "removed", revision: Number(txn.header.revision) };
  const own = txn.responses[0]?.response_range?.kvs[0];
  if (!own || Number(own.create_revision) !== fence.token || own.lease !== leaseId)
    throw new FenceLostError(fence);
  const now = txn.responses[1]?.response_range?.kvs[0];
  return now ? { kind: "rewritten", modRevision: Number(now.mod_revision) } : { kind: "gone" };
}
