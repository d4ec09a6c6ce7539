import { randomBytes } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { availableParallelism, loadavg, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { Etcd3 } from "etcd3";
import type { Subscription } from "rxjs";
import { MIN_LEASE_TTL_SECONDS } from "../src/config/nodeSettings.js";
import { listTransactionsSent } from "../src/etcd/index.js";
import type { ClusterNode } from "../src/runtime/clusterNode.js";
import { crashNode } from "../src/runtime/testing.js";
import { NodeFactory } from "../test/support/clusterNodes.js";
import { type EtcdCluster, startEtcd } from "../test/support/etcdCluster.js";
import { countsBetween, type EtcdRates, ratesBetween, type Scrape, scrape } from "./scale/etcdMetrics.js";
import { type FloorResult, measureFloor } from "./scale/floor.js";
import { formatValue, renderSvg, type Series } from "./scale/plot.js";
import {
  cpuCores,
  fdLimit,
  hostBusyCores,
  hostCpuTimes,
  type LoopDelay,
  LoopDelayMonitor,
  type MemorySample,
  openFds,
  sampleMemory,
  tcpConnectionsTo,
} from "./scale/processStats.js";
import { Timeline, type TimelinePoint } from "./scale/timeline.js";
import { CountingLogger, FormationTracker, phaseTimeout } from "./scale/tracking.js";
import { fmtMs, fmtRatio, formatTable, ratio, roundMs, summarize } from "./stats.js";
import {
  anomalies,
  anomaly,
  errorText,
  etcdVersion,
  freshKeysConfig,
  packageRoot,
  progress,
  runBenchmark,
  settleMs,
  stopNodes,
  when,
  wholeNumberFlag,
  withTimeout,
} from "./support.js";

const GROUP_SIZE = 3;
const READS = 3;
const PROGRESS_EVERY_MS = 2_000;
const TIMELINE_EVERY_MS = 1_000;
const STOP_ALL_TIMEOUT_MS = 30_000;
const IDLE_BASELINE_MS = 3_000;
const SCRAPE_TIMEOUT_MS = 20_000;
interface Options {
  sizes: number[];
  ttl: number;
  windowS: number;
  trials: number;
  /** Seconds; undefined = per size, max(60 s, 150 ms per node). */
  formTimeoutS: number | undefined;
  settleS: number;
}

interface FailoverTrial {
  trial: number;
  ok: boolean;
  ms?: number;
  error?: string;
  crashedId?: number;
  formerBackupPromoted?: boolean;
  /** After the crash: the slot advertised, the replacement's ID. */
  advertisedMs?: number | null;
  replacementId?: number | null;
}

interface SizeResult {
  n: number;
  /** The same number of bare sessions (client, lease, one txn, two prefix watches) started at once, just before. */
  floor: FloorResult | null;
  groups: number;
  groupings: number;
  startMode: string;
  formation: {
    formed: boolean;
    formMs: number | null;
    allIdsMs: number | null;
    timeoutMs: number;
    reached: { withId: number; seated: number; needed: number; roles: Record<string, number> };
    /** The most nodes that had IDs at once, and when (ms after the start). */
    peak: { withId: number; atMs: number | null };
    /** How busy the whole host was (all processes, in CPUs) and its 1-minute load average at the end. */
    host: { busyCores: number; loadAvg1: number };
    maxPrimariesSeen: number;
    maxBackupsSeen: number;
    loopDelay: LoopDelay;
    nodeCpuCores: number;
    /** etcd counter deltas over the formation (totals, not rates). */
    etcd: Record<string, number> | null;
    warnings: Record<string, { count: number; firstError?: string }>;
    timeline: TimelinePoint[];
    error?: string;
  };
  memory: {
    baseline: MemorySample;
    formed: MemorySample | null;
    heapPerNodeKiB: number | null;
    rssPerNodeKiB: number | null;
    externalPerNodeKiB: number | null;
  };
  steady: {
    etcd: EtcdRates | null;
    loopDelay: LoopDelay;
    nodeCpuCores: number;
    host: { busyCores: number; loadAvg1: number };
    keepaliveRttMs: { n: number; p50: number | null; p99: number | null; max: number | null };
    /** Keepalives the nodes should send at one per keepalive interval each. */
    expectedKeepalivesPerS: number;
    roleChanges: number;
    nodesSuspended: number;
    nodeFds: number;
    tcpConnectionsToEtcd: number;
    warnings: Record<string, { count: number; firstError?: string }>;
  } | null;
  failover: {
    trials: FailoverTrial[];
    p50Ms: number | null;
    maxMs: number | null;
    warnings: Record<string, { count: number; firstError?: string }>;
  };
  stop: { ms: number; crashedAfterTimeout: number };
  errors: string[];
}

const runId = randomBytes(3).toString("hex");
const CPUS = availableParallelism();
const loadavg1 = () => Math.round((loadavg()[0] ?? Number.NaN) * 100) / 100;

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      sizes: { type: "string", default: "100,200,500,1000" },
      ttl: { type: "string", default: "5" },
      window: { type: "string", default: "10" },
      trials: { type: "string", default: "5" },
      "form-timeout": { type: "string" },
      settle: { type: "string", default: "2" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(
      "usage: node --expose-gc dist/bench/scale.js [options]\n" +
        "  --sizes 100,200,500,1000  node counts, one cluster each, in this order; each started all at once\n" +
        `  --ttl 2               lease TTL in whole seconds, >= ${MIN_LEASE_TTL_SECONDS}\n` +
        "  --window 10           seconds of steady state measured per size\n" +
        "  --trials 5            crash-failover trials per size\n" +
        "  --form-timeout S      seconds to wait for formation (default max(60, 0.15 * n))\n" +
        "  --settle 2            seconds between formation and the steady-state window\n",
    );
    process.exit(0);
  }
  const int = wholeNumberFlag;
  const sizes = values.sizes.split(",").map((s) => int("sizes", s.trim(), 2));
  return {
    sizes,
    ttl: int("ttl", values.ttl, MIN_LEASE_TTL_SECONDS),
    windowS: int("window", values.window, 1),
    trials: int("trials", values.trials, 0),
    formTimeoutS:
      values["form-timeout"] === undefined ? undefined : int("form-timeout", values["form-timeout"], 1),
    settleS: int("settle", values.settle, 0),
  };
}

/** group_size 3, reads 3, groups = ceil(n/3), and keys of its own. */
const sizeConfig = (n: number) =>
  freshKeysConfig(
    `scale-${runId}-n${n}`,
    { groups: Math.ceil(n / GROUP_SIZE), group_size: GROUP_SIZE, reads: READS, writes: 2 },
    `scale config n=${n}`,
  );

const kib = (bytes: number, n: number) => Math.round((bytes / n / 1024) * 10) / 10;

/** Starts every node at once: a restart storm. */
function startAll(nodes: readonly ClusterNode[]): void {
  for (const node of nodes)
    void node.start().then(
      () => undefined,
      () => undefined,
    );
}

/** Polls until the failover advertisement of `id` exists; ms after `t0`, or null on timeout. */
async function waitForAdvertisement(client: Etcd3, key: string, t0: number, timeoutMs: number) {
  const deadline = t0 + timeoutMs;
  while (performance.now() < deadline) {
    if ((await client.get(key).string()) !== null) return performance.now() - t0;
    await sleep(50);
  }
  return null;
}

async function failoverTrial(
  factory: NodeFactory,
  client: Etcd3,
  n: number,
  trial: number,
  opts: Options,
): Promise<FailoverTrial> {
  const ttlMs = opts.ttl * 1000;
  const timeout = 5 * ttlMs;
  const group0 = () => factory.live().filter((node) => node.status.grouping === 0);
  const seated = (nodes: readonly ClusterNode[]) =>
    nodes.filter((x) => x.role === "primary").length === 1 &&
    nodes.filter((x) => x.role === "backup").length === 1;
  try {
    const members = group0();
    await when(
      members,
      () => seated(members),
      timeout,
      "grouping 0 to have a primary and a backup",
      phaseTimeout,
    );
    await sleep(settleMs(opts.ttl));
    const primary = members.find((x) => x.role === "primary");
    const backup = members.find((x) => x.role === "backup");
    if (!primary || !backup || !seated(members))
      throw new Error("grouping 0's leaders changed while settling");
    const crashedId = primary.status.id as number;
    const others = members.filter((x) => x !== primary);
    const newPrimary = when(
      others,
      () => others.some((x) => x.role === "primary"),
      timeout,
      "another node of grouping 0 to become primary",
      phaseTimeout,
    );
    const t0 = performance.now();
    crashNode(primary);
    const t1 = await newPrimary;
    const record: FailoverTrial = {
      trial,
      ok: true,
      ms: t1 - t0,
      crashedId,
      formerBackupPromoted: others.find((x) => x.role === "primary") === backup,
    };
    // Not measured: bring grouping 0 back to full strength for the next trial.
    const advertisedMs = await waitForAdvertisement(
      client,
      factory.layout.keys.failoverKey(crashedId),
      t0,
      timeout,
    );
    record.advertisedMs = advertisedMs === null ? null : roundMs(advertisedMs);
    if (advertisedMs === null) anomaly(`n=${n} failover trial ${trial}: slot ${crashedId} never advertised`);
    const replacement = factory.create(`n${n}-replacement-${trial}`);
    const joined = await withTimeout(
      replacement.start(),
      timeout,
      "the replacement node to join",
      phaseTimeout,
    );
    record.replacementId = joined.id ?? null;
    if (joined.id !== crashedId)
      anomaly(
        `n=${n} failover trial ${trial}: replacement took ID ${joined.id}, not the failed ${crashedId}`,
      );
    if (!record.formerBackupPromoted)
      anomaly(`n=${n} failover trial ${trial}: the former backup was not promoted`);
    return record;
  } catch (err) {
    return { trial, ok: false, error: errorText(err) };
  }
}

/** A scrape of etcd's metrics, or undefined (noted in `errors`) when etcd or this process is too busy to answer. */
async function tryScrape(endpoint: string, errors: string[], when: string): Promise<Scrape | undefined> {
  try {
    return await scrape(endpoint, SCRAPE_TIMEOUT_MS);
  } catch (err) {
    errors.push(`etcd metrics ${when}: ${errorText(err)}`);
    anomaly(`cannot read etcd metrics ${when}: ${errorText(err)}`);
    return undefined;
  }
}

async function runSize(
  etcd: EtcdCluster,
  endpoint: string,
  etcdPort: number,
  client: Etcd3,
  n: number,
  opts: Options,
): Promise<SizeResult> {
  const config = sizeConfig(n);
  const counting = new CountingLogger();
  const factory = new NodeFactory({
    endpoints: etcd.endpoints,
    config,
    leaseTtlSeconds: opts.ttl,
    logger: counting.logger,
  });
  const groupings = factory.layout.groupings.length;
  const formTimeoutMs = (opts.formTimeoutS ?? Math.max(60, Math.ceil(0.15 * n))) * 1000;
  const startMode = "all at once";
  const errors: string[] = [];
  progress(
    `\n== ${n} nodes: ${config.groups} groups, ${groupings} groupings, started ${startMode}, ` +
      `formation timeout ${formTimeoutMs / 1000} s ==`,
  );
  const baseline = await sampleMemory();
  progress(`${n} nodes: floor: ${n} bare sessions at once`);
  const floor = await measureFloor(
    etcd.endpoints,
    `scale-${runId}-floor-n${n}/`,
    n,
    opts.ttl,
    formTimeoutMs,
  ).catch((err: unknown) => {
    errors.push(`floor: ${errorText(err)}`);
    return null;
  });
  progress(
    `${n} nodes: floor ${floor?.readyMs ?? "—"} ms (${floor?.ready ?? 0}/${n} ready${floor?.firstError ? `; ${floor.firstError}` : ""})`,
  );
  await sleep(1_000);
  const result: SizeResult = {
    n,
    floor,
    groups: config.groups,
    groupings,
    startMode,
    formation: {
      formed: false,
      formMs: null,
      allIdsMs: null,
      timeoutMs: formTimeoutMs,
      reached: { withId: 0, seated: 0, needed: 0, roles: {} },
      peak: { withId: 0, atMs: null },
      host: { busyCores: Number.NaN, loadAvg1: Number.NaN },
      maxPrimariesSeen: 0,
      maxBackupsSeen: 0,
      loopDelay: { p50Ms: Number.NaN, p99Ms: Number.NaN, maxMs: Number.NaN, resolutionMs: 0 },
      nodeCpuCores: Number.NaN,
      etcd: null,
      warnings: {},
      timeline: [],
    },
    memory: { baseline, formed: null, heapPerNodeKiB: null, rssPerNodeKiB: null, externalPerNodeKiB: null },
    steady: null,
    failover: { trials: [], p50Ms: null, maxMs: null, warnings: {} },
    stop: { ms: 0, crashedAfterTimeout: 0 },
    errors,
  };
  let tracker: FormationTracker | undefined;
  try {
    // ---- 1. formation ----
    const nodes = Array.from({ length: n }, () => factory.create());
    tracker = new FormationTracker(nodes, groupings);
    const tr = tracker;
    const before = await tryScrape(endpoint, errors, "before formation");
    const listTxnsBefore = listTransactionsSent();
    const eld = new LoopDelayMonitor();
    const cpu0 = process.cpuUsage();
    const host0 = hostCpuTimes();
    const t0 = performance.now();
    startAll(nodes);
    let ticks = 0;
    const timeline = new Timeline(
      nodes,
      tr,
      endpoint,
      CPUS,
      () => counting.peekTotal(),
      TIMELINE_EVERY_MS,
      (point) => {
        ticks += 1;
        if (ticks % (PROGRESS_EVERY_MS / TIMELINE_EVERY_MS) === 0)
          progress(Timeline.describe(n, point, CPUS));
      },
    );
    try {
      await tr.until(() => tr.formedAt !== undefined, formTimeoutMs, `all ${n} nodes to form`);
    } catch (err) {
      result.formation.error = errorText(err);
      errors.push(`formation: ${errorText(err)}`);
      anomaly(`n=${n}: ${errorText(err)}`);
    } finally {
      timeline.stop();
      result.formation.timeline = timeline.points;
    }
    const t1 = performance.now();
    result.formation.nodeCpuCores = cpuCores(cpu0, t0, t1);
    result.formation.host = { busyCores: hostBusyCores(host0, hostCpuTimes(), CPUS), loadAvg1: loadavg1() };
    result.formation.peak = {
      withId: tr.peakIds,
      atMs: tr.peakAt === undefined ? null : Math.round(tr.peakAt - t0),
    };
    result.formation.loopDelay = eld.stop();
    const afterFormation = await tryScrape(endpoint, errors, "after formation");
    result.formation.etcd =
      before && afterFormation
        ? { ...countsBetween(before, afterFormation), listTxn: listTransactionsSent() - listTxnsBefore }
        : null;
    result.formation.warnings = counting.take();
    const { needed, seated } = tr.seating();
    result.formation.reached = { withId: tr.idCount, seated, needed, roles: tr.roleCounts() };
    result.formation.formed = tr.formedAt !== undefined;
    result.formation.formMs = tr.formedAt === undefined ? null : roundMs(tr.formedAt - t0);
    result.formation.allIdsMs = tr.allIdsAt === undefined ? null : roundMs(tr.allIdsAt - t0);
    result.formation.maxPrimariesSeen = tr.maxPrimaries;
    result.formation.maxBackupsSeen = tr.maxBackups;
    progress(
      `${n} nodes: ${tr.formedAt !== undefined ? `formed in ${fmtMs(tr.formedAt - t0)} ms` : "NOT formed"}; ` +
        `${tr.idCount}/${n} IDs, ${seated}/${needed} groupings seated; loop delay p99 ` +
        `${result.formation.loopDelay.p99Ms} ms; etcd during formation: ${JSON.stringify(result.formation.etcd)}`,
    );
    if (tr.maxPrimaries > 1 || tr.maxBackups > 1)
      anomaly(
        `n=${n}: saw ${tr.maxPrimaries} primaries / ${tr.maxBackups} backups at once in one grouping (node-local roles)`,
      );

    // ---- 3. memory (after forming, before the window, so a forced GC stays out of it) ----
    await sleep(opts.settleS * 1000);
    const formedMem = await sampleMemory();
    result.memory.formed = formedMem;
    result.memory.heapPerNodeKiB = kib(formedMem.heapUsed - baseline.heapUsed, n);
    result.memory.rssPerNodeKiB = kib(formedMem.rss - baseline.rss, n);
    result.memory.externalPerNodeKiB = kib(formedMem.external - baseline.external, n);
    progress(
      `${n} nodes: memory per node: heap ${result.memory.heapPerNodeKiB} KiB, rss ${result.memory.rssPerNodeKiB} KiB` +
        ` (heap ${(formedMem.heapUsed / 2 ** 20).toFixed(0)} MiB, rss ${(formedMem.rss / 2 ** 20).toFixed(0)} MiB)`,
    );
    await sleep(1_000);

    // ---- 2 and 5. steady state: etcd request rates, event-loop delay ----
    counting.take();
    const live = factory.live();
    const rtts: number[] = [];
    const roles = new Map(live.map((x) => [x, x.role] as const));
    let roleChanges = 0;
    const suspended = new Set<ClusterNode>();
    const subs: Subscription[] = [];
    for (const node of live) {
      subs.push(node.keepaliveRoundTrips$.subscribe((ms) => rtts.push(ms)));
      subs.push(
        node.status$.subscribe((s) => {
          if (s.role !== roles.get(node)) {
            roleChanges += 1;
            roles.set(node, s.role);
          }
          if (s.role === "suspended") suspended.add(node);
        }),
      );
    }
    progress(`${n} nodes: measuring steady state for ${opts.windowS} s`);
    const a = await tryScrape(endpoint, errors, "before the steady-state window");
    const steadyEld = new LoopDelayMonitor();
    const cpu1 = process.cpuUsage();
    const host1 = hostCpuTimes();
    const w0 = performance.now();
    await sleep((opts.windowS * 1000) / 2);
    const nodeFds = openFds();
    const tcp = tcpConnectionsTo(etcdPort);
    await sleep((opts.windowS * 1000) / 2);
    const w1 = performance.now();
    const loopDelay = steadyEld.stop();
    const b = await tryScrape(endpoint, errors, "after the steady-state window");
    for (const s of subs) s.unsubscribe();
    const rates = a && b ? ratesBetween(a, b) : null;
    const rtt = summarize(rtts);
    result.steady = {
      etcd: rates,
      loopDelay,
      nodeCpuCores: cpuCores(cpu1, w0, w1),
      host: { busyCores: hostBusyCores(host1, hostCpuTimes(), CPUS), loadAvg1: loadavg1() },
      keepaliveRttMs: { n: rtt.n, p50: roundMs(rtt.p50), p99: roundMs(rtt.p99), max: roundMs(rtt.max) },
      expectedKeepalivesPerS: Math.round((live.length * 1000) / factory.settings("x").keepaliveIntervalMs),
      roleChanges,
      nodesSuspended: suspended.size,
      nodeFds,
      tcpConnectionsToEtcd: tcp,
      warnings: counting.take(),
    };
    progress(
      `${n} nodes: ${rates?.grpc.total} gRPC req/s (${JSON.stringify(rates?.grpc.byMethod)}), ` +
        `loop delay p99 ${loopDelay.p99Ms} ms, keepalive RTT p99 ${roundMs(rtt.p99)} ms, ` +
        `${tcp} TCP connection(s) to etcd, ${nodeFds} fds, role changes ${roleChanges}`,
    );
    if (roleChanges > 0 || suspended.size > 0)
      anomaly(
        `n=${n}: ${roleChanges} role change(s), ${suspended.size} node(s) suspended during steady state`,
      );

    // ---- 4. crash failover of grouping 0's primary ----
    const g0 = factory.live().filter((x) => x.status.grouping === 0);
    if (g0.length < 2) errors.push("failover skipped: grouping 0 has fewer than two members");
    for (let i = 1; g0.length >= 2 && i <= opts.trials; i++) {
      const trial = await failoverTrial(factory, client, n, i, opts);
      result.failover.trials.push(trial);
      progress(
        `${n} nodes: failover trial ${i}/${opts.trials}: ` +
          (trial.ok ? `${fmtMs(trial.ms ?? Number.NaN)} ms` : `FAILED: ${trial.error}`),
      );
    }
    const samples = result.failover.trials.flatMap((t) => (t.ok && t.ms !== undefined ? [t.ms] : []));
    const s = summarize(samples);
    result.failover.p50Ms = roundMs(s.p50);
    result.failover.maxMs = roundMs(s.max);
    result.failover.trials = result.failover.trials.map((t) => ({
      ...t,
      ms: t.ms === undefined ? undefined : (roundMs(t.ms) ?? undefined),
    }));
    result.failover.warnings = counting.take();
  } catch (err) {
    errors.push(errorText(err));
    anomaly(`n=${n}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  } finally {
    tracker?.close();
    progress(`${n} nodes: stopping ${factory.live().length} node(s)`);
    const stopped = await stopNodes(factory, `n=${n}`, STOP_ALL_TIMEOUT_MS);
    result.stop = { ms: Math.round(stopped.ms), crashedAfterTimeout: stopped.crashed };
    progress(`${n} nodes: stopped in ${result.stop.ms} ms`);
  }
  return result;
}

/** Txn requests that wrote: all of them less the read-only ones the views' batched lists sent. */
const writeTxns = (f: Record<string, number>) => (f.txn ?? Number.NaN) - (f.listTxn ?? 0);

/** The numbers of one size that the table, the growth ratios and the plot show. */
function headline(r: SizeResult) {
  const f = r.formation.etcd;
  return {
    floorMs: r.floor?.readyMs ?? Number.NaN,
    formVsFloor: ratio(r.formation.formMs ?? Number.NaN, r.floor?.readyMs ?? Number.NaN),
    writesPerNode: f ? (writeTxns(f) + (f.put ?? Number.NaN)) / r.n : Number.NaN,
    grantsPerNode: f ? (f.leaseGrant ?? Number.NaN) / r.n : Number.NaN,
    formMs: r.formation.formMs ?? Number.NaN,
    allIdsMs: r.formation.allIdsMs ?? Number.NaN,
    reqPerS: r.steady?.etcd?.grpc.total ?? Number.NaN,
    keepalivesPerS: r.steady?.etcd?.grpc.byMethod.LeaseKeepAlive ?? Number.NaN,
    heapKiB: r.memory.heapPerNodeKiB ?? Number.NaN,
    rssKiB: r.memory.rssPerNodeKiB ?? Number.NaN,
    failoverP50: r.failover.p50Ms ?? Number.NaN,
    failoverMax: r.failover.maxMs ?? Number.NaN,
    loopP99: r.steady?.loopDelay.p99Ms ?? Number.NaN,
  };
}

const num = (x: number, digits = 0) => (Number.isFinite(x) ? x.toFixed(digits) : "—");

function tables(results: readonly SizeResult[], idle: { loop: LoopDelay; rates: EtcdRates }) {
  const main = formatTable(
    [
      "nodes",
      "start",
      "form ms",
      "all IDs ms",
      "req/s",
      "keepalives/s",
      "heap/node KiB",
      "rss/node KiB",
      "failover p50 ms",
      "failover max ms",
      "loop p99 ms",
    ],
    results.map((r) => {
      const h = headline(r);
      const f = r.formation;
      return [
        `${r.n}${r.formation.formed ? "" : "*"}`,
        r.startMode,
        f.formed
          ? fmtMs(h.formMs)
          : `* > ${f.timeoutMs} (peak ${f.peak.withId}/${r.n} IDs at ${num((f.peak.atMs ?? Number.NaN) / 1000, 1)} s; ` +
            `end ${f.reached.withId} IDs, ${f.reached.seated}/${f.reached.needed} seated)`,
        fmtMs(h.allIdsMs),
        num(h.reqPerS),
        num(h.keepalivesPerS),
        num(h.heapKiB, 1),
        num(h.rssKiB, 1),
        `${fmtMs(h.failoverP50)}${r.failover.trials.some((t) => !t.ok) ? ` (${r.failover.trials.filter((t) => !t.ok).length} failed)` : ""}`,
        fmtMs(h.failoverMax),
        fmtMs(h.loopP99),
      ];
    }),
    [1],
  );
  const growthRows: string[][] = [];
  for (let i = 1; i < results.length; i++) {
    const a = headline(results[i - 1] as SizeResult);
    const b = headline(results[i] as SizeResult);
    const na = (results[i - 1] as SizeResult).n;
    const nb = (results[i] as SizeResult).n;
    growthRows.push([
      `${na} -> ${nb}${results[i - 1]?.formation.formed && results[i]?.formation.formed ? "" : "*"}`,
      fmtRatio(nb / na),
      fmtRatio(ratio(b.formMs, a.formMs)),
      fmtRatio(ratio(b.allIdsMs, a.allIdsMs)),
      fmtRatio(ratio(b.reqPerS, a.reqPerS)),
      fmtRatio(ratio(b.keepalivesPerS, a.keepalivesPerS)),
      fmtRatio(ratio(b.heapKiB, a.heapKiB)),
      fmtRatio(ratio(b.rssKiB, a.rssKiB)),
      fmtRatio(ratio(b.failoverP50, a.failoverP50)),
      fmtRatio(ratio(b.failoverMax, a.failoverMax)),
      fmtRatio(ratio(b.loopP99, a.loopP99)),
    ]);
  }
  const growth = formatTable(
    [
      "growth",
      "nodes",
      "form",
      "all IDs",
      "req/s",
      "keepalives/s",
      "heap/node",
      "rss/node",
      "failover p50",
      "failover max",
      "loop p99",
    ],
    growthRows,
  );
  const detail = formatTable(
    [
      "nodes",
      "Range/s",
      "Txn/s",
      "Watch/s",
      "other/s",
      "KA streams/s",
      "KA expected/s",
      "watchers",
      "etcd CPU",
      "node CPU",
      "host CPU",
      "KA RTT p99",
      "TCP conns",
      "form Txn/node",
      "form Range/node",
      "form grants/node",
      "form loop p99",
    ],
    results.map((r) => {
      const s = r.steady;
      const f = r.formation.etcd;
      return [
        `${r.n}${r.formation.formed ? "" : "*"}`,
        num(s?.etcd?.grpc.byMethod.Range ?? Number.NaN, 1),
        num(s?.etcd?.grpc.byMethod.Txn ?? Number.NaN, 1),
        num(s?.etcd?.grpc.byMethod.Watch ?? Number.NaN, 1),
        num(s?.etcd?.grpc.byMethod.other ?? Number.NaN, 1),
        num(s?.etcd?.grpc.startedByMethod.LeaseKeepAlive ?? Number.NaN),
        num(s?.expectedKeepalivesPerS ?? Number.NaN),
        num(s?.etcd?.watchers ?? Number.NaN),
        num(s?.etcd?.cpuCores ?? Number.NaN, 2),
        num(s?.nodeCpuCores ?? Number.NaN, 2),
        `${num(s?.host.busyCores ?? Number.NaN, 2)}/${CPUS}`,
        fmtMs(s?.keepaliveRttMs.p99 ?? Number.NaN),
        num(s?.tcpConnectionsToEtcd ?? Number.NaN),
        num(f ? writeTxns(f) / r.n : Number.NaN, 1),
        num(f ? (f.range ?? Number.NaN) / r.n : Number.NaN, 1),
        num(f ? (f.leaseGrant ?? Number.NaN) / r.n : Number.NaN, 2),
        fmtMs(r.formation.loopDelay.p99Ms),
      ];
    }),
  );
  const formation = formatTable(
    [
      "nodes",
      "formed ms",
      "floor ms",
      "form / floor",
      "writes/node",
      "Txn/node",
      "Put/node",
      "Range/node",
      "grants/node",
      "revokes",
    ],
    results.map((r) => {
      const h = headline(r);
      const f = r.formation.etcd;
      return [
        `${r.n}${r.formation.formed ? "" : "*"}`,
        r.formation.formed ? fmtMs(h.formMs) : `> ${r.formation.timeoutMs}`,
        r.floor?.readyMs == null ? `— (${r.floor?.ready ?? 0}/${r.n})` : fmtMs(h.floorMs),
        fmtRatio(h.formVsFloor),
        num(h.writesPerNode, 2),
        num(f ? writeTxns(f) / r.n : Number.NaN, 2),
        num(f ? (f.put ?? Number.NaN) / r.n : Number.NaN, 2),
        num(f ? (f.range ?? Number.NaN) / r.n : Number.NaN, 2),
        num(h.grantsPerNode, 2),
        num(f?.leaseRevoke ?? Number.NaN),
      ];
    }),
  );
  const first = results[0];
  const last = results[results.length - 1];
  const span =
    first && last && last !== first
      ? (() => {
          const a = headline(first);
          const b = headline(last);
          return formatTable(
            ["from -> to", "nodes", "formed", "floor", "writes/node", "grants/node"],
            [
              [
                `${first.n} -> ${last.n}`,
                fmtRatio(last.n / first.n),
                fmtRatio(ratio(b.formMs, a.formMs)),
                fmtRatio(ratio(b.floorMs, a.floorMs)),
                fmtRatio(ratio(b.writesPerNode, a.writesPerNode)),
                fmtRatio(ratio(b.grantsPerNode, a.grantsPerNode)),
              ],
            ],
          );
        })()
      : "";
  const notes = [
    "formed: every node has a unique ID and every grouping a primary and a backup; floor: as many bare sessions",
    "  (a client, a lease kept alive, one txn, two prefix watches) started at once on the same etcd, just before;",
    "  form / floor is the goal's ratio (<= 2x). writes/node: Txn + Put requests etcd received during formation / n,",
    "  less the read-only Txns of the views' batched lists (counted in this process; Txn/node columns likewise)",
    "  (a fresh ID is a ticket Put and a claim Txn; campaigns are Txns); grants/node above 1.00: sessions renewed while forming.",
    "req/s: gRPC requests etcd received per second in steady state (unary calls + messages on streams), from",
    "  grpc_server_msg_received_total; keepalives/s: its LeaseKeepAlive part; KA streams/s: LeaseKeepAlive streams",
    "  opened (etcd3's keepaliveOnce opens one per keepalive); KA expected/s: nodes / keepalive interval.",
    "memory: process.memoryUsage() after forming minus before creating the nodes, after gc(), divided by n.",
    `loop p99: perf_hooks monitorEventLoopDelay (resolution ${LoopDelayMonitor.RESOLUTION_MS} ms, which an idle loop reports as ~${LoopDelayMonitor.RESOLUTION_MS} ms);`,
    `  idle baseline before any node: p99 ${fmtMs(idle.loop.p99Ms)} ms; idle etcd: ${num(idle.rates.grpc.total, 1)} req/s.`,
    "* not formed within the timeout: that row (and its growth ratios) was measured anyway, on whatever it reached.",
    "etcd CPU, node CPU: cores used by etcd / this process in the window; host CPU: cores busy on the whole host (all processes).",
    "failover: crash() of grouping 0's primary until another node of grouping 0 is primary (nearest-rank p50).",
    "form Txn/node, form Range/node, form grants/node: etcd requests and lease grants during formation divided by n.",
  ];
  return `${formation}\n\n${span}\n\n${main}\n\n${growth}\n\n${detail}\n\n${notes.join("\n")}`;
}

function plotSeries(results: readonly SizeResult[]): Series[] {
  const pts = (f: (h: ReturnType<typeof headline>) => number) =>
    results.map((r) => ({ n: r.n, value: f(headline(r)), hollow: !r.formation.formed }));
  return [
    {
      title: "time to form",
      unit: "ms",
      reference: "linear",
      points: results.map((r) =>
        r.formation.formed
          ? { n: r.n, value: r.formation.formMs ?? Number.NaN }
          : {
              n: r.n,
              value: r.formation.timeoutMs,
              hollow: true,
              label: `> ${formatValue(r.formation.timeoutMs)} (not formed)`,
            },
      ),
    },
    {
      title: "etcd requests in steady state",
      unit: "req/s",
      reference: "linear",
      points: pts((h) => h.reqPerS),
    },
    { title: "keepalives", unit: "per s", reference: "linear", points: pts((h) => h.keepalivesPerS) },
    { title: "heap per node", unit: "KiB", reference: "flat", points: pts((h) => h.heapKiB) },
    { title: "crash failover p50", unit: "ms", reference: "flat", points: pts((h) => h.failoverP50) },
    { title: "event-loop delay p99", unit: "ms", reference: "flat", points: pts((h) => h.loopP99) },
  ];
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  const startedAt = new Date();
  progress(
    `scale benchmark ${runId}: sizes ${opts.sizes.join(",")}, ttl ${opts.ttl} s, window ${opts.windowS} s, ` +
      `${opts.trials} failover trials, every size started all at once; ` +
      `gc ${(globalThis as { gc?: unknown }).gc ? "exposed" : "NOT exposed (run with --expose-gc)"}; ` +
      `fd limit ${fdLimit()}, ${availableParallelism()} CPU(s), ${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
  );
  const results: SizeResult[] = [];
  let idle: { loop: LoopDelay; rates: EtcdRates } | undefined;
  let etcd: EtcdCluster | undefined;
  try {
    etcd = await startEtcd({ name: `scale-${runId}` });
    const endpoint = etcd.endpoints[0] as string;
    const etcdPort = Number(new URL(endpoint).port);
    progress(`etcd at ${endpoint} (pid ${etcd.members[0]?.pid})`);
    const client = etcd.client();
    // Same-run baseline: the idle loop and an idle etcd, before any node exists.
    const a: Scrape = await scrape(endpoint);
    const eld = new LoopDelayMonitor();
    await sleep(IDLE_BASELINE_MS);
    idle = { loop: eld.stop(), rates: ratesBetween(a, await scrape(endpoint)) };
    progress(`idle baseline: loop delay p99 ${idle.loop.p99Ms} ms, etcd ${idle.rates.grpc.total} req/s`);
    for (const n of opts.sizes) {
      results.push(await runSize(etcd, endpoint, etcdPort, client, n, opts));
    }
  } finally {
    await etcd?.stop();
    progress("etcd stopped");
  }
  const idleBase = idle ?? {
    loop: { p50Ms: Number.NaN, p99Ms: Number.NaN, maxMs: Number.NaN, resolutionMs: 0 },
    rates: undefined as unknown as EtcdRates,
  };
  process.stdout.write(`\n${tables(results, idleBase)}\n`);
  for (const r of results) {
    for (const e of r.errors) process.stdout.write(`\nn=${r.n}: ${e}`);
    for (const t of r.failover.trials.filter((x) => !x.ok))
      process.stdout.write(`\nn=${r.n}: failover trial ${t.trial} failed: ${t.error}`);
  }
  if (anomalies.length > 0) process.stdout.write(`\n\nanomalies:\n  ${anomalies.join("\n  ")}\n`);
  const dir = join(packageRoot(dirname(fileURLToPath(import.meta.url))), "bench", "results");
  await mkdir(dir, { recursive: true });
  const stamp = startedAt.toISOString().replaceAll(":", "-");
  const jsonFile = join(dir, `scale-${stamp}.json`);
  const svgFile = join(dir, `scale-${stamp}.svg`);
  const json = {
    benchmark: "scale",
    runId,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    node: process.version,
    etcd: etcdVersion(),
    host: {
      cpus: availableParallelism(),
      totalMemGiB: Number((totalmem() / 2 ** 30).toFixed(1)),
      fdLimit: fdLimit(),
    },
    options: {
      ...opts,
      groupSize: GROUP_SIZE,
      reads: READS,
      gcExposed: Boolean((globalThis as { gc?: unknown }).gc),
    },
    idle,
    sizes: results,
    anomalies,
  };
  await writeFile(jsonFile, `${JSON.stringify(json, null, 2)}\n`);
  await writeFile(
    svgFile,
    renderSvg(
      `rdeebee-cluster scale benchmark, ${startedAt.toISOString().slice(0, 10)}`,
      `one process, one etcd (${etcdVersion()}), lease TTL ${opts.ttl} s, group_size ${GROUP_SIZE}, reads ${READS}; ` +
        `start: ${results.map((r) => `${r.n} ${r.startMode}`).join(", ")}` +
        `${results.some((r) => !r.formation.formed) ? "; hollow points: did not form (measured anyway)" : ""}`,
      plotSeries(results),
    ),
  );
  process.stdout.write(`\nresults written to ${jsonFile}\nplot written to ${svgFile}\n`);
}

runBenchmark("scale benchmark", main);
