import { type Etcd3, EtcdLeaseInvalidError } from "etcd3";

/** `revoked`: etcd revoked it now; `alreadyGone`: etcd had no such lease (expired, or revoked before). */
export type RevokeResult = "revoked" | "alreadyGone";

/**
 * Revokes a lease by ID, so every key bound to it goes at once. Idempotent: a lease etcd no longer
 * has answers `alreadyGone`, which also settles a retry whose first attempt's reply was lost.
 */
export async function revokeLease(client: Etcd3, leaseId: string, deadline: Date): Promise<RevokeResult> {
  try {
    await client.leaseClient.leaseRevoke({ ID: leaseId }, { deadline });
    return "revoked";
  } catch (err) {
    if (err instanceof EtcdLeaseInvalidError) return "alreadyGone";
    throw err;
  }
}

/** Seconds the lease has left in etcd, or undefined when etcd has no such lease. */
export async function leaseSecondsLeft(
  client: Etcd3,
  leaseId: string,
  deadline: Date,
): Promise<number | undefined> {
  const reply = await client.leaseClient.leaseTimeToLive({ ID: leaseId }, { deadline });
  const ttl = Number(reply.TTL);
  return ttl < 0 ? undefined : ttl;
}
