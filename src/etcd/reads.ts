import type { Etcd3 } from "etcd3";
import { deadlineIn } from "./outcome.js";
import { type PrefixSnapshot, snapshotOf } from "./prefixView.js";

export interface ReadOptions {
  /** Deadline of the read, in milliseconds. */
  timeoutMs: number;
  /** Read as of this revision instead of the latest. */
  revision?: number;
}

/** Every key under `prefix` in one linearizable read, as a snapshot (see `watchPrefix`). */
export async function listPrefix(
  client: Etcd3,
  prefix: string,
  options: ReadOptions,
): Promise<PrefixSnapshot> {
  let read = client.getAll().prefix(prefix);
  if (options.revision !== undefined) read = read.revision(String(options.revision));
  return snapshotOf(prefix, await read.options(deadlineIn(options.timeoutMs)).exec());
}

/** One key as of the latest revision: its value (undefined when absent) and the revision read at. */
export async function readKey(
  client: Etcd3,
  key: string,
  options: ReadOptions,
): Promise<{ revision: number; value: string | undefined }> {
  const res = await client.get(key).options(deadlineIn(options.timeoutMs)).exec();
  return { revision: Number(res.header.revision), value: res.kvs[0]?.value.toString() };
}
