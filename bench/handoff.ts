import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { type Campaign, Etcd3 } from "etcd3";
import { silentLogger } from "../src/logging.js";
import type { ClusterNode } from "../src/runtime/clusterNode.js";
import { NodeFactory } from "../test/support/clusterNodes.js";
import { type EtcdCluster, startEtcd } from "../test/support/etcdCluster.js";
import { fmtMs, fmtRatio, formatTable, ratio, summarize } from "./stats.js";
import {
  anomalies,
  anomaly,
  errorText,
  etcdVersion,
  freshKeysConfig,
  progress,
  runBenchmark,
  settleMs,
  stopNodes,
  when,
  wholeNumberFlag,
  withTimeout,
} from "./support.js";

/**
 * Graceful handoff: a primary stops and its backup becomes primary, against etcd3's own
 * `Election`, whose leader resigns (one delete) while a second campaign waits behind it. Trials
 * alternate, ours then etcd3's, on one etcd. Time: from the call (`stop()` / `resign()`) to the
 * moment the backup's status says primary / the waiting campaign's `elected` event.
 */

/** At most 6 nodes: IDs 0..5 are groups 0 and 1, both in grouping 0. Two match etcd3's two campaigns. */
const MAX_NODES = 6;
const STOP_ALL_TIMEOUT_MS = 10_000;
const DIAL_TIMEOUT_MS = 2_000;
const runId = randomBytes(3).toString("hex");

interface Options {
  ttl: number;
  trials: number;
  nodes: number;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      ttl: { type: "string", default: "2" },
      trials: { type: "string", default: "20" },
      nodes: { type: "string", default: "2" },
    },
  });
  const nodes = wholeNumberFlag("nodes", values.nodes, 2);
  if (nodes > MAX_NODES) throw new Error(`--nodes: at most ${MAX_NODES} (one grouping), got ${nodes}`);
  return {
    ttl: wholeNumberFlag("ttl", values.ttl, 2),
    trials: wholeNumberFlag("trials", values.trials, 1),
    nodes,
  };
}

const roleOf = (nodes: readonly ClusterNode[], role: string) => nodes.filter((n) => n.role === role);

/** One trial of ours: time from the primary's `stop()` to its backup's status saying primary. */
async function ourTrial(etcd: EtcdCluster, trial: number, { ttl, nodes: count }: Options): Promise<number> {
  const config = freshKeysConfig(
    `handoff-${runId}-${trial}`,
    { groups: 2, group_size: 3, reads: 3, writes: 2 },
    "bench",
  );
  const factory = new NodeFactory({
    endpoints: etcd.endpoints,
    config,
    leaseTtlSeconds: ttl,
    logger: silentLogger(),
  });
  const setup = Math.max(10_000, 5_000 * ttl);
  try {
    const nodes = await withTimeout(factory.startMany(count), setup, "every node to join");
    const seated = () => roleOf(nodes, "primary").length === 1 && roleOf(nodes, "backup").length === 1;
    await when(nodes, seated, setup, "a primary and a backup");
    await sleep(settleMs(ttl));
    const [primary] = roleOf(nodes, "primary");
    const [backup] = roleOf(nodes, "backup");
    if (!primary || !backup) throw new Error("the leaders changed while settling");
    const promoted = when([backup], () => backup.role === "primary", 5_000 * ttl, "the backup to be primary");
    const t0 = performance.now();
    const stopped = primary.stop();
    const t1 = await promoted;
    await stopped;
    return t1 - t0;
  } finally {
    await stopNodes(factory, `handoff trial ${trial}`, STOP_ALL_TIMEOUT_MS);
  }
}

/** One trial of etcd3's recipe: the leader resigns; time to the waiting campaign's `elected`. */
async function electionTrial(etcd: EtcdCluster, trial: number, { ttl }: Options): Promise<number> {
  const name = `handoff-${runId}-etcd3-${trial}`;
  const clientA = new Etcd3({ hosts: etcd.endpoints, dialTimeout: DIAL_TIMEOUT_MS });
  const clientB = new Etcd3({ hosts: etcd.endpoints, dialTimeout: DIAL_TIMEOUT_MS });
  let a: Campaign | undefined;
  let b: Campaign | undefined;
  const setup = Math.max(10_000, 5_000 * ttl);
  try {
    a = clientA.election(name, ttl).campaign("a");
    a.on("error", (err) => anomaly(`etcd3 trial ${trial}: a: ${errorText(err)}`));
    await withTimeout(a.wait(), setup, "the first campaign to be elected");
    b = clientB.election(name, ttl).campaign("b");
    b.on("error", (err) => anomaly(`etcd3 trial ${trial}: b: ${errorText(err)}`));
    const elected = new Promise<number>((resolve) => b?.once("elected", () => resolve(performance.now())));
    // etcd3's internal event: b found a and is about to watch its key.
    await withTimeout(
      new Promise<void>((resolve) => b?.once("_isWaiting", () => resolve())),
      setup,
      "the second campaign to wait",
    );
    await sleep(settleMs(ttl));
    const t0 = performance.now();
    await a.resign();
    a = undefined;
    return (await withTimeout(elected, 5_000 * ttl, "the second campaign to be elected")) - t0;
  } finally {
    await b?.resign().catch(() => undefined);
    await a?.resign().catch(() => undefined);
    clientA.close();
    clientB.close();
  }
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  const { ttl, trials, nodes } = opts;
  progress(
    `graceful handoff: ${trials} trials each, interleaved, ${nodes} nodes, lease TTL ${ttl} s; ${etcdVersion()}`,
  );
  const etcd = await startEtcd();
  const ours: number[] = [];
  const theirs: number[] = [];
  try {
    for (let trial = 0; trial < trials; trial++) {
      for (const [label, run, samples] of [
        ["ours", ourTrial, ours],
        ["etcd3", electionTrial, theirs],
      ] as const) {
        try {
          const ms = await run(etcd, trial, opts);
          samples.push(ms);
          progress(`trial ${trial} ${label}: ${fmtMs(ms)} ms`);
        } catch (err) {
          anomaly(`trial ${trial} ${label} failed: ${errorText(err)}`);
        }
      }
    }
  } finally {
    await etcd.stop();
  }
  const [a, b] = [summarize(ours), summarize(theirs)];
  const row = (label: string, s: typeof a, r: string[]) => [
    label,
    String(s.n),
    fmtMs(s.p50),
    fmtMs(s.p99),
    fmtMs(s.max),
    ...r,
  ];
  const header = ["scenario", "n", "p50 ms", "p99 ms", "max ms", "p50 ratio", "p99 ratio", "max ratio"];
  process.stdout.write(
    `${formatTable(header, [
      row(`graceful handoff (ours: one txn, ${nodes} nodes)`, a, [
        fmtRatio(ratio(a.p50, b.p50)),
        fmtRatio(ratio(a.p99, b.p99)),
        fmtRatio(ratio(a.max, b.max)),
      ]),
      row("etcd3 Election resign", b, ["—", "—", "—"]),
    ])}\n`,
  );
  const goal = ratio(a.p99, b.p99) <= 1;
  process.stdout.write(`goal p99 <= 1.0x etcd3's: ${goal ? "met" : "not met"}\n`);
  for (const line of anomalies) process.stdout.write(`anomaly: ${line}\n`);
}

runBenchmark("handoff", main);
