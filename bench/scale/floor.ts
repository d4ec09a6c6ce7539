/**
 * The floor under formation: `n` bare sessions started at once, each what any node needs before
 * it can do anything of its own: a client, a lease kept alive, one transaction, two prefix
 * watches delivering their first snapshot. No IDs, no elections: formation can be no faster
 * than this on the same etcd, process and machine, so it is reported as a ratio to it.
 */
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { firstValueFrom, type Subscription } from "rxjs";
import { backoffDelay, connectEtcd, type Etcd3, EtcdSession, watchPrefix } from "../../src/etcd/index.js";
import { silentLogger } from "../../src/logging.js";

export interface FloorResult {
  n: number;
  /** ms from the start until every session was ready; null when some never were. */
  readyMs: number | null;
  /** Sessions ready (the rest failed: `firstError`). */
  ready: number;
  firstError?: string;
}

interface BareSession {
  client: Etcd3;
  session?: EtcdSession;
  subscriptions: Subscription[];
}

async function stop(bare: BareSession): Promise<void> {
  for (const s of bare.subscriptions.splice(0)) s.unsubscribe();
  await bare.session?.revoke().catch(() => undefined);
  bare.session = undefined;
  bare.client.close();
}

/** Runs `n` bare sessions at once under `prefix`; resolves once all are ready (or failed), then stops them. */
export async function measureFloor(
  endpoints: string[],
  prefix: string,
  n: number,
  ttlSeconds: number,
  timeoutMs: number,
): Promise<FloorResult> {
  const log = silentLogger();
  const callTimeoutMs = Math.min(5_000, Math.max(1_000, (ttlSeconds * 1000) / 2));
  const sessions: BareSession[] = [];
  const errors: string[] = [];
  const t0 = performance.now();
  let last = t0;
  const one = async (i: number) => {
    const bare: BareSession = { client: connectEtcd(endpoints, { callTimeoutMs }), subscriptions: [] };
    sessions.push(bare);
    try {
      await makeReady(bare, i);
    } catch (err) {
      await stop(bare);
      throw err;
    }
    last = Math.max(last, performance.now());
  };
  const makeReady = async (bare: BareSession, i: number) => {
    const session = await EtcdSession.open(
      bare.client,
      { ttlSeconds, keepaliveIntervalMs: Math.round((ttlSeconds * 1000) / 3) },
      log,
    );
    bare.session = session;
    const key = `${prefix}session/${i}`;
    await bare.client
      .if(key, "Create", "==", 0)
      .then(bare.client.put(key).value(String(i)).lease(session.leaseId))
      .commit();
    // Like a member: its own group's prefix, and one every session shares.
    const views = [`${prefix}group/${i % Math.max(1, Math.ceil(n / 3))}/`, `${prefix}shared/`].map((p) =>
      watchPrefix(bare.client, p, log, { callTimeoutMs }),
    );
    await Promise.all(
      views.map((view) => {
        const first = firstValueFrom(view);
        bare.subscriptions.push(view.subscribe());
        return first;
      }),
    );
  };
  const deadline = new Promise<"timeout">((resolve) =>
    setTimeout(() => resolve("timeout"), timeoutMs).unref(),
  );
  // A step that fails under load is retried (jittered backoff), as a node would: the floor is when all are ready.
  const retried = async (i: number) => {
    for (let failures = 0; ; failures++) {
      try {
        return await one(i);
      } catch (err) {
        if (performance.now() - t0 > timeoutMs) throw err;
        await sleep(backoffDelay(failures, { initialMs: 100, maxMs: 1_000 }));
      }
    }
  };
  const outcomes = Promise.allSettled(Array.from({ length: n }, (_, i) => retried(i)));
  const finished = await Promise.race([outcomes, deadline]);
  const settled = finished === "timeout" ? [] : finished;
  for (const r of settled) if (r.status === "rejected") errors.push(String(r.reason));
  const ready = settled.filter((r) => r.status === "fulfilled").length;
  await Promise.all(sessions.map(stop));
  return {
    n,
    readyMs: ready === n ? Math.round(last - t0) : null,
    ready,
    firstError: finished === "timeout" ? `not all ready within ${timeoutMs} ms` : errors[0],
  };
}
