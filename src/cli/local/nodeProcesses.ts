import { join } from "node:path";
import { Subject } from "rxjs";
import { CliProcess, type LogLine, type ProcessExit } from "./cliProcess.js";
import type { ReaperLink } from "./reaperLink.js";
import { type RoleChange, shownRole, TransitionLog } from "./transitionLog.js";

/** What the parent knows about a child process, independent of what etcd says. */
export type Liveness =
  | "starting"
  | "alive"
  | "paused"
  | "stopping"
  | "stopped"
  | "crashed"
  | "killed"
  | "exited";

export interface NodeView {
  readonly name: string;
  readonly pid: number | undefined;
  readonly id: number | undefined;
  /** The last role the child logged (`connecting`, `follower`, `primary`, ...). */
  readonly role: string;
  readonly liveness: Liveness;
  readonly running: boolean;
  /** The last line the child wrote that was not a transition, e.g. why it exited. */
  readonly lastMessage: string | undefined;
}

export interface NodeProcessesOptions {
  etcd: string;
  config: string;
  leaseTtl: number;
  /** How many role changes `recent` keeps. */
  recentLimit?: number;
  /** Each node records its inspection events in `<dir>/<node>.jsonl`. */
  inspectDir?: string;
  /** Told of every child, so that it can stop them if this process dies without doing so. */
  reaper?: Pick<ReaperLink, "process" | "gone">;
}

const STOP_GRACE_MS = 2_000;

class NodeChild implements NodeView {
  id: number | undefined;
  role = "starting";
  liveness: Liveness = "starting";
  lastMessage: string | undefined;
  readonly process: CliProcess;
  readonly exited: Promise<void>;

  constructor(
    readonly name: string,
    args: readonly string[],
    onLine: (node: NodeChild, line: LogLine, raw: string) => void,
    onExit: (node: NodeChild, exit: ProcessExit) => void,
  ) {
    this.process = new CliProcess(args, { detached: true, onLine: (line, raw) => onLine(this, line, raw) });
    this.exited = this.process.exited.then((exit) => {
      if (this.process.spawnError) this.lastMessage = this.process.spawnError;
      onExit(this, exit);
    });
  }

  get pid(): number | undefined {
    return this.process.pid;
  }

  get running(): boolean {
    return this.process.running;
  }

  signal(signal: NodeJS.Signals): void {
    this.process.signal(signal);
  }
}

/**
 * The `rdeebee-cluster node` child processes of `local`: spawns them, follows their JSON log lines
 * on stderr to know each one's ID and role, and signals them by pid.
 */
export class NodeProcesses {
  /** Emits after anything a view shows has changed. */
  readonly changes = new Subject<void>();
  private readonly nodes: NodeChild[] = [];
  private readonly transitions: TransitionLog;
  private spawned = 0;
  private readonly killAllNow = () => {
    for (const node of this.nodes) node.signal("SIGKILL");
  };

  constructor(private readonly options: NodeProcessesOptions) {
    this.transitions = new TransitionLog(options.recentLimit);
    process.on("exit", this.killAllNow);
  }

  get list(): readonly NodeView[] {
    return this.nodes;
  }

  /** The latest role changes, without follower/candidate churn. */
  get recent(): readonly RoleChange[] {
    return this.transitions.recent;
  }

  /** Changes into and out of leader seats, kept longer than `recent`. */
  get leaderChanges(): readonly RoleChange[] {
    return this.transitions.leaders;
  }

  add(): NodeView {
    this.spawned += 1;
    const name = `local-${this.spawned}`;
    const { etcd, config, leaseTtl, inspectDir } = this.options;
    const args = ["node", "--etcd", etcd, "--node", name, "--lease-ttl", String(leaseTtl)];
    if (inspectDir !== undefined) args.push("--inspect-file", join(inspectDir, `${name}.jsonl`));
    const node = new NodeChild(
      name,
      [...args, "--config", config, "--log-level", "info"],
      (n, line, raw) => this.onLine(n, line, raw),
      (n, exit) => this.onExit(n, exit),
    );
    this.options.reaper?.process(node.pid, "node");
    this.nodes.push(node);
    this.changes.next();
    return node;
  }

  /**
   * SIGKILL: the node vanishes without leaving; etcd notices when its lease expires. Each signalling
   * method returns false when there was nothing to signal.
   */
  crash(name: string): boolean {
    return this.mark(name, "crashed", "SIGKILL");
  }

  /** SIGSTOP: the process freezes, keepalives stop, and it wakes up later on resume. */
  pause(name: string): boolean {
    const liveness = this.find(name)?.liveness;
    return liveness !== "paused" && liveness !== "stopping" && this.mark(name, "paused", "SIGSTOP");
  }

  resume(name: string): boolean {
    return this.find(name)?.liveness === "paused" && this.mark(name, "alive", "SIGCONT");
  }

  /** SIGTERM (and SIGCONT, in case it is paused): the node resigns, deregisters, revokes its lease, exits 0. */
  stop(name: string): boolean {
    const node = this.find(name);
    if (node?.liveness === "stopping" || !this.mark(name, "stopping", "SIGTERM")) return false;
    node?.signal("SIGCONT");
    return true;
  }

  /** Stops every running child gracefully; SIGKILL for those still there after `graceMs`. */
  async stopAll(graceMs = STOP_GRACE_MS): Promise<void> {
    const running = this.nodes.filter((node) => node.running);
    for (const node of running) this.stop(node.name);
    const escalation = setTimeout(this.killAllNow, graceMs);
    await Promise.all(running.map((node) => node.exited));
    clearTimeout(escalation);
  }

  /** SIGKILL every child still running, e.g. on a second Ctrl-C. */
  killAll(): void {
    this.killAllNow();
  }

  dispose(): void {
    process.off("exit", this.killAllNow);
    this.changes.complete();
  }

  private find(name: string): NodeChild | undefined {
    return this.nodes.find((node) => node.name === name);
  }

  private mark(name: string, liveness: Liveness, signal: NodeJS.Signals): boolean {
    const node = this.find(name);
    if (!node?.running) return false;
    if (liveness !== "stopping") this.record(node, "process", liveness === "alive" ? "resumed" : liveness);
    node.liveness = liveness;
    node.signal(signal);
    this.changes.next();
    return true;
  }

  private onLine(node: NodeChild, entry: LogLine, raw: string): void {
    if (node.liveness === "starting") node.liveness = "alive";
    if (entry.message === "transition" && typeof entry.role === "string") {
      if (typeof entry.id === "number") node.id = entry.id;
      const role = shownRole(entry.role, entry.to, node.role);
      if (role !== node.role) {
        if (node.role !== "starting") this.record(node, "role", role);
        node.role = role;
      }
    } else if (entry.level === "raw" || entry.level === "warn" || entry.level === "error") {
      node.lastMessage =
        entry.level !== "raw" && typeof entry.message === "string" ? entry.message : raw.trim();
    }
    this.changes.next();
  }

  private record(node: NodeChild, kind: RoleChange["kind"], to: string): void {
    this.transitions.add({ at: new Date(), node: node.name, id: node.id, kind, from: node.role, to });
  }

  private onExit(node: NodeChild, { code, signal }: ProcessExit): void {
    this.options.reaper?.gone(node.pid);
    if (node.liveness === "stopping" && code === 0) {
      if (node.role !== "stopped") this.record(node, "process", "stopped");
      node.liveness = "stopped";
    } else if (node.liveness === "stopping") {
      this.record(node, "process", "killed");
      node.liveness = "killed";
      node.lastMessage = `did not stop within ${STOP_GRACE_MS / 1000} s after SIGTERM; killed`;
    } else if (node.liveness !== "crashed") {
      const liveness = code === null ? "crashed" : "exited";
      const why = signal ? `killed by ${signal}` : `exited with code ${code}`;
      this.record(node, "process", liveness);
      node.liveness = liveness;
      node.lastMessage = node.lastMessage ? `${why}: ${node.lastMessage}` : why;
    }
    this.changes.next();
  }
}
