import type { Etcd3, IKeyValue } from "etcd3";
import type { FencingToken } from "./fencing.js";
import { certainlyNotApplied, deadlineIn, OutcomeUnknownError, retryWithin } from "./outcome.js";

/** The backup seat as the stopping primary last saw it: the key's create revision, lease and value. */
export interface BackupSeat {
  token: number;
  lease: string;
  value: string;
}

/**
 * How a stopping primary left its seat:
 * - `handedOff`: the primary key now lives under another lease (the backup's) with the same create
 *   revision `token`; the backup key is gone. `revision` is the handoff's, when this call saw it commit.
 * - `resigned`: the primary key was deleted (no backup, or the backup was not as seen).
 * - `notHeld`: the key was no longer the caller's (gone or re-created): nothing to give up.
 */
export type HandoffResult =
  | { kind: "handedOff"; token: number; revision?: number }
  | { kind: "resigned" }
  | { kind: "notHeld" };

export interface HandoffKeys {
  primaryKey: string;
  backupKey: string;
}

type Txn = Awaited<ReturnType<ReturnType<Etcd3["if"]>["commit"]>>;

/**
 * Moves the office of `primary` (held under `primaryLease`) to the backup in one transaction: *if*
 * the primary key has create revision `primary.token` under `primaryLease` *and* the backup key
 * has create revision `backup.token` under `backup.lease`, *then* the primary key is put with the
 * backup's value under the backup's lease and the backup key is deleted.
 *
 * A put keeps the primary key's create revision, so the new primary's fencing token equals the
 * old one's; the two terms differ by lease. Every fenced write compares the leader key's lease as
 * well as its create revision, so none of the old primary's can commit after the handoff; and a
 * key with this create revision never returns to the old lease (only a handoff re-binds a leader
 * key, and it binds the backup's lease, which the stopping node never holds again).
 *
 * Without a backup, or when the handoff fails or its reply is lost, it resigns: the primary key is
 * deleted if it still has `primary.token` under `primaryLease`. That resignation also settles the
 * handoff: it fails if the handoff applied (the key is then under another lease with the same create
 * revision: handed off), and once it applied a late copy of the handoff fails. A lost reply of the
 * resignation is settled by reading the primary key.
 */
export async function handOffPrimary(
  client: Etcd3,
  keys: HandoffKeys,
  primary: FencingToken,
  primaryLease: string,
  backup: BackupSeat | undefined,
  callTimeoutMs: number,
): Promise<HandoffResult> {
  const { primaryKey, backupKey } = keys;
  if (backup) {
    try {
      const txn = await client
        .if(primaryKey, "Create", "==", primary.token)
        .and(primaryKey, "Lease", "==", primaryLease)
        .and(backupKey, "Create", "==", backup.token)
        .and(backupKey, "Lease", "==", backup.lease)
        .then(client.put(primaryKey).value(backup.value).lease(backup.lease), client.delete().key(backupKey))
        .options(deadlineIn(callTimeoutMs))
        .commit();
      if (txn.succeeded)
        return { kind: "handedOff", token: primary.token, revision: Number(txn.header.revision) };
    } catch {
      // Refused or unknown (a re-sent handoff failing on its own first put included): the resignation settles it.
    }
  }
  return resignPrimary(client, primaryKey, primary, primaryLease, callTimeoutMs);
}

async function resignPrimary(
  client: Etcd3,
  primaryKey: string,
  primary: FencingToken,
  primaryLease: string,
  callTimeoutMs: number,
): Promise<HandoffResult> {
  const handedOff = (kv: IKeyValue | undefined): boolean =>
    kv !== undefined && Number(kv.create_revision) === primary.token && kv.lease !== primaryLease;
  let txn: Txn;
  try {
    txn = await client
      .if(primaryKey, "Create", "==", primary.token)
      .and(primaryKey, "Lease", "==", primaryLease)
      .then(client.delete().key(primaryKey))
      .else(client.get(primaryKey))
      .options(deadlineIn(callTimeoutMs))
      .commit();
  } catch (err) {
    if (certainlyNotApplied(err)) throw err;
    const now = await retryWithin(
      callTimeoutMs,
      callTimeoutMs,
      async (options) => (await client.get(primaryKey).options(options).exec()).kvs[0],
    ).catch((readErr: unknown) => {
      throw new OutcomeUnknownError(`resignation from ${primaryKey}`, err, readErr);
    });
    if (handedOff(now)) return { kind: "handedOff", token: primary.token };
    if (now && Number(now.create_revision) === primary.token) throw err;
    return { kind: "resigned" };
  }
  if (txn.succeeded) return { kind: "resigned" };
  return handedOff(txn.responses[0]?.response_range?.kvs[0])
    ? { kind: "handedOff", token: primary.token }
    : { kind: "notHeld" };
}
