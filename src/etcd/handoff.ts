import type { Etcd3, IKeyValue } from "etcd3";
import type { FencingToken } from "./fencing.js";
import { certainlyNotApplied, OutcomeUnknownError, retryWithin } from "./outcome.js";

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
 * Without a backup, or when the compare fails, it falls back to resigning: the primary key is
 * deleted if it still has `primary.token` under `primaryLease`. A lost reply is settled by reading
 * the primary key: under another lease with the same create revision means handed off.
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
  const handedOff = (kv: IKeyValue | undefined): boolean =>
    kv !== undefined && Number(kv.create_revision) === primary.token && kv.lease !== primaryLease;
  const readPrimary = (operation: string, attemptError: unknown) =>
    retryWithin(
      callTimeoutMs,
      callTimeoutMs,
      async (options) => (await client.get(primaryKey).options(options).exec()).kvs[0],
    ).catch((err: unknown) => {
      throw new OutcomeUnknownError(operation, attemptError, err);
    });
  const deadline = () => ({ deadline: new Date(Date.now() + callTimeoutMs) });

  if (backup) {
    let txn: Txn | undefined;
    try {
      txn = await client
        .if(primaryKey, "Create", "==", primary.token)
        .and(primaryKey, "Lease", "==", primaryLease)
        .and(backupKey, "Create", "==", backup.token)
        .and(backupKey, "Lease", "==", backup.lease)
        .then(client.put(primaryKey).value(backup.value).lease(backup.lease), client.delete().key(backupKey))
        .else(client.get(primaryKey))
        .options(deadline())
        .commit();
    } catch (err) {
      if (!certainlyNotApplied(err)) {
        const now = await readPrimary(`handoff of ${primaryKey}`, err);
        if (handedOff(now)) return { kind: "handedOff", token: primary.token };
      }
      // Not applied (yet): the resign below compares the lease, so a late copy and it cannot both apply.
    }
    if (txn?.succeeded)
      return { kind: "handedOff", token: primary.token, revision: Number(txn.header.revision) };
    // A re-sent handoff fails on its own first attempt's put.
    if (txn && handedOff(txn.responses[0]?.response_range?.kvs[0]))
      return { kind: "handedOff", token: primary.token };
  }
  return resignPrimary(client, primaryKey, primary, primaryLease, callTimeoutMs, handedOff, readPrimary);
}

async function resignPrimary(
  client: Etcd3,
  primaryKey: string,
  primary: FencingToken,
  primaryLease: string,
  callTimeoutMs: number,
  handedOff: (kv: IKeyValue | undefined) => boolean,
  readPrimary: (operation: string, attemptError: unknown) => Promise<IKeyValue | undefined>,
): Promise<HandoffResult> {
  let txn: Txn;
  try {
    txn = await client
      .if(primaryKey, "Create", "==", primary.token)
      .and(primaryKey, "Lease", "==", primaryLease)
      .then(client.delete().key(primaryKey))
      .else(client.get(primaryKey))
      .options({ deadline: new Date(Date.now() + callTimeoutMs) })
      .commit();
  } catch (err) {
    if (certainlyNotApplied(err)) throw err;
    const now = await readPrimary(`resignation from ${primaryKey}`, err);
    if (handedOff(now)) return { kind: "handedOff", token: primary.token };
    const stillHeld = now && Number(now.create_revision) === primary.token;
    if (stillHeld) throw err;
    return { kind: "resigned" };
  }
  if (txn.succeeded) return { kind: "resigned" };
  const now = txn.responses[0]?.response_range?.kvs[0];
  return handedOff(now) ? { kind: "handedOff", token: primary.token } : { kind: "notHeld" };
}
