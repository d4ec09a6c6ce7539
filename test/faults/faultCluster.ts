import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import type { Etcd3 } from "etcd3";
import yaml from "js-yaml";
import { type ClusterConfig, ClusterLayout } from "../../src/config/index.js";
import { type ClusterStatus, readClusterStatus } from "../../src/runtime/clusterStatus.js";
import { SEED_CONFIG } from "../support/clusterNodes.js";
import { type EtcdCluster, startEtcd, withDeadline } from "../support/etcdCluster.js";
import { waitUntil } from "../support/waitUntil.js";
import {
  type CheckReport,
  checkHistory,
  type FinalMembership,
  type Impairment,
  type WriteAttempt,
} from "./historyChecker.js";
import { NodeProcess, type NodeProcessOptions } from "./nodeProcess.js";
import { Observer } from "./observer.js";
import { appendRow, type FaultRow } from "./summary.js";

export const TTL_SECONDS = 2;
export const TTL_MS = TTL_SECONDS * 1000;
/** One grouping: three groups of three node IDs. */
export const FAULT_CONFIG = { ...SEED_CONFIG, groups: 3 };
export const FAULT_LAYOUT = new ClusterLayout(FAULT_CONFIG);

const RESULTS_DIR = fileURLToPath(new URL("./results", import.meta.url));
/** Keys the scenario writes itself to make revisions (before a compaction, say); no node reads them. */
export const NEMESIS_PREFIX = "nemesis/";
const SETTLE_TIMEOUT_MS = 30_000;
const QUIET_MS = TTL_MS + 500;

/** One injected fault: wall time and etcd revision just before it, and the revision once settled again. */
export interface Trial {
  startedAt: number;
  revision: number;
  endRevision: number;
}

/** The leaders of one grouping; `backup` is missing only when the grouping has one member. */
export interface Leaders {
  primary: NodeProcess;
  backup?: NodeProcess;
}

export interface Settled {
  status: ClusterStatus;
  /** Grouping 0's primary and backup. */
  primary: NodeProcess;
  backup: NodeProcess;
  /** Every grouping's leaders, by grouping (undefined for a grouping without members). */
  leaders: (Leaders | undefined)[];
}

export interface FaultClusterOptions {
  nodes?: number;
  config?: ClusterConfig;
  /** `serve`: every process is the example server (fenced writes over HTTP) beside its node. */
  command?: "node" | "serve";
  /** Lease watchdogs for the nodes; default false, since the suite's kills mean lease expiry. */
  watchdog?: boolean;
}

/**
 * A three-member etcd, an observer of its whole key space from revision 1, and `rdeebee-cluster
 * node` (or `serve`) processes, each behind its own proxies and writing its own history. The
 * scenario records what the checker needs beyond that: fenced writes and their answers, and the
 * spans in which it impaired etcd or a node on purpose.
 */
export class FaultCluster {
  readonly nodes: NodeProcess[] = [];
  readonly foreignRevisions = new Set<number>();
  readonly trials: Trial[] = [];
  readonly writes: WriteAttempt[] = [];
  readonly impairments: Impairment[] = [];
  readonly configPath: string;
  readonly layout: ClusterLayout;
  private spawned = 0;

  private constructor(
    readonly name: string,
    readonly etcd: EtcdCluster,
    readonly client: Etcd3,
    readonly observer: Observer,
    readonly dir: string,
    private readonly options: FaultClusterOptions,
  ) {
    const config = options.config ?? FAULT_CONFIG;
    this.layout = new ClusterLayout(config);
    this.configPath = join(dir, "config.yaml");
    writeFileSync(this.configPath, yaml.dump(config));
  }

  static async start(name: string, options: FaultClusterOptions | number = {}): Promise<FaultCluster> {
    const opts = typeof options === "number" ? { nodes: options } : options;
    const nodeCount = opts.nodes ?? 4;
    const dir = mkdtempSync(join(tmpdir(), "rdeebee-faults-"));
    const etcd = await startEtcd({ members: 3, name: "faults" });
    const client = etcd.client({ defaultCallOptions: withDeadline });
    const observer = await Observer.start(client, join(dir, "observer.jsonl"));
    const cluster = new FaultCluster(name, etcd, client, observer, dir, opts);
    try {
      for (let i = 0; i < nodeCount; i++) await cluster.addNode();
      if (nodeCount >= 2) await cluster.settled();
    } catch (err) {
      cluster.keepArtifacts();
      await cluster.close();
      throw err;
    }
    return cluster;
  }

  async addNode(
    beforeStart?: NodeProcessOptions["beforeStart"],
    extra: Pick<NodeProcessOptions, "stateDir"> = {},
  ): Promise<NodeProcess> {
    this.spawned += 1;
    const name = `${this.name}-${this.spawned}`;
    const node = await NodeProcess.spawn({
      name,
      etcdEndpoints: this.etcd.endpoints,
      config: this.configPath,
      historyFile: join(this.dir, `${name}.history.jsonl`),
      leaseTtlSeconds: TTL_SECONDS,
      command: this.options.command,
      watchdog: this.options.watchdog ?? false,
      beforeStart,
      ...extra,
    });
    this.nodes.push(node);
    return node;
  }

  /**
   * Starts `count` processes together (a cluster powered on at once): all spawned concurrently, each
   * as soon as its proxies listen, within milliseconds of each other. `extra(i)` gives the i-th its
   * options (a state directory).
   */
  async addNodes(
    count: number,
    extra: (index: number) => Pick<NodeProcessOptions, "stateDir"> = () => ({}),
  ): Promise<NodeProcess[]> {
    return Promise.all(Array.from({ length: count }, (_, i) => this.addNode(undefined, extra(i))));
  }

  /**
   * Runs `fault` and records its span as an impairment: of `node` (its link or process), or of etcd
   * itself when no node is given. The checker does not count that span against a vacant seat.
   */
  async impair<T>(what: string, node: NodeProcess | undefined, fault: () => Promise<T>): Promise<T> {
    const from = Date.now();
    try {
      return await fault();
    } finally {
      this.impairments.push({ from, to: Date.now(), node: node?.name, what });
    }
  }

  /** Processes that run and are not paused. */
  active(): NodeProcess[] {
    return this.nodes.filter((n) => n.running && !n.isPaused);
  }

  byName(name: string | undefined): NodeProcess | undefined {
    return this.nodes.find((n) => n.name === name);
  }

  status(): Promise<ClusterStatus> {
    return readClusterStatus(this.client, this.layout);
  }

  async revision(): Promise<number> {
    return Number((await this.client.get(this.layout.keys.idKey).exec()).header.revision);
  }

  /** Waits for a settled cluster, injects a fault, and waits until it has settled again and stayed so. */
  async trial(inject: (before: Settled) => Promise<void>, settleTimeoutMs?: number): Promise<Trial> {
    const before = await this.settled();
    const revision = await this.revision();
    const startedAt = Date.now();
    await inject(before);
    await this.settledAndQuiet(settleTimeoutMs);
    const trial = { startedAt, revision, endRevision: await this.revision() };
    this.trials.push(trial);
    return trial;
  }

  /**
   * Settled, with no etcd write but the test's own for `quietMs`: the fault has played out (a
   * lease may expire late).
   */
  async settledAndQuiet(timeoutMs = SETTLE_TIMEOUT_MS, quietMs = QUIET_MS): Promise<Settled> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const settled = await this.settled(Math.max(0, deadline - Date.now()));
      const from = await this.revision();
      await sleep(quietMs);
      await this.observer.catchUp(this.client);
      const written = this.observer.events.some(
        (e) =>
          e.revision > from && !this.foreignRevisions.has(e.revision) && !e.key.startsWith(NEMESIS_PREFIX),
      );
      if (!written) return settled;
    }
  }

  /**
   * Waits until every grouping with members has a primary and (with two or more) a backup among
   * the active processes, each saying so in its log; every active process is a member once; every
   * missing slot is advertised.
   */
  /** The primary key's create revision now, or undefined when the seat is vacant. */
  async primaryToken(): Promise<number | undefined> {
    const kv = (await this.client.get(this.layout.keys.leaderKey(0, 1)).exec()).kvs[0];
    return kv ? Number(kv.create_revision) : undefined;
  }

  async settled(timeoutMs = SETTLE_TIMEOUT_MS): Promise<Settled> {
    let last = "";
    try {
      return await waitUntil(
        `${this.name}: a primary, a backup and every active process a member`,
        async () => {
          const status = await this.status();
          last = describeState(status, this.nodes);
          const members = status.groups.flatMap((g) => g.members.map((m) => m.name)).sort();
          const active = this.active()
            .map((n) => n.name)
            .sort();
          const leaders = status.groupings.map((grouping) => this.leadersOf(status, grouping));
          const settled =
            leaders.every((l) => l !== false) &&
            members.join() === active.join() &&
            // A missing slot is settled once advertised: a burnt ticket (a hand-made put of id_key,
            // a lost reply) leaves a gap that waits for a newcomer.
            status.groups.every((g) => g.missing.every((id) => status.advertised.some((a) => a.id === id))) &&
            status.problems.length === 0;
          const first = leaders[0] || undefined;
          if (!settled || !first?.backup) return undefined;
          return {
            status,
            primary: first.primary,
            backup: first.backup,
            leaders: leaders.map((l) => l || undefined),
          };
        },
        timeoutMs,
        100,
      );
    } catch (err) {
      throw new Error(`${err instanceof Error ? err.message : String(err)}\nlast seen: ${last}`);
    }
  }

  /** A grouping's leaders when they are in place (undefined without members); false when not. */
  private leadersOf(
    status: ClusterStatus,
    grouping: ClusterStatus["groupings"][number],
  ): Leaders | undefined | false {
    const memberCount = status.groups
      .filter((g) => grouping.groups.includes(g.group))
      .reduce((sum, g) => sum + g.members.length, 0);
    if (memberCount === 0) return grouping.primary || grouping.backup ? false : undefined;
    const primary = this.byName(grouping.primary?.name);
    const backup = this.byName(grouping.backup?.name);
    if (primary?.role !== "primary") return false;
    if (memberCount === 1) return grouping.backup ? false : { primary };
    return backup?.role === "backup" ? { primary, backup } : false;
  }

  /** A write of the test's own (a planted value); its revision is excluded from attribution. */
  async plant(key: string, value: string): Promise<void> {
    const res = await this.client.put(key).value(value).exec();
    this.foreignRevisions.add(Number(res.header.revision));
  }

  /** Deletes `key` and plants `value` in its place, never over a key a node has taken meanwhile. */
  async replace(key: string, value: string): Promise<void> {
    for (;;) {
      await this.remove(key);
      const txn = await this.client
        .if(key, "Create", "==", 0)
        .then(this.client.put(key).value(value))
        .commit();
      if (txn.succeeded) {
        this.foreignRevisions.add(Number(txn.header.revision));
        return;
      }
    }
  }

  async remove(key: string): Promise<void> {
    const res = await this.client.delete().key(key).exec();
    if (Number(res.deleted) > 0) this.foreignRevisions.add(Number(res.header.revision));
  }

  /** Every member key in etcd now, and the processes that run and are not paused. */
  async membership(): Promise<FinalMembership> {
    const res = await this.client.getAll().prefix(this.layout.keys.allMembersPrefix).exec();
    const members = res.kvs.map((kv) => {
      let name: string | undefined;
      try {
        const value: unknown = JSON.parse(kv.value.toString());
        if (typeof value === "object" && value !== null && "name" in value && typeof value.name === "string")
          name = value.name;
      } catch {}
      return { key: kv.key.toString(), lease: String(kv.lease), name };
    });
    return { members, liveNodes: this.active().map((n) => n.name) };
  }

  /**
   * Reads the member keys, stops every process gracefully, makes sure the observer saw every
   * revision, and checks the whole history with what the harness recorded.
   */
  async finish(): Promise<CheckReport> {
    const finalMembership = await this.membership();
    const endedAt = Date.now();
    await Promise.all(this.nodes.map((n) => n.stop()));
    await this.observer.catchUp(this.client);
    const missed = await this.observer.verify(this.client);
    if (missed.length > 0) {
      this.keepArtifacts();
      throw new Error(`the observer's replay differs from etcd (an event was lost):\n${missed.join("\n")}`);
    }
    const report = checkHistory({
      layout: this.layout,
      events: this.observer.events,
      histories: this.nodes.flatMap((n) => n.history()),
      foreignRevisions: this.foreignRevisions,
      processes: this.nodes.map((n) => n.fate()),
      finalMembership,
      writes: this.writes,
      vacancy: { ttlMs: TTL_MS },
      endedAt,
      impairments: this.impairments,
    });
    if (!report.ok) this.keepArtifacts();
    return report;
  }

  /** Copies the observer and history files to test/faults/results/ as evidence. */
  keepArtifacts(): string {
    const stamp = new Date().toISOString().replace(/:/g, "-").replace(/\..*/, "");
    const target = join(RESULTS_DIR, `${this.name}-${stamp}`);
    mkdirSync(target, { recursive: true });
    cpSync(this.dir, target, { recursive: true });
    for (const node of this.nodes)
      writeFileSync(
        join(target, `${node.name}.stderr.jsonl`),
        node.lines.map((l) => JSON.stringify(l)).join("\n"),
      );
    writeFileSync(
      join(target, "processes.json"),
      JSON.stringify(
        this.nodes.map((n) => n.fate()),
        null,
        1,
      ),
    );
    writeFileSync(join(target, "impairments.json"), JSON.stringify(this.impairments, null, 1));
    writeFileSync(join(target, "writes.json"), JSON.stringify(this.writes, null, 1));
    return target;
  }

  async close(): Promise<void> {
    for (const node of this.nodes) node.signalPid("SIGKILL");
    await Promise.all(this.nodes.map((n) => n.exited));
    await Promise.all(this.nodes.map((n) => n.closeProxies()));
    await this.observer.stop();
    await this.etcd.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function describeState(status: ClusterStatus, nodes: readonly NodeProcess[]): string {
  const processes = nodes
    .filter((n) => n.running)
    .map((n) => `${n.name}=${n.role}${n.isPaused ? "(paused)" : ""}`)
    .join(" ");
  return JSON.stringify({
    leaders: status.groupings.map(
      (g) => `${g.grouping}: ${g.primary?.name ?? "-"} / ${g.backup?.name ?? "-"}`,
    ),
    members: status.groups.flatMap((g) => g.members.map((m) => `${m.id}:${m.name}`)),
    missing: status.groups.flatMap((g) => g.missing),
    advertised: status.advertised.map((a) => a.id),
    problems: status.problems,
    processes,
  });
}

/**
 * Runs a scenario on `cluster`, then checks the whole history and appends the summary row. When
 * the scenario itself fails (the cluster never settles, say), the checker still runs: its
 * violations usually say why, and they are added to the error; the row says the scenario failed.
 */
export async function runScenario(
  cluster: FaultCluster,
  fault: string,
  rowsFile: string,
  scenario: () => Promise<string | undefined>,
): Promise<{ report: CheckReport; row: FaultRow }> {
  let note: string | undefined;
  let failure: unknown;
  try {
    note = await scenario();
  } catch (err) {
    failure = err;
  }
  let report: CheckReport | undefined;
  let checkError: unknown;
  try {
    report = await cluster.finish();
  } catch (err) {
    checkError = err;
  }
  const failed = failure === undefined ? undefined : `scenario failed: ${firstLine(failure)}`;
  const row = report
    ? rowOf(fault, cluster.trials, report, [note, failed].filter(Boolean).join("; ") || undefined)
    : {
        ...emptyRow(fault, cluster.trials.length),
        note: `checker could not run: ${String(checkError).split("\n")[0]}`,
      };
  appendRow(rowsFile, row);
  if (failure !== undefined || !report) {
    cluster.keepArtifacts();
    const violations = report?.violations.map((v) => `  ${v.rule}: ${v.message}`).join("\n");
    throw new Error(
      `${messageOf(failure ?? checkError)}\nchecker: ${violations || (report ? "no violations" : messageOf(checkError))}`,
    );
  }
  return { report, row };
}

const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err));
const firstLine = (err: unknown) => messageOf(err).split("\n")[0];

function emptyRow(fault: string, trials: number): FaultRow {
  return {
    fault,
    trials,
    checkerOk: false,
    violations: 0,
    revisions: 0,
    leaderActions: 0,
    primaryChanged: 0,
    failoverMs: [],
    gapMs: [],
  };
}

/** The summary row of one fault: primary moves within each trial's revisions, and the checker's verdict. */
export function rowOf(fault: string, trials: readonly Trial[], report: CheckReport, note?: string): FaultRow {
  const moves = trials.flatMap((trial) => {
    const failover = report.failovers.find(
      (f) => f.deletedRevision > trial.revision && f.putRevision <= trial.endRevision,
    );
    return failover ? [{ failoverMs: failover.putAt - trial.startedAt, gapMs: failover.gapMs }] : [];
  });
  return {
    fault,
    trials: trials.length,
    checkerOk: report.ok,
    violations: report.violations.length,
    revisions: report.counts.revisions,
    leaderActions: report.counts.leaderActions,
    primaryChanged: moves.length,
    failoverMs: moves.map((m) => m.failoverMs),
    gapMs: moves.map((m) => m.gapMs),
    note,
  };
}
