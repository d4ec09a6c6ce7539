import { BehaviorSubject } from "rxjs";
import type { ClusterLayout } from "../../config/index.js";
import { type ClusterStatus, readClusterStatus } from "../../runtime/clusterStatus.js";
import { connectEtcd, type Etcd3 } from "../../runtime/index.js";

export interface PolledStatus {
  status?: ClusterStatus;
  /** Why the last read failed; the previous status is kept meanwhile. */
  error?: string;
}

const CALL_DEADLINE_MS = 2_000;
const READ_TIMEOUT_MS = 3_000;

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const withoutRevision = (polled: PolledStatus) =>
  JSON.stringify({ ...polled, status: { ...polled.status, revision: 0 } });

/** Reads the cluster status every `intervalMs` and emits when leaders, members, slots or the error change. */
export class StatusPoller {
  readonly status = new BehaviorSubject<PolledStatus>({});
  private readonly client: Etcd3;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(
    endpoints: string[],
    private readonly layout: ClusterLayout,
    private readonly intervalMs = 500,
  ) {
    this.client = connectEtcd(endpoints, {
      dialTimeout: 1_000,
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + CALL_DEADLINE_MS }),
    });
  }

  start(): void {
    void this.tick();
  }

  /** Reads once more now, e.g. for a last frame after every node has left. */
  refresh(): Promise<void> {
    return this.read();
  }

  /** Stops polling and closes the client once no read is in flight. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await this.inFlight;
    this.client.close();
    this.status.complete();
  }

  private async tick(): Promise<void> {
    await this.read();
    if (this.closed) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.tick(), this.intervalMs);
  }

  private read(): Promise<void> {
    const run = async () => {
      let next: PolledStatus;
      try {
        next = { status: await withTimeout(readClusterStatus(this.client, this.layout), READ_TIMEOUT_MS) };
      } catch (err) {
        next = { status: this.status.value.status, error: err instanceof Error ? err.message : String(err) };
      }
      if (!this.closed && withoutRevision(next) !== withoutRevision(this.status.value))
        this.status.next(next);
    };
    this.inFlight = this.inFlight.then(run);
    return this.inFlight;
  }
}
