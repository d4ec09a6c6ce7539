import type { Etcd3, IRangeResponse, IRequestOp } from "etcd3";
import { EtcdPermissionDeniedError, GRPCInvalidArgumentError, GRPCResourceExhastedError, Range } from "etcd3";
import { deadlineIn } from "./outcome.js";
import { jitteredInterval } from "./watchBackoff.js";

/**
 * etcd refuses a transaction with more operations than its `--max-txn-ops` (128 by default); a
 * batch is split well below that.
 */
export const MAX_LISTS_PER_TXN = 64;

interface PendingList {
  readonly prefix: string;
  readonly timeoutMs: number;
  readonly resolve: (listed: IRangeResponse) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * etcd's answers that refuse a transaction for what is in it, not for the link or the load: more
 * operations than its `--max-txn-ops`, a reply larger than gRPC's receive limit, a range the user may
 * not read. Smaller batches may pass, so a refused batch is split; anything else fails it whole, so
 * an overloaded etcd is not sent more calls.
 */
function refusedAsAWhole(err: unknown): boolean {
  return (
    err instanceof GRPCInvalidArgumentError ||
    err instanceof GRPCResourceExhastedError ||
    err instanceof EtcdPermissionDeniedError
  );
}

const batchers = new WeakMap<Etcd3, PrefixLists>();
let sentInProcess = 0;

/** Read-only list transactions sent by every client of this process so far (benchmarks subtract them from etcd's Txn count). */
export function listTransactionsSent(): number {
  return sentInProcess;
}

/** The list batcher of `client`, created on first use. */
export function prefixListsOf(client: Etcd3): PrefixLists {
  let lists = batchers.get(client);
  if (lists === undefined) {
    lists = new PrefixLists(client);
    batchers.set(client, lists);
  }
  return lists;
}

/**
 * Lists of whole prefixes on one client, batched: every list asked for in the same turn of the
 * event loop goes to etcd as one read-only transaction, which reads every prefix at one revision
 * (linearizable, like a range). A node's views start together, re-list together after a stream
 * reconnect and re-sync on one shared clock (`resyncEvery`), so each of those costs one call
 * instead of one per view: at a thousand nodes per process the calls themselves, not etcd, are
 * the bottleneck.
 */
export class PrefixLists {
  private pending: PendingList[] = [];
  private flushScheduled = false;
  private readonly clocks = new Map<number, ResyncClock>();

  constructor(private readonly client: Etcd3) {}

  /** Every key under `prefix`, read at the batch's revision (the response header's). */
  list(prefix: string, timeoutMs: number): Promise<IRangeResponse> {
    return new Promise((resolve, reject) => {
      this.pending.push({ prefix, timeoutMs, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /**
   * Calls `resync` about every `intervalMs` (jittered, between half and all of it) on a clock that
   * every caller with the same interval shares, so that their lists share one transaction. Returns
   * the function that stops it.
   */
  resyncEvery(intervalMs: number, resync: () => void): () => void {
    let clock = this.clocks.get(intervalMs);
    if (clock === undefined) {
      clock = new ResyncClock(intervalMs, () => this.clocks.delete(intervalMs));
      this.clocks.set(intervalMs, clock);
    }
    return clock.add(resync);
  }

  private flush(): void {
    this.flushScheduled = false;
    const batch = this.pending;
    this.pending = [];
    for (let i = 0; i < batch.length; i += MAX_LISTS_PER_TXN)
      void this.send(batch.slice(i, i + MAX_LISTS_PER_TXN));
  }

  private async send(batch: readonly PendingList[]): Promise<void> {
    const success: IRequestOp[] = batch.map(({ prefix }) => {
      const range = Range.prefix(prefix);
      return { request_range: { key: range.start, range_end: range.end } };
    });
    // The batch waits as long as its most patient list allows.
    const timeoutMs = Math.max(...batch.map((p) => p.timeoutMs));
    sentInProcess += 1;
    try {
      const res = await this.client.kv.txn({ compare: [], success, failure: [] }, deadlineIn(timeoutMs));
      batch.forEach((pending, i) => {
        const listed = res.responses[i]?.response_range;
        if (listed === undefined)
          pending.reject(new Error(`etcd's reply lacks the list of ${pending.prefix}`));
        // Each list's own header may be empty inside a transaction; the transaction's is the revision read.
        else pending.resolve({ ...listed, header: res.header });
      });
    } catch (err) {
      if (batch.length > 1 && refusedAsAWhole(err)) {
        // Halves until each part passes or a single list is refused on its own: at most 2n − 1 calls.
        const half = Math.ceil(batch.length / 2);
        void this.send(batch.slice(0, half));
        void this.send(batch.slice(half));
      } else for (const pending of batch) pending.reject(err);
    }
  }
}

/** One jittered timer for every caller of one interval; it runs while it has callers. */
class ResyncClock {
  private readonly callers = new Set<() => void>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly intervalMs: number,
    private readonly onIdle: () => void,
  ) {}

  add(resync: () => void): () => void {
    // A function may be registered twice (two views sharing one callback): each gets its own entry.
    const entry = () => resync();
    this.callers.add(entry);
    if (this.timer === undefined) this.schedule();
    return () => {
      this.callers.delete(entry);
      if (this.callers.size === 0) {
        clearTimeout(this.timer);
        this.timer = undefined;
        this.onIdle();
      }
    };
  }

  private schedule(): void {
    this.timer = setTimeout(() => {
      this.schedule();
      for (const resync of [...this.callers]) resync();
    }, jitteredInterval(this.intervalMs));
  }
}
