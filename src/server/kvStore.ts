import {
  type ClusterNode,
  connectEtcd,
  type Etcd3,
  FenceLostError,
  NotPrimaryError,
  WriteOutcomeUnknownError,
} from "../runtime/index.js";
import { decodeKvRecord, encodeKvRecord } from "./kvRecord.js";

export interface KvEntry {
  value: string;
  /** etcd revision of the fenced transaction that committed this value (its mod revision). */
  revision: number;
  /** Fencing token of the primary that wrote it. */
  token: number;
}

/**
 * Why a write was refused: `not-primary` before trying; `fence-lost` when etcd found the leader key
 * changed; `lease-invalid` when the node's local lease deadline had passed; `outcome-unknown` when
 * etcd's answer was lost and reading back could not tell; `etcd-error` when the transaction failed.
 */
export type WriteRefusal = "not-primary" | "fence-lost" | "lease-invalid" | "outcome-unknown" | "etcd-error";

export type PutOutcome =
  | ({ ok: true; key: string } & KvEntry)
  | { ok: false; key: string; reason: WriteRefusal; message: string };

/**
 * Why a read has no value: `not-member` when the node has no ID yet (so no grouping to read);
 * `absent` when etcd has no record; `bad-record` when the stored value is not one the server
 * writes; `etcd-error` when the read failed or passed its deadline.
 */
export type ReadFailure = "not-member" | "absent" | "bad-record" | "etcd-error";

export type GetOutcome =
  | ({ ok: true; key: string; writer: string } & KvEntry)
  | { ok: false; key: string; reason: ReadFailure; message: string };

export interface KvStoreOptions {
  /** Called for each write that reached the fenced transaction and failed there, and each failed read. */
  onEtcdError?: (reason: Exclude<WriteRefusal, "not-primary"> | "read-failed") => void;
  /** How reads reach etcd (endpoints, TLS, auth); the node's endpoints by default. */
  etcd?: Parameters<typeof connectEtcd>[0];
  /** Deadline of a read in milliseconds; half the lease TTL by default, within 1 to 5 s. */
  readTimeoutMs?: number;
}

function refusalOf(err: unknown): Exclude<WriteRefusal, "not-primary"> {
  if (err instanceof FenceLostError) return "fence-lost";
  if (err instanceof WriteOutcomeUnknownError) return "outcome-unknown";
  // The role was checked just before, so here the lease is what failed (or the role changed meanwhile).
  if (err instanceof NotPrimaryError) return "lease-invalid";
  return "etcd-error";
}

const readTimeoutFor = (ttlSeconds: number) => Math.min(5_000, Math.max(1_000, (ttlSeconds * 1000) / 2));

/**
 * The example key-value store, kept in etcd under the grouping's commit-record keys (see
 * `KeySpace.commitRecordKey`). Only the grouping's primary writes, each write one fenced
 * transaction, so a deposed primary's write changes nothing. Any member reads, with a linearizable
 * read: every value a primary acknowledged is there for every node, across failovers.
 */
export class KvStore {
  /** Reads go through a client of their own, whose every call has the read deadline. */
  private readonly reader: Etcd3;

  constructor(
    private readonly node: ClusterNode,
    private readonly options: KvStoreOptions = {},
  ) {
    const callTimeoutMs = options.readTimeoutMs ?? readTimeoutFor(node.settings.leaseTtlSeconds);
    this.reader = connectEtcd(options.etcd ?? node.settings.etcdEndpoints, { callTimeoutMs });
  }

  async get(key: string): Promise<GetOutcome> {
    const grouping = this.node.status.grouping;
    if (grouping === undefined) {
      const message = `node ${this.node.settings.nodeName} has no ID yet, so no grouping to read from`;
      return { ok: false, key, reason: "not-member", message };
    }
    const recordKey = this.node.layout.keys.commitRecordKey(grouping, key);
    let found: { value: Buffer; mod_revision: string } | undefined;
    try {
      // Linearizable (etcd3's default): a value acknowledged by any primary before this read is seen.
      found = (await this.reader.get(recordKey).exec()).kvs[0];
    } catch (err) {
      this.options.onEtcdError?.("read-failed");
      const reason = err instanceof Error ? err.message : String(err);
      return { ok: false, key, reason: "etcd-error", message: `reading ${recordKey} failed: ${reason}` };
    }
    if (!found) return { ok: false, key, reason: "absent", message: `no value for key "${key}"` };
    const decoded = decodeKvRecord(found.value.toString());
    if (!decoded.ok) {
      const message = `etcd key ${recordKey} does not hold a value record: ${decoded.problem}`;
      return { ok: false, key, reason: "bad-record", message };
    }
    const { value, node: writer, token } = decoded.record;
    return { ok: true, key, value, revision: Number(found.mod_revision), token, writer };
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
    const record = encodeKvRecord({ value, node: this.node.settings.nodeName, token: fence.token });
    try {
      const txn = await this.node.fencedTxn((c) => [c.put(recordKey).value(record)]);
      return { ok: true, key, value, revision: Number(txn.header.revision), token: fence.token };
    } catch (err) {
      const reason = refusalOf(err);
      this.options.onEtcdError?.(reason);
      return { ok: false, key, reason, message: err instanceof Error ? err.message : String(err) };
    }
  }

  close(): void {
    this.reader.close();
  }
}
