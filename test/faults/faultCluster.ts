import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import type { Etcd3 } from "etcd3";
import yaml from "js-yaml";
import { ClusterLayout } from "../../src/config/index.js";
import { type ClusterStatus, readClusterStatus } from "../../src/runtime/clusterStatus.js";
import { SEED_CONFIG } from "../support/clusterNodes.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { waitUntil } from "../support/waitUntil.js";
import { type CheckReport, checkHistory } from "./historyChecker.js";
import { NodeProcess } from "./nodeProcess.js";
import { Observer } from "./observer.js";
import type { FaultRow } from "./summary.js";

export const TTL_SECONDS = 2;
export const TTL_MS = TTL_SECONDS * 1000;
/** One grouping: three groups of three node IDs. */
export const FAULT_CONFIG = { ...SEED_CONFIG, groups: 3 };
export const FAULT_LAYOUT = new ClusterLayout(FAULT_CONFIG);

const RESULTS_DIR = fileURLToPath(new URL("./results", import.meta.url));
const SETTLE_TIMEOUT_MS = 30_000;
const QUIET_MS = TTL_MS + 500;

/** One injected fault: wall time and etcd revision just before it, and the revision once settled again. */
export interface Trial {
  startedAt: number;
  revision: number;
  endRevision: number;
}

export interface Settled {
  status: ClusterStatus;
  primary: NodeProcess;
  backup: NodeProcess;
}

/**
 * A three-member etcd, an observer of its whole key space from revision 1, and `rdeebee-cluster
 * node` processes of one grouping, each behind its own proxies and writing its own history.
 */
export class FaultCluster {
  readonly nodes: NodeProcess[] = [];
  readonly foreignRevisions = new Set<number>();
  readonly trials: Trial[] = [];
  readonly configPath: string;
  private spawned = 0;

  private constructor(
    readonly name: string,
    readonly etcd: EtcdCluster,
    readonly client: Etcd3,
    readonly observer: Observer,
    readonly dir: string,
  ) {
    this.configPath = join(dir, "config.yaml");
    writeFileSync(this.configPath, yaml.dump(FAULT_CONFIG));
  }

  static async start(name: string, nodeCount = 4): Promise<FaultCluster> {
    const dir = mkdtempSync(join(tmpdir(), "rdeebee-faults-"));
    const etcd = await startEtcd({ members: 3, name: "faults" });
    const client = etcd.client();
    const observer = await Observer.start(client, join(dir, "observer.jsonl"));
    const cluster = new FaultCluster(name, etcd, client, observer, dir);
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

  async addNode(): Promise<NodeProcess> {
    this.spawned += 1;
    const name = `${this.name}-${this.spawned}`;
    const node = await NodeProcess.spawn({
      name,
      etcdEndpoints: this.etcd.endpoints,
      config: this.configPath,
      historyFile: join(this.dir, `${name}.history.jsonl`),
      leaseTtlSeconds: TTL_SECONDS,
    });
    this.nodes.push(node);
    return node;
  }

  /** Processes that run and are not paused. */
  active(): NodeProcess[] {
    return this.nodes.filter((n) => n.running && !n.isPaused);
  }

  byName(name: string | undefined): NodeProcess | undefined {
    return this.nodes.find((n) => n.name === name);
  }

  status(): Promise<ClusterStatus> {
    return readClusterStatus(this.client, FAULT_LAYOUT);
  }

  async revision(): Promise<number> {
    return Number((await this.client.get(FAULT_LAYOUT.keys.idKey).exec()).header.revision);
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

  /** Settled, with no etcd write for `quietMs`: the fault has played out (a lease may expire late). */
  async settledAndQuiet(timeoutMs = SETTLE_TIMEOUT_MS, quietMs = QUIET_MS): Promise<Settled> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const settled = await this.settled(Math.max(0, deadline - Date.now()));
      const revision = await this.revision();
      await sleep(quietMs);
      if ((await this.revision()) === revision) return settled;
    }
  }

  /**
   * Waits until the grouping has a primary and a backup among the active processes, and both say
   * so in their logs; every active process is a member once; every failed slot is advertised.
   */
  async settled(timeoutMs = SETTLE_TIMEOUT_MS): Promise<Settled> {
    let last = "";
    try {
      return await waitUntil(
        `${this.name}: a primary, a backup and every active process a member`,
        async () => {
          const status = await this.status();
          const leaders = status.groupings[0];
          const primary = this.byName(leaders?.primary?.name);
          const backup = this.byName(leaders?.backup?.name);
          const members = status.groups.flatMap((g) => g.members.map((m) => m.name)).sort();
          const active = this.active()
            .map((n) => n.name)
            .sort();
          last = describeState(status, this.nodes);
          const settled =
            primary?.role === "primary" &&
            backup?.role === "backup" &&
            members.join() === active.join() &&
            status.groups.every((g) => g.missing.length === 0) &&
            status.problems.length === 0;
          return settled ? { status, primary, backup } : undefined;
        },
        timeoutMs,
        100,
      );
    } catch (err) {
      throw new Error(`${String(err)}\nlast seen: ${last}`);
    }
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

  /** Stops every process gracefully, waits for the observer, and checks the whole history. */
  async finish(): Promise<CheckReport> {
    await Promise.all(this.nodes.map((n) => n.stop()));
    await this.observer.catchUp(this.client);
    const report = checkHistory({
      layout: FAULT_LAYOUT,
      events: this.observer.events,
      histories: this.nodes.flatMap((n) => n.history()),
      foreignRevisions: this.foreignRevisions,
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
  const leaders = status.groupings[0];
  const processes = nodes
    .filter((n) => n.running)
    .map((n) => `${n.name}=${n.role}${n.isPaused ? "(paused)" : ""}`)
    .join(" ");
  return JSON.stringify({
    primary: leaders?.primary?.name,
    backup: leaders?.backup?.name,
    members: status.groups.flatMap((g) => g.members.map((m) => `${m.id}:${m.name}`)),
    missing: status.groups.flatMap((g) => g.missing),
    advertised: status.advertised.map((a) => a.id),
    problems: status.problems,
    processes,
  });
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
