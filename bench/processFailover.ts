import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import type { Etcd3, Watcher } from "etcd3";
import yaml from "js-yaml";
import { CliProcess, type LogLine } from "../src/cli/local/cliProcess.js";
import { type ClusterConfig, ClusterLayout } from "../src/config/index.js";
import { leaseSecondsLeft } from "../src/etcd/index.js";
import { TcpProxy } from "../src/testing/tcpProxy.js";
import { isProcessAlive } from "../test/support/cli.js";
import { SEED_CONFIG } from "../test/support/clusterNodes.js";
import type { EtcdCluster } from "../test/support/etcdCluster.js";
import { errorText, freshKeysConfig, settleMs } from "./support.js";

/**
 * Process-level crash failover: `kill -9` of the primary's `rdeebee-cluster node` process (its lease
 * watchdog revokes the lease; with `--no-watchdog` the lease expires by its TTL) against `kill -9`
 * of the leader's etcd3 `Election` process (its lease expires by the TTL). Both are timed from the
 * kill to what an observer watching etcd sees: our new primary key put by the backup; etcd3's dead
 * leader key deleted (its next candidate leads from then).
 */

export interface ProcessTrial {
  trial: number;
  ok: boolean;
  ms?: number;
  error?: string;
  details?: Record<string, number | string | boolean | null>;
}

const SETUP_TIMEOUT_MS = 60_000;

async function waitFor<T>(
  what: string,
  check: () => T | undefined | Promise<T | undefined>,
  timeoutMs: number,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** The first watch event on `prefix` after now that satisfies `match`, with its receive time. */
async function watchOnce(
  client: Etcd3,
  prefix: string,
  match: (event: "put" | "delete", key: string, value: string) => boolean,
): Promise<{ watcher: Watcher; seen: Promise<number> }> {
  const watcher = await client.watch().prefix(prefix).create();
  const seen = new Promise<number>((resolve) => {
    watcher.on("put", (kv) => {
      if (match("put", kv.key.toString(), kv.value.toString())) resolve(performance.now());
    });
    watcher.on("delete", (kv) => {
      if (match("delete", kv.key.toString(), kv.value.toString())) resolve(performance.now());
    });
  });
  return { watcher, seen };
}

async function timed(seen: Promise<number>, t0: number, timeoutMs: number, what: string): Promise<number> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)),
      timeoutMs,
    );
  });
  try {
    return (await Promise.race([seen, timeout])) - t0;
  } finally {
    clearTimeout(timer);
  }
}

class NodeProc {
  readonly lines: LogLine[] = [];
  readonly proc: CliProcess;
  constructor(
    readonly name: string,
    args: string[],
  ) {
    this.proc = new CliProcess(args, { onLine: (line) => this.lines.push(line) });
  }
  heldLease(): unknown {
    return this.lines.filter((l) => l.message === "lease watchdog holds lease").at(-1)?.lease;
  }
  watchdogPids(): number[] {
    return this.lines.flatMap((l) =>
      l.message === "lease watchdog started" && typeof l.pid === "number" ? [l.pid] : [],
    );
  }
}

/** When the dead node's watchdog logged its revoke (wall clock, ms resolution) and how long the call took. */
async function revokeDetails(node: NodeProc, killedAt: number): Promise<ProcessTrial["details"]> {
  const line = await waitFor(
    "the watchdog's revoke line",
    () => node.lines.find((l) => l.message === "lease watchdog revoked the lease of its dead node"),
    2_000,
  ).catch(() => undefined);
  if (!line) return { revokedByWatchdog: false };
  return {
    revokedByWatchdog: line.result === "revoked",
    killToRevokeLoggedMs: Date.parse(String(line.timestamp)) - killedAt,
    revokeCallMs: typeof line.ms === "number" ? line.ms : null,
    channelClosedToDeathSeenMs: typeof line.deathSeenAfterMs === "number" ? line.deathSeenAfterMs : null,
  };
}

/** A fresh-keys cluster (two groupings of two groups of two) for one bench, its config written to `dir`. */
function benchCluster(tag: string, dir: string): { layout: ClusterLayout; configFile: string } {
  const config: ClusterConfig = freshKeysConfig(
    tag,
    { ...SEED_CONFIG, groups: 2, group_size: 2, reads: 2 },
    tag,
  );
  const configFile = join(dir, `${tag}.yaml`);
  writeFileSync(configFile, yaml.dump(config));
  return { layout: new ClusterLayout(config), configFile };
}

interface SeatHolder {
  name: string;
  lease: string;
  token: number;
}

/** Who holds `seat` of grouping 0 now (node name, lease, token), if anyone. */
async function seatHolder(
  client: Etcd3,
  layout: ClusterLayout,
  seat: 1 | 2,
): Promise<SeatHolder | undefined> {
  const kv = (await client.get(layout.keys.leaderKey(0, seat)).exec()).kvs[0];
  if (!kv) return undefined;
  return {
    name: (JSON.parse(kv.value.toString()) as { name: string }).name,
    lease: String(kv.lease),
    token: Number(kv.create_revision),
  };
}

/** `rdeebee-cluster node` processes of one fresh-keys grouping; the primary is killed trial after trial. */
export class NodeProcessBench {
  private readonly nodes: NodeProc[] = [];
  private readonly layout: ClusterLayout;
  private readonly configFile: string;
  private spawned = 0;

  constructor(
    private readonly etcd: EtcdCluster,
    private readonly client: Etcd3,
    private readonly ttl: number,
    tag: string,
    dir: string,
    /** false: the nodes run with `--no-watchdog`, so a killed primary fails over by its lease's expiry. */
    private readonly watchdog = true,
  ) {
    ({ layout: this.layout, configFile: this.configFile } = benchCluster(tag, dir));
  }

  private spawnNode(): void {
    this.spawned += 1;
    const name = `n${this.spawned}`;
    const args = ["node", "--etcd", this.etcd.endpoints.join(","), "--node", name];
    if (!this.watchdog) args.push("--no-watchdog");
    this.nodes.push(
      new NodeProc(name, [...args, "--lease-ttl", String(this.ttl), "--config", this.configFile]),
    );
  }

  private seat(seat: 1 | 2): Promise<SeatHolder | undefined> {
    return seatHolder(this.client, this.layout, seat);
  }

  async trial(trial: number): Promise<ProcessTrial> {
    try {
      while (this.nodes.filter((n) => n.proc.running).length < 2) this.spawnNode();
      const primary = await waitFor(
        "a primary and a backup, the primary's watchdog (if any) holding its lease",
        async () => {
          const [p, b] = [await this.seat(1), await this.seat(2)];
          const node = this.nodes.find((n) => n.name === p?.name && n.proc.running);
          const armed = !this.watchdog || node?.heldLease() === p?.lease;
          return p && b && node && armed ? node : undefined;
        },
        SETUP_TIMEOUT_MS,
      );
      await sleep(settleMs(this.ttl));
      const { watcher, seen } = await watchOnce(
        this.client,
        this.layout.keys.leaderKey(0, 1),
        (type, _key, value) => type === "put" && !value.includes(`"name":"${primary.name}"`),
      );
      const t0 = performance.now();
      const killedAt = Date.now();
      process.kill(primary.proc.pid ?? -1, "SIGKILL");
      try {
        const ms = await timed(seen, t0, 5 * this.ttl * 1000, "a new primary");
        const details = this.watchdog ? await revokeDetails(primary, killedAt) : undefined;
        return { trial, ok: true, ms, details };
      } finally {
        await watcher.cancel();
        await primary.proc.exited;
        // The replacement joins the dead node's slot once it is advertised.
        const deadSlotAdvertised = async () =>
          (await this.client.getAll().prefix(this.layout.keys.failoverPrefix).keys()).length > 0 || undefined;
        await waitFor("the dead node's slot advertised", deadSlotAdvertised, SETUP_TIMEOUT_MS).catch(
          () => undefined,
        );
        this.spawnNode();
      }
    } catch (err) {
      return { trial, ok: false, error: errorText(err) };
    }
  }

  async close(): Promise<void> {
    for (const n of this.nodes) n.proc.signal("SIGKILL");
    await Promise.all(this.nodes.map((n) => n.proc.exited));
    const watchdogs = this.nodes.flatMap((n) => n.watchdogPids());
    await waitFor(
      "every watchdog gone",
      () => (watchdogs.every((p) => !isProcessAlive(p)) ? true : undefined),
      15_000,
    ).catch(() => {
      for (const pid of watchdogs) if (isProcessAlive(pid)) process.kill(pid, "SIGKILL");
    });
  }
}

class ElectionProc {
  readonly child: ChildProcess;
  elected = false;
  readonly exited: Promise<void>;
  constructor(
    readonly value: string,
    script: string,
    endpoints: string,
    election: string,
    ttl: number,
  ) {
    this.child = spawn(process.execPath, [script, endpoints, election, String(ttl), value], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    this.child.stdout?.setEncoding("utf8");
    this.child.stdout?.on("data", (text: string) => {
      if (text.includes("elected")) this.elected = true;
    });
    this.exited = new Promise((resolve) => this.child.once("exit", () => resolve()));
  }
  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }
}

/** etcd3 `Election` candidates, one process each; the leader is killed trial after trial. */
export class ElectionProcessBench {
  private readonly candidates: ElectionProc[] = [];
  private spawned = 0;

  constructor(
    private readonly etcd: EtcdCluster,
    private readonly client: Etcd3,
    private readonly ttl: number,
    private readonly election: string,
    private readonly script: string,
  ) {}

  private spawnCandidate(): void {
    this.spawned += 1;
    const endpoints = this.etcd.endpoints.join(",");
    this.candidates.push(
      new ElectionProc(`c${this.spawned}`, this.script, endpoints, this.election, this.ttl),
    );
  }

  /** Keys under the election's prefix, with their values. */
  private async keys(): Promise<Map<string, string>> {
    return new Map(Object.entries(await this.client.getAll().prefix(`election/${this.election}/`).strings()));
  }

  async trial(trial: number): Promise<ProcessTrial> {
    try {
      while (this.candidates.filter((c) => c.running).length < 2) this.spawnCandidate();
      const leader = await waitFor(
        "an elected leader and a second candidate",
        async () => {
          const values = [...(await this.keys()).values()];
          const live = this.candidates.filter((c) => c.running);
          const elected = live.find((c) => c.elected);
          return elected && live.every((c) => values.includes(c.value)) ? elected : undefined;
        },
        SETUP_TIMEOUT_MS,
      );
      await sleep(settleMs(this.ttl));
      const { watcher, seen } = await watchOnce(
        this.client,
        `election/${this.election}/`,
        (type, _key, value) => type === "delete" && (value === "" || value === leader.value),
      );
      const t0 = performance.now();
      leader.child.kill("SIGKILL");
      try {
        const ms = await timed(seen, t0, 5 * this.ttl * 1000, "the dead leader's key deleted");
        return { trial, ok: true, ms };
      } finally {
        await watcher.cancel();
        await leader.exited;
        this.spawnCandidate();
      }
    } catch (err) {
      return { trial, ok: false, error: errorText(err) };
    }
  }

  async close(): Promise<void> {
    for (const c of this.candidates) if (c.running) c.child.kill("SIGKILL");
    await Promise.all(this.candidates.map((c) => c.exited));
  }
}

/** A node process behind its own TCP proxy, so that its link alone can be stalled. */
class ProxiedNode {
  readonly node: NodeProc;
  constructor(
    readonly proxy: TcpProxy,
    name: string,
    args: string[],
  ) {
    this.node = new NodeProc(name, ["node", "--etcd", proxy.endpoint, "--node", name, ...args]);
  }
  /** The role of its latest transition line. */
  role(): unknown {
    return this.node.lines.filter((l) => l.message === "transition").at(-1)?.role;
  }
}

/** What one stall trial saw. */
export interface StallTrial extends ProcessTrial {
  details?: {
    /** The stalled primary's lease still existed when the new primary key was seen: it vacated the seat itself. */
    vacatedWithLeaseAlive?: boolean;
    /** For a blip: the primary kept its seat (same key, same create revision) once the link was back. */
    keptSeat?: boolean;
    blipMs?: number;
  };
}

/**
 * One-way stalls of the primary's link (`stall-downstream`: etcd's replies are held, its requests
 * still arrive) against `rdeebee-cluster node` processes (no watchdog), each behind its own proxy.
 * `stallTrial` times the stall to a new primary key; `blipTrial` stalls for a while, lets the link
 * go, and reports whether the primary kept its seat.
 */
export class StallProcessBench {
  private readonly nodes: ProxiedNode[] = [];
  private readonly layout: ClusterLayout;
  private readonly configFile: string;
  private spawned = 0;

  constructor(
    private readonly etcd: EtcdCluster,
    private readonly client: Etcd3,
    private readonly ttl: number,
    tag: string,
    dir: string,
  ) {
    ({ layout: this.layout, configFile: this.configFile } = benchCluster(tag, dir));
  }

  private async spawnNode(): Promise<void> {
    this.spawned += 1;
    const proxy = await TcpProxy.forEndpoint(this.etcd.endpoints[0] ?? "");
    const args = ["--no-watchdog", "--lease-ttl", String(this.ttl), "--config", this.configFile];
    this.nodes.push(new ProxiedNode(proxy, `s${this.spawned}`, args));
  }

  private seat(seat: 1 | 2): Promise<SeatHolder | undefined> {
    return seatHolder(this.client, this.layout, seat);
  }

  /** A primary and a backup in place, every node out of suspension; the primary's node and key. */
  private async settled() {
    while (this.nodes.filter((n) => n.node.proc.running).length < 3) await this.spawnNode();
    return waitFor(
      "a primary and a backup, every node a member",
      async () => {
        const [p, b] = [await this.seat(1), await this.seat(2)];
        const node = this.nodes.find((n) => n.node.name === p?.name && n.node.proc.running);
        const calm = this.nodes.every((n) => !["suspended", "connecting"].includes(String(n.role())));
        return p && b && node && calm ? { node, key: p } : undefined;
      },
      SETUP_TIMEOUT_MS,
    );
  }

  async stallTrial(trial: number): Promise<StallTrial> {
    try {
      const { node, key } = await this.settled();
      await sleep(settleMs(this.ttl));
      const { watcher, seen } = await watchOnce(
        this.client,
        this.layout.keys.leaderKey(0, 1),
        (type, _key, value) => type === "put" && !value.includes(`"name":"${node.node.name}"`),
      );
      const t0 = performance.now();
      node.proxy.setMode("stall-downstream");
      try {
        const ms = await timed(seen, t0, 5 * this.ttl * 1000, "a new primary");
        const leaseLeft = await leaseSecondsLeft(this.client, key.lease, new Date(Date.now() + 5_000));
        return { trial, ok: true, ms, details: { vacatedWithLeaseAlive: leaseLeft !== undefined } };
      } finally {
        node.proxy.setMode("pass");
        await watcher.cancel();
      }
    } catch (err) {
      return { trial, ok: false, error: errorText(err) };
    }
  }

  async blipTrial(trial: number, blipMs: number): Promise<StallTrial> {
    try {
      const { node, key } = await this.settled();
      await sleep(settleMs(this.ttl));
      node.proxy.setMode("stall-downstream");
      await sleep(blipMs);
      node.proxy.setMode("pass");
      await waitFor(
        "the stalled primary back out of suspension",
        () => (["suspended", "connecting"].includes(String(node.role())) ? undefined : true),
        SETUP_TIMEOUT_MS,
      );
      // Whatever the blip set going (a step-down, a lease expiry) has landed a TTL later.
      await sleep(this.ttl * 1000);
      const now = await this.seat(1);
      const keptSeat = now?.token === key.token && now.lease === key.lease;
      return { trial, ok: true, ms: blipMs, details: { keptSeat, blipMs } };
    } catch (err) {
      return { trial, ok: false, error: errorText(err) };
    }
  }

  async close(): Promise<void> {
    for (const n of this.nodes) n.node.proc.signal("SIGKILL");
    await Promise.all(this.nodes.map((n) => n.node.proc.exited));
    await Promise.all(this.nodes.map((n) => n.proxy.close()));
  }
}
