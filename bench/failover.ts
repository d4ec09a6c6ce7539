import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { type Campaign, Etcd3, Lease } from "etcd3";
import type { Subscription } from "rxjs";
import { MIN_LEASE_TTL_SECONDS } from "../src/config/nodeSettings.js";
import { silentLogger } from "../src/logging.js";
import type { ClusterNode } from "../src/runtime/clusterNode.js";
import { crashNode } from "../src/runtime/testing.js";
import { NodeFactory, SEED_CONFIG } from "../test/support/clusterNodes.js";
import { type EtcdCluster, startEtcd } from "../test/support/etcdCluster.js";
import { ElectionProcessBench, NodeProcessBench, StallProcessBench } from "./processFailover.js";
import { fmtMs, fmtRatio, formatTable, ratio, roundMs, type Summary, summarize } from "./stats.js";
import {
  anomalies,
  anomaly,
  errorText,
  etcdVersion,
  freshKeysConfig,
  packageRoot,
  progress,
  runBenchmark,
  SETTLE_BASE_MS,
  settleMs,
  stopNodes,
  type TimeoutError,
  when,
  wholeNumberFlag,
  withTimeout,
} from "./support.js";

/** Nodes of the failover scenarios: IDs 0..5 are groups 0 and 1, both in grouping 0. */
const FAILOVER_NODES = 6;
const FORMATION_NODES = 30;
const FAILOVER_GROUPING = 0;
const STOP_ALL_TIMEOUT_MS = 10_000;
const DIAL_TIMEOUT_MS = 2_000;

interface Options {
  ttl: number;
  trials: number;
  formationTrials: number;
  /** Process-level crash trials (kill -9 of a node process vs an etcd3 Election process), per TTL. */
  processTrials: number;
  processTtls: number[];
  /** One-way stall trials (stall-downstream of the primary's link), per TTL of `stallTtls`. */
  stallTrials: number;
  stallTtls: number[];
  /** Trials of each blip length (a short stall, then the link back). */
  blipTrials: number;
  /** `process`: only the process-level crash scenarios; `stall`: only the stall scenarios. */
  only: "all" | "process" | "stall";
}

/** Stall failover goal: the seat is vacated at the stalled primary's local deadline, not at its lease's expiry. */
const STALL_GOAL_SLACK_MS = 500;
/** Blip lengths measured, as fractions of the TTL. */
const BLIP_FRACTIONS = [0.5, 0.7, 0.8, 0.85, 0.9, 1.0, 1.25];

/** Process-level crash failover goal: the watchdog revokes the dead node's lease at once. */
const PROCESS_GOAL_MS = 100;
const PROCESS_GOAL_RATIO = 15;

type ScenarioKey =
  | "crash"
  | "etcd3-crash"
  | "graceful"
  | "etcd3-graceful"
  | "formation"
  | `process-crash-ttl${number}`
  | `process-expiry-ttl${number}`
  | `etcd3-process-crash-ttl${number}`
  | `stall-ttl${number}`;

interface TrialRecord {
  trial: number;
  ok: boolean;
  /** The measured time, when the trial completed. */
  ms?: number;
  error?: string;
  /** Every node as `name id=… role [state]` when the trial failed or looked odd. */
  roles?: string[];
  /** Side measurements and observations, not part of the summary. */
  details?: Record<string, number | string | boolean | null>;
}

interface Scenario {
  key: ScenarioKey;
  label: string;
  /** The scenario this one is compared against (ours -> etcd3's Election). */
  baseline?: ScenarioKey;
  /** What the goal is, in words, and the test on the summary. */
  goal?: { text: string; met: (s: Summary) => boolean };
  trials: TrialRecord[];
}

class TrialFailure extends Error {
  constructor(
    message: string,
    readonly roles: string[] = [],
  ) {
    super(message);
    this.name = "TrialFailure";
  }
}

const runId = randomBytes(3).toString("hex");

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      ttl: { type: "string", default: "2" },
      trials: { type: "string", default: "20" },
      "formation-trials": { type: "string", default: "5" },
      "process-trials": { type: "string", default: process.env.BENCH_PROCESS_TRIALS ?? "20" },
      "process-ttls": { type: "string", default: "2,5" },
      "stall-trials": { type: "string", default: "20" },
      "stall-ttls": { type: "string", default: "2,5" },
      "blip-trials": { type: "string", default: "4" },
      only: { type: "string", default: "all" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(
      "usage: node dist/bench/failover.js [--ttl SECONDS] [--trials N] [--formation-trials N]\n" +
        `  --ttl               lease TTL in whole seconds, >= ${MIN_LEASE_TTL_SECONDS} (default 2)\n` +
        "  --trials            trials of each failover scenario (default 20)\n" +
        "  --formation-trials  trials of the 30-node formation (default 5)\n" +
        "  --process-trials    kill -9 trials of a node process (with its watchdog, and with --no-watchdog) and of an etcd3 Election process, per TTL\n" +
        "                      (default 20, env BENCH_PROCESS_TRIALS)\n" +
        "  --process-ttls      TTLs of the process-level trials, comma-separated (default 2,5)\n" +
        "  --stall-trials      one-way stall trials (etcd's replies to the primary held) per TTL (default 20)\n" +
        "  --stall-ttls        TTLs of the stall trials, comma-separated (default 2,5)\n" +
        "  --blip-trials       trials of each short-stall length, per stall TTL (default 4)\n" +
        "  --only process      run only the process-level crash trials; --only stall: only the stall trials\n",
    );
    process.exit(0);
  }
  return {
    ttl: wholeNumberFlag("ttl", values.ttl, MIN_LEASE_TTL_SECONDS),
    trials: wholeNumberFlag("trials", values.trials, 1),
    formationTrials: wholeNumberFlag("formation-trials", values["formation-trials"], 1),
    processTrials: wholeNumberFlag("process-trials", values["process-trials"], 1),
    processTtls: values["process-ttls"]
      .split(",")
      .map((t) => wholeNumberFlag("process-ttls", t.trim(), MIN_LEASE_TTL_SECONDS)),
    stallTrials: wholeNumberFlag("stall-trials", values["stall-trials"], 1),
    stallTtls: values["stall-ttls"]
      .split(",")
      .map((t) => wholeNumberFlag("stall-ttls", t.trim(), MIN_LEASE_TTL_SECONDS)),
    blipTrials: wholeNumberFlag("blip-trials", values["blip-trials"], 0),
    only: onlyFlag(values.only),
  };
}

function onlyFlag(raw: string): Options["only"] {
  if (raw !== "all" && raw !== "process" && raw !== "stall")
    throw new Error(`--only: must be "all", "process" or "stall", got "${raw}"`);
  return raw;
}

/** A config of the seed's shape whose every key is fresh, so that trials never see each other. */
const trialConfig = (tag: string) =>
  freshKeysConfig(`bench-${runId}-${tag}`, SEED_CONFIG, `benchmark config ${tag}`);

/** The record of a trial that failed, with every node's role when it did. */
const failedTrial = (trial: number, err: unknown, roles: () => string[]): TrialRecord => ({
  trial,
  ok: false,
  error: errorText(err),
  roles: err instanceof TrialFailure ? err.roles : roles(),
});

function describeNodes(nodes: readonly ClusterNode[]): string[] {
  return nodes.map((n) => {
    const s = n.status;
    const where = s.grouping === undefined ? "" : ` grouping=${s.grouping}`;
    return `${s.name} id=${s.id ?? "-"}${where} ${s.role} [${s.state}]`;
  });
}

/** The timeout error of a trial: a TrialFailure with every node's role at that moment. */
const trialFailure =
  (roles: () => string[]): TimeoutError =>
  (message) =>
    new TrialFailure(message, roles());

/** Tracks the most nodes seen holding one role at once, per grouping, while subscribed. */
class SeatWatch {
  maxPrimaries = 0;
  maxBackups = 0;
  private readonly subscriptions: Subscription[];

  constructor(private readonly nodes: readonly ClusterNode[]) {
    this.subscriptions = nodes.map((n) => n.status$.subscribe(() => this.sample()));
  }

  private sample(): void {
    const count = new Map<string, number>();
    for (const n of this.nodes) {
      const { role, grouping } = n.status;
      if ((role === "primary" || role === "backup") && grouping !== undefined) {
        const key = `${grouping}/${role}`;
        count.set(key, (count.get(key) ?? 0) + 1);
      }
    }
    for (const [key, c] of count) {
      if (key.endsWith("/primary")) this.maxPrimaries = Math.max(this.maxPrimaries, c);
      else this.maxBackups = Math.max(this.maxBackups, c);
    }
  }

  close(): void {
    for (const s of this.subscriptions) s.unsubscribe();
  }
}

const withRole = (nodes: readonly ClusterNode[], role: string) => nodes.filter((n) => n.role === role);

/** How long a trial waits for its setup, and for the failover it measures: five TTLs (setup at least 10 s). */
function trialTimeouts(opts: Options): { setupTimeout: number; failoverTimeout: number } {
  const ttlMs = opts.ttl * 1000;
  return { setupTimeout: Math.max(10_000, 5 * ttlMs), failoverTimeout: 5 * ttlMs };
}

/** One trial of the runtime: the primary of grouping 0 crashes or stops; time to the next primary. */
async function runtimeFailoverTrial(
  etcd: EtcdCluster,
  kind: "crash" | "graceful",
  trial: number,
  opts: Options,
): Promise<TrialRecord> {
  const { setupTimeout, failoverTimeout } = trialTimeouts(opts);
  const factory = new NodeFactory({
    endpoints: etcd.endpoints,
    config: trialConfig(`${kind}${trial}`),
    leaseTtlSeconds: opts.ttl,
    logger: silentLogger(),
  });
  const roles = () => describeNodes(factory.nodes);
  let seats: SeatWatch | undefined;
  try {
    await withTimeout(
      factory.startMany(FAILOVER_NODES),
      setupTimeout,
      "every node to join",
      trialFailure(roles),
    );
    const nodes = [...factory.nodes];
    const grouping = (n: ClusterNode) => n.status.grouping;
    if (nodes.some((n) => grouping(n) !== FAILOVER_GROUPING)) {
      throw new TrialFailure(`a node joined outside grouping ${FAILOVER_GROUPING}`, roles());
    }
    const seated = () => withRole(nodes, "primary").length === 1 && withRole(nodes, "backup").length === 1;
    await when(
      nodes,
      seated,
      setupTimeout,
      "grouping 0 to have a primary and a backup",
      trialFailure(() => describeNodes(nodes)),
    );
    await sleep(settleMs(opts.ttl));
    const primary = withRole(nodes, "primary")[0];
    const backup = withRole(nodes, "backup")[0];
    if (!seated() || !primary || !backup) {
      throw new TrialFailure("the leaders of grouping 0 changed while settling", roles());
    }
    seats = new SeatWatch(nodes.filter((n) => n !== primary));
    const others = nodes.filter((n) => n !== primary);
    const newPrimary = when(
      others,
      () => others.some((n) => n.role === "primary"),
      failoverTimeout,
      `another node to become primary after the ${kind === "crash" ? "crash" : "graceful stop"}`,
      trialFailure(() => describeNodes(others)),
    );
    let stopDone: Promise<number> | undefined;
    const t0 = performance.now();
    if (kind === "crash") crashNode(primary);
    else stopDone = primary.stop().then(() => performance.now());
    const t1 = await newPrimary;
    const stopAt = stopDone
      ? await withTimeout(stopDone, failoverTimeout, "stop() to resolve", trialFailure(roles))
      : t0;
    const winner = others.find((n) => n.role === "primary");
    const details: TrialRecord["details"] = {
      formerBackupPromoted: winner === backup,
    };
    if (kind === "graceful") details.stopResolvedMs = roundMs(stopAt - t0);
    // Not part of the measurement: how long until grouping 0 has a backup again.
    try {
      const reseated = await when(
        others,
        () => withRole(others, "primary").length === 1 && withRole(others, "backup").length === 1,
        failoverTimeout,
        "a new backup",
        trialFailure(() => describeNodes(others)),
      );
      details.backupRestoredMs = roundMs(reseated - t0);
    } catch (err) {
      details.backupRestoredMs = null;
      anomaly(`${kind} trial ${trial}: ${errorText(err)}; roles: ${roles().join("; ")}`);
    }
    details.maxPrimariesSeen = seats.maxPrimaries;
    details.maxBackupsSeen = seats.maxBackups;
    const record: TrialRecord = { trial, ok: true, ms: t1 - t0, details };
    if (seats.maxPrimaries > 1 || seats.maxBackups > 1) {
      record.roles = roles();
      anomaly(
        `${kind} trial ${trial}: saw ${seats.maxPrimaries} primaries / ${seats.maxBackups} backups ` +
          "at once in grouping 0 (node-local roles)",
      );
    }
    if (winner !== backup) {
      anomaly(`${kind} trial ${trial}: the new primary ${winner?.status.name} was not the former backup`);
    }
    return record;
  } catch (err) {
    return failedTrial(trial, err, roles);
  } finally {
    seats?.close();
    await stopNodes(factory, `${kind} trial ${trial}`, STOP_ALL_TIMEOUT_MS, describeNodes);
  }
}

/**
 * Simulates a crash of an etcd3 campaign: stops its lease's keepalives without revoking
 * (`Lease.release()`, the same call the runtime's `crash()` uses) and closes the client, so the
 * campaign key stays until etcd expires the lease by its TTL. The lease is a private field of
 * `Campaign` (node_modules/etcd3/lib/election.js); checked here so a changed etcd3 fails loudly.
 */
function crashCampaign(campaign: Campaign, client: Etcd3): void {
  const lease = (campaign as unknown as { lease?: unknown }).lease;
  if (!(lease instanceof Lease)) throw new Error("etcd3 Campaign has no private `lease` any more");
  lease.release();
  client.close();
}

/** One trial of the baseline: two etcd3 campaigns; the leader crashes or resigns; time to `elected`. */
async function electionTrial(
  etcd: EtcdCluster,
  kind: "crash" | "graceful",
  trial: number,
  opts: Options,
): Promise<TrialRecord> {
  const { setupTimeout, failoverTimeout } = trialTimeouts(opts);
  const name = `bench-${runId}-etcd3-${kind}${trial}`;
  const clientA = new Etcd3({ hosts: etcd.endpoints, dialTimeout: DIAL_TIMEOUT_MS });
  const clientB = new Etcd3({ hosts: etcd.endpoints, dialTimeout: DIAL_TIMEOUT_MS });
  const errors: string[] = [];
  const state = { a: "campaigning", b: "not started" };
  const roles = () => [`a: ${state.a}`, `b: ${state.b}`, ...errors];
  let a: Campaign | undefined;
  let b: Campaign | undefined;
  let aGone = false;
  try {
    a = clientA.election(name, opts.ttl).campaign("a");
    a.on("error", (err) => errors.push(`a error: ${errorText(err)}`));
    await withTimeout(a.wait(), setupTimeout, "the first campaign to be elected", trialFailure(roles));
    state.a = "leader";
    b = clientB.election(name, opts.ttl).campaign("b");
    state.b = "campaigning";
    b.on("error", (err) => errors.push(`b error: ${errorText(err)}`));
    let electedEarly = false;
    const elected = new Promise<number>((resolve) => {
      b?.once("elected", () => {
        const at = performance.now();
        electedEarly = !aGone;
        state.b = "leader";
        resolve(at);
      });
    });
    // `_isWaiting`: etcd3's internal event, emitted once b found a and is about to watch its key.
    const waiting = new Promise<void>((resolve) => b?.once("_isWaiting", () => resolve()));
    await withTimeout(
      waiting,
      setupTimeout,
      "the second campaign to wait behind the first",
      trialFailure(roles),
    );
    state.b = "waiting";
    await sleep(settleMs(opts.ttl));
    if (electedEarly || state.b === "leader") {
      throw new TrialFailure("the second campaign was elected while the first still led", roles());
    }
    const t0 = performance.now();
    aGone = true;
    if (kind === "crash") {
      crashCampaign(a, clientA);
      state.a = "crashed";
    } else {
      const resigned = a.resign();
      state.a = "resigning";
      await resigned;
      state.a = "resigned";
    }
    const t1 = await withTimeout(
      elected,
      failoverTimeout,
      "the second campaign to be elected",
      trialFailure(roles),
    );
    return { trial, ok: true, ms: t1 - t0 };
  } catch (err) {
    return { trial, ok: false, error: errorText(err), roles: roles() };
  } finally {
    if (b)
      await b.resign().catch((err) => anomaly(`etcd3 ${kind} trial ${trial}: b.resign: ${errorText(err)}`));
    if (a && !aGone) await a.resign().catch(() => undefined);
    clientA.close();
    clientB.close();
  }
}

/** One formation trial: 30 nodes start at once; time until every grouping is seated and all have IDs. */
async function formationTrial(etcd: EtcdCluster, trial: number, opts: Options): Promise<TrialRecord> {
  const timeout = Math.max(20_000, 5 * opts.ttl * 1000);
  const factory = new NodeFactory({
    endpoints: etcd.endpoints,
    config: trialConfig(`formation${trial}`),
    leaseTtlSeconds: opts.ttl,
    logger: silentLogger(),
  });
  const groupings = factory.layout.groupings.length;
  const roles = () => describeNodes(factory.nodes);
  let seats: SeatWatch | undefined;
  try {
    const t0 = performance.now();
    const started = factory.startMany(FORMATION_NODES);
    started.catch(() => undefined); // awaited below; this only keeps an early rejection handled
    // startMany creates and starts its nodes synchronously; etcd answers only later.
    const nodes = [...factory.nodes];
    seats = new SeatWatch(nodes);
    const allJoined = () => nodes.every((n) => n.status.id !== undefined);
    const seated = (k: number, role: string) => nodes.some((n) => n.status.grouping === k && n.role === role);
    const formed = () =>
      allJoined() &&
      Array.from({ length: groupings }, (_, k) => k).every(
        (k) => seated(k, "primary") && seated(k, "backup"),
      );
    const joined = when(
      nodes,
      allJoined,
      timeout,
      `all ${FORMATION_NODES} nodes to have IDs`,
      trialFailure(() => describeNodes(nodes)),
    );
    joined.catch(() => undefined);
    const t1 = await when(
      nodes,
      formed,
      timeout,
      `every one of the ${groupings} groupings to have a primary and a backup`,
      trialFailure(() => describeNodes(nodes)),
    );
    await withTimeout(started, timeout, "startMany to resolve", trialFailure(roles));
    const ids = nodes.map((n) => n.status.id);
    const details: TrialRecord["details"] = {
      allIdsMs: roundMs((await joined) - t0),
      maxPrimariesSeen: seats.maxPrimaries,
      maxBackupsSeen: seats.maxBackups,
    };
    const record: TrialRecord = { trial, ok: true, ms: t1 - t0, details };
    if (new Set(ids).size !== ids.length) {
      record.roles = roles();
      anomaly(`formation trial ${trial}: duplicate node IDs: ${ids.join(",")}`);
    }
    if (seats.maxPrimaries > 1 || seats.maxBackups > 1) {
      record.roles = roles();
      anomaly(
        `formation trial ${trial}: saw ${seats.maxPrimaries} primaries / ${seats.maxBackups} backups ` +
          "at once in one grouping (node-local roles)",
      );
    }
    return record;
  } catch (err) {
    return failedTrial(trial, err, roles);
  } finally {
    seats?.close();
    await stopNodes(factory, `formation trial ${trial}`, STOP_ALL_TIMEOUT_MS, describeNodes);
  }
}

function logTrial(label: string, record: TrialRecord, total: number): void {
  const head = `${label} trial ${record.trial}/${total}`;
  if (record.ok) progress(`${head}: ${Math.round(record.ms ?? Number.NaN)} ms`);
  else progress(`${head}: FAILED: ${record.error}\n    ${(record.roles ?? []).join("\n    ")}`);
}

function samples(s: Scenario): number[] {
  return s.trials.flatMap((t) => (t.ok && t.ms !== undefined ? [t.ms] : []));
}

function report(scenarios: Scenario[], opts: Options) {
  const byKey = new Map(scenarios.map((s) => [s.key, s]));
  const rows: string[][] = [];
  const json = scenarios.map((s) => {
    const summary = summarize(samples(s));
    const failed = s.trials.filter((t) => !t.ok).length;
    const base = s.baseline ? summarize(samples(byKey.get(s.baseline) as Scenario)) : undefined;
    const r50 = base ? ratio(summary.p50, base.p50) : Number.NaN;
    const r99 = base ? ratio(summary.p99, base.p99) : Number.NaN;
    const met = s.goal ? failed === 0 && summary.n > 0 && s.goal.met(summary) : undefined;
    rows.push([
      s.label,
      String(summary.n),
      String(failed),
      fmtMs(summary.p50),
      fmtMs(summary.p99),
      fmtMs(summary.max),
      fmtRatio(r50),
      fmtRatio(r99),
      s.goal?.text ?? "—",
      met === undefined ? "—" : met ? "met" : "not met",
    ]);
    return {
      key: s.key,
      label: s.label,
      n: summary.n,
      failed,
      p50Ms: roundMs(summary.p50),
      p99Ms: roundMs(summary.p99),
      maxMs: roundMs(summary.max),
      minMs: roundMs(summary.min),
      meanMs: roundMs(summary.mean),
      baseline: s.baseline ?? null,
      ratioP50: Number.isFinite(r50) ? Math.round(r50 * 1000) / 1000 : null,
      ratioP99: Number.isFinite(r99) ? Math.round(r99 * 1000) / 1000 : null,
      goal: s.goal?.text ?? null,
      goalMet: met ?? null,
      trials: s.trials.map((t) => ({ ...t, ms: t.ms === undefined ? undefined : roundMs(t.ms) })),
    };
  });
  const table = formatTable(
    ["scenario", "n", "failed", "p50 ms", "p99 ms", "max ms", "p50 ratio", "p99 ratio", "goal", "result"],
    rows,
    [8, 9],
  );
  const notes = [
    `${opts.only === "all" ? `lease TTL ${opts.ttl} s where a row names none` : "lease TTL as each row names it"}; ratios are ours / etcd3 Election (same TTL, same etcd); percentiles are nearest-rank.`,
    "Goals are information only; a goal with failed trials is not met.",
  ];
  return { table: `${table}\n\n${notes.join("\n")}`, json };
}

/**
 * The process-level crash scenarios at one TTL: ours with the lease watchdog (kill -9 of a node
 * process), ours with `--no-watchdog` (the lease expires), and etcd3's Election process.
 */
function processScenarios(ttl: number): [Scenario, Scenario, Scenario] {
  const theirs: ScenarioKey = `etcd3-process-crash-ttl${ttl}`;
  return [
    {
      key: `process-crash-ttl${ttl}`,
      label: `kill -9 of a node process, watchdog revokes, TTL ${ttl} s (ours)`,
      baseline: theirs,
      goal: {
        text: `p99 <= ${PROCESS_GOAL_MS} ms, >= ${PROCESS_GOAL_RATIO}x faster`,
        met: (s) => s.p99 <= PROCESS_GOAL_MS,
      },
      trials: [],
    },
    {
      key: `process-expiry-ttl${ttl}`,
      label: `kill -9 of a node process, --no-watchdog (lease expiry), TTL ${ttl} s (ours)`,
      baseline: theirs,
      goal: { text: `p99 <= ${ttl * 1000 + 100} ms`, met: (s) => s.p99 <= ttl * 1000 + 100 },
      trials: [],
    },
    { key: theirs, label: `kill -9 of an etcd3 Election process, TTL ${ttl} s`, trials: [] },
  ];
}

/** Process-level crash trials at one TTL: watchdog, lease expiry and etcd3's, alternating trial by trial. */
async function runProcessCrashTrials(
  etcd: EtcdCluster,
  ttl: number,
  trials: number,
  [ours, expiry, theirs]: [Scenario, Scenario, Scenario],
): Promise<void> {
  const client = etcd.client();
  const dir = await mkdtemp(join(tmpdir(), "rdeebee-bench-"));
  const here = dirname(fileURLToPath(import.meta.url));
  const nodes = new NodeProcessBench(etcd, client, ttl, `bench-${runId}-proc${ttl}`, dir);
  const expiring = new NodeProcessBench(etcd, client, ttl, `bench-${runId}-expiry${ttl}`, dir, false);
  const elections = new ElectionProcessBench(
    etcd,
    client,
    ttl,
    `bench-${runId}-proc${ttl}`,
    join(here, "electionProcess.js"),
  );
  try {
    for (let i = 1; i <= trials; i++) {
      const mine = await nodes.trial(i);
      ours.trials.push(mine);
      logTrial(`node process kill -9, watchdog (TTL ${ttl})`, mine, trials);
      const expired = await expiring.trial(i);
      expiry.trials.push(expired);
      logTrial(`node process kill -9, --no-watchdog (TTL ${ttl})`, expired, trials);
      const base = await elections.trial(i);
      theirs.trials.push(base);
      logTrial(`etcd3 Election process kill -9 (TTL ${ttl})`, base, trials);
    }
  } finally {
    await nodes.close();
    await expiring.close();
    await elections.close();
    client.close();
    await rm(dir, { recursive: true, force: true });
  }
}

function stallScenario(ttl: number): Scenario {
  const goalMs = ttl * 1000 + STALL_GOAL_SLACK_MS;
  return {
    key: `stall-ttl${ttl}`,
    label: `one-way stall of the primary's link (stall-downstream), TTL ${ttl} s (ours)`,
    goal: { text: `p99 <= ${goalMs} ms`, met: (s) => s.p99 <= goalMs },
    trials: [],
  };
}

/** How often a blip of each length cost the primary its seat. */
interface BlipRow {
  ttl: number;
  blipMs: number;
  trials: number;
  seatLost: number;
  failed: number;
}

/** Stall trials at one TTL, then blips of each length; the blips' seat losses are returned. */
async function runStallTrials(
  etcd: EtcdCluster,
  ttl: number,
  opts: Options,
  scenario: Scenario,
): Promise<BlipRow[]> {
  const client = etcd.client();
  const dir = await mkdtemp(join(tmpdir(), "rdeebee-bench-"));
  const bench = new StallProcessBench(etcd, client, ttl, `bench-${runId}-stall${ttl}`, dir);
  const blips: BlipRow[] = [];
  try {
    for (let i = 1; i <= opts.stallTrials; i++) {
      const record = await bench.stallTrial(i);
      scenario.trials.push(record);
      logTrial(`stall-downstream (TTL ${ttl})`, record, opts.stallTrials);
    }
    for (const fraction of opts.blipTrials > 0 ? BLIP_FRACTIONS : []) {
      const blipMs = Math.round(fraction * ttl * 1000);
      const row: BlipRow = { ttl, blipMs, trials: 0, seatLost: 0, failed: 0 };
      for (let i = 1; i <= opts.blipTrials; i++) {
        const record = await bench.blipTrial(i, blipMs);
        row.trials += 1;
        if (!record.ok) row.failed += 1;
        else if (!record.details?.keptSeat) row.seatLost += 1;
        progress(
          `blip ${blipMs} ms (TTL ${ttl}) trial ${i}/${opts.blipTrials}: ${record.ok ? (record.details?.keptSeat ? "kept the seat" : "lost the seat") : `FAILED: ${record.error}`}`,
        );
      }
      blips.push(row);
    }
  } finally {
    await bench.close();
    client.close();
    await rm(dir, { recursive: true, force: true });
  }
  return blips;
}

function blipTable(blips: readonly BlipRow[]): string {
  return formatTable(
    ["TTL", "blip ms", "blip / TTL", "trials", "seat lost", "failed"],
    blips.map((b) => [
      `${b.ttl} s`,
      String(b.blipMs),
      (b.blipMs / (b.ttl * 1000)).toFixed(2),
      String(b.trials),
      String(b.seatLost),
      String(b.failed),
    ]),
    [1, 2, 3, 4, 5],
  );
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  const ttlMs = opts.ttl * 1000;
  const startedAt = new Date();
  const scenarios: Record<string, Scenario> & Record<ScenarioKey, Scenario> = {
    crash: {
      key: "crash",
      label: "crash failover, in-process, lease expiry (ours)",
      baseline: "etcd3-crash",
      goal: { text: `p99 <= ${ttlMs + 100} ms`, met: (s) => s.p99 <= ttlMs + 100 },
      trials: [],
    },
    "etcd3-crash": { key: "etcd3-crash", label: "crash failover (etcd3 Election)", trials: [] },
    graceful: {
      key: "graceful",
      label: "graceful handoff (ours)",
      baseline: "etcd3-graceful",
      goal: { text: "p99 < 50 ms", met: (s) => s.p99 < 50 },
      trials: [],
    },
    "etcd3-graceful": { key: "etcd3-graceful", label: "graceful handoff (etcd3 Election)", trials: [] },
    formation: {
      key: "formation",
      label: `${FORMATION_NODES}-node formation (ours)`,
      goal: { text: "p99 < 3000 ms", met: (s) => s.p99 < 3000 },
      trials: [],
    },
  };
  progress(
    `failover benchmark ${runId}: ttl ${opts.ttl} s, ${opts.trials} trials per failover scenario, ` +
      `${opts.formationTrials} formation trials`,
  );
  let etcd: EtcdCluster | undefined;
  const blips: BlipRow[] = [];
  try {
    etcd = await startEtcd({ name: `bench-${runId}` });
    progress(`etcd at ${etcd.endpoints.join(",")}`);
    for (const ttl of opts.only === "process" ? [] : opts.stallTtls) {
      const scenario = stallScenario(ttl);
      scenarios[scenario.key] = scenario;
      blips.push(...(await runStallTrials(etcd, ttl, opts, scenario)));
    }
    for (const ttl of opts.only === "stall" ? [] : opts.processTtls) {
      const scenariosAtTtl = processScenarios(ttl);
      for (const scenario of scenariosAtTtl) scenarios[scenario.key] = scenario;
      await runProcessCrashTrials(etcd, ttl, opts.processTrials, scenariosAtTtl);
    }
    // Ours and the baseline alternate trial by trial so that drift hits both alike.
    for (const kind of opts.only !== "all" ? [] : (["crash", "graceful"] as const)) {
      const ours = scenarios[kind];
      const theirs = scenarios[kind === "crash" ? "etcd3-crash" : "etcd3-graceful"];
      for (let i = 1; i <= opts.trials; i++) {
        const mine = await runtimeFailoverTrial(etcd, kind, i, opts);
        ours.trials.push(mine);
        logTrial(kind, mine, opts.trials);
        const base = await electionTrial(etcd, kind, i, opts);
        theirs.trials.push(base);
        logTrial(`etcd3 ${kind}`, base, opts.trials);
      }
    }
    for (let i = 1; opts.only === "all" && i <= opts.formationTrials; i++) {
      const record = await formationTrial(etcd, i, opts);
      scenarios.formation.trials.push(record);
      logTrial("formation", record, opts.formationTrials);
    }
  } finally {
    await etcd?.stop();
  }
  const ordered = [
    ...(opts.only === "process" ? [] : opts.stallTtls.map((ttl) => scenarios[`stall-ttl${ttl}`] as Scenario)),
    ...(opts.only === "stall"
      ? []
      : opts.processTtls.flatMap((ttl) => processScenarios(ttl).map((s) => scenarios[s.key] as Scenario))),
    ...(opts.only !== "all"
      ? []
      : [
          scenarios.crash,
          scenarios["etcd3-crash"],
          scenarios.graceful,
          scenarios["etcd3-graceful"],
          scenarios.formation,
        ]),
  ];
  const { table, json } = report(ordered, opts);
  process.stdout.write(`\n${table}\n`);
  if (blips.length > 0) {
    process.stdout.write(
      `\nshort stalls (stall-downstream of the primary's link, then pass):\n${blipTable(blips)}\n`,
    );
  }
  for (const s of ordered) {
    for (const t of s.trials.filter((x) => !x.ok)) {
      process.stdout.write(
        `\nFAILED ${s.label} trial ${t.trial}: ${t.error}\n  ${(t.roles ?? []).join("\n  ")}\n`,
      );
    }
  }
  if (anomalies.length > 0) process.stdout.write(`\nanomalies:\n  ${anomalies.join("\n  ")}\n`);
  const dir = join(packageRoot(dirname(fileURLToPath(import.meta.url))), "bench", "results");
  await mkdir(dir, { recursive: true });
  const file = join(dir, `failover-${startedAt.toISOString().replaceAll(":", "-")}.json`);
  const results = {
    benchmark: "failover",
    runId,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    node: process.version,
    etcd: etcdVersion(),
    options: {
      ...opts,
      failoverNodes: FAILOVER_NODES,
      formationNodes: FORMATION_NODES,
      settle: `${SETTLE_BASE_MS} ms + uniform [0, TTL/3) before the leader goes`,
      perTrialTimeoutMs: 5 * ttlMs,
    },
    percentiles: "nearest-rank",
    scenarios: json,
    blips,
    anomalies,
  };
  await writeFile(file, `${JSON.stringify(results, null, 2)}\n`);
  process.stdout.write(`\nresults written to ${file}\n`);
}

runBenchmark("failover benchmark", main);
