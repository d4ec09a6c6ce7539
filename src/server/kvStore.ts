import {
  type ClusterNode,
  FenceLostError,
  NotPrimaryError,
  WriteOutcomeUnknownError,
} from "../runtime/index.js";

export interface KvEntry {
  value: string;
  /** etcd revision of the fenced transaction that committed this value. */
  revision: number;
  /** Fencing token of the primary that wrote it. */
  token: number;
}

/**
 * Why a write was refused: `not-primary` before trying; `fence-lost` when etcd found the leader key
 * changed; `lease-invalid` when the node's local lease deadline had passed; `etcd-error` when the
 * transaction itself failed.
 */
export type WriteRefusal = "not-primary" | "fence-lost" | "lease-invalid" | "outcome-unknown" | "etcd-error";

export type PutOutcome =
  | ({ ok: true; key: string } & KvEntry)
  | { ok: false; key: string; reason: WriteRefusal; message: string };

export interface KvStoreOptions {
  /** Called for each write that reached the fenced transaction and failed there. */
  onEtcdError?: (reason: Exclude<WriteRefusal, "not-primary">) => void;
}

function refusalOf(err: unknown): Exclude<WriteRefusal, "not-primary"> {
  if (err instanceof FenceLostError) return "fence-lost";
  if (err instanceof WriteOutcomeUnknownError) return "outcome-unknown";
  // The role was checked just before, so here the lease is what failed (or the role changed meanwhile).
  if (err instanceof NotPrimaryError) return "lease-invalid";
  return "etcd-error";
}

/**
 * An in-memory key-value map beside a cluster node. Only the grouping's primary accepts writes;
 * each write first commits a record in etcd under the primary's fencing token and reaches the map
 * only once that transaction has committed, so a deposed primary's write changes nothing.
 */
export class KvStore {
  private readonly entries = new Map<string, KvEntry>();

  constructor(
    private readonly node: ClusterNode,
    private readonly options: KvStoreOptions = {},
  ) {}

  get(key: string): KvEntry | undefined {
    return this.entries.get(key);
  }

  get size(): number {
    return this.entries.size;
  }

  async put(key: string, value: string): Promise<PutOutcome> {
    const fence = this.node.fence;
    if (this.node.role !== "primary" || fence?.seat !== 1) {
      return {
        ok: false,
        key,
        reason: "not-primary",
        message: `node ${this.node.settings.nodeName} is ${this.node.role}, not the primary of its grouping`,
      };
    }
    const recordKey = this.node.layout.keys.commitRecordKey(fence.grouping, key);
    const record = JSON.stringify({ value, node: this.node.settings.nodeName, token: fence.token });
    let revision: number;
    try {
      const txn = await this.node.fencedTxn((c) => [c.put(recordKey).value(record)]);
      revision = Number(txn.header.revision);
    } catch (err) {
      const reason = refusalOf(err);
      this.options.onEtcdError?.(reason);
      return { ok: false, key, reason, message: err instanceof Error ? err.message : String(err) };
    }
    const entry = { value, revision, token: fence.token };
    const current = this.entries.get(key);
    if (!current || current.revision < revision) this.entries.set(key, entry);
    return { ok: true, key, ...entry };
  }
}
