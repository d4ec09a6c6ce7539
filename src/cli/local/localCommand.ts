import { mkdirSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { ClusterLayout, ConfigError, loadClusterConfig, resolveNodeSettings } from "../../config/index.js";
import { assertEtcdReachable } from "../../runtime/index.js";
import { EtcdStartError, type LocalEtcd, startLocalEtcd } from "./localEtcd.js";
import { NodeProcesses } from "./nodeProcesses.js";
import { ReaperLink } from "./reaperLink.js";
import type { LocalCommandOptions } from "./registerLocalCommand.js";
import { StatusPoller } from "./statusPoller.js";
import { loadTableRenderer, renderScreen } from "./table.js";
import { type KeyAction, Terminal } from "./terminal.js";

const INTERACTIVE_FRAME_MS = 100;
const PLAIN_FRAME_MS = 500;
const EXIT_GUARD_MS = 2_000;
const QUIT_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

/**
 * Everything `local` started is gone by now, so nothing should keep the process alive; if something
 * does, say what it is and exit rather than leave the terminal hanging.
 */
function exitIfStillAlive(): void {
  const resources = process.getActiveResourcesInfo().filter((r) => r !== "Timeout");
  process.stderr.write(
    `rdeebee-cluster local: still alive after cleanup (${resources.join(", ")}); exiting\n`,
  );
  process.exit(process.exitCode ?? 0);
}

function parseNodeCount(text: string, capacity: number): number {
  const count = Number(text);
  if (!/^\d+$/.test(text.trim()) || count < 1 || count > capacity) {
    throw new ConfigError("--nodes", [
      `must be a whole number from 1 to ${capacity} (groups × group_size of the config), got "${text}"`,
    ]);
  }
  return count;
}

/** The `--inspect-dir` directory, made if missing; a clear error if the path is there but not a directory. */
function inspectionDirectory(dir: string | undefined): string | undefined {
  if (dir === undefined) return undefined;
  const path = resolve(dir);
  try {
    mkdirSync(path, { recursive: true });
  } catch (err) {
    throw new ConfigError("--inspect-dir", [`cannot create directory "${path}": ${(err as Error).message}`]);
  }
  if (!statSync(path).isDirectory()) throw new ConfigError("--inspect-dir", [`"${path}" is not a directory`]);
  return path;
}

interface SessionSetup {
  layout: ClusterLayout;
  configPath: string;
  leaseTtl: number;
  endpoints: string[];
  etcd: LocalEtcd | undefined;
  count: number;
  inspectDir: string | undefined;
  reaper: ReaperLink;
}

/** One run of `local`: the children, the status poller, the screen and the keys, until quit. */
class LocalSession {
  private readonly nodes: NodeProcesses;
  private readonly poller: StatusPoller;
  private readonly terminal: Terminal;
  private selected = 0;
  private notice: string | undefined;
  private frameTimer: NodeJS.Timeout | undefined;
  private lastFrameAt = 0;
  private quitting = false;
  private finished!: () => void;
  private readonly onSignal = (signal: NodeJS.Signals) => void this.quit(signal);

  constructor(private readonly setup: SessionSetup) {
    this.nodes = new NodeProcesses({
      etcd: setup.endpoints.join(","),
      config: setup.configPath,
      leaseTtl: setup.leaseTtl,
      inspectDir: setup.inspectDir,
      reaper: setup.reaper,
    });
    this.poller = new StatusPoller(setup.endpoints, setup.layout);
    this.terminal = new Terminal((action) => this.onKey(action));
  }

  run(): Promise<void> {
    const done = new Promise<void>((resolve) => {
      this.finished = resolve;
    });
    for (const signal of QUIT_SIGNALS) process.on(signal, this.onSignal);
    this.terminal.open();
    this.nodes.changes.subscribe(() => this.scheduleFrame());
    this.poller.status.subscribe(() => this.scheduleFrame());
    void this.setup.etcd?.exited.then(() => this.scheduleFrame());
    for (let i = 0; i < this.setup.count; i++) this.nodes.add();
    this.poller.start();
    return done;
  }

  private onKey(action: KeyAction): void {
    if (action === "quit") {
      void this.quit("quit key");
      return;
    }
    if (this.quitting) return;
    const list = this.nodes.list;
    const node = list[this.selected];
    switch (action) {
      case "up":
        this.selected = Math.max(0, this.selected - 1);
        break;
      case "down":
        this.selected = Math.min(list.length - 1, this.selected + 1);
        break;
      case "add": {
        const added = this.nodes.add();
        this.notice = `added ${added.name} (pid ${added.pid ?? "-"})`;
        break;
      }
      default:
        if (node) this.notice = this.signalNode(action, node.name);
    }
    this.scheduleFrame();
  }

  private signalNode(action: "crash" | "pause" | "resume" | "stop", name: string): string {
    const pid = this.nodes.list.find((n) => n.name === name)?.pid;
    const ttl = this.setup.leaseTtl;
    switch (action) {
      case "crash":
        return this.nodes.crash(name)
          ? `crashed ${name} (SIGKILL to pid ${pid}); its lease watchdog revokes its lease at once (without one, etcd expires it within ${ttl} s)`
          : `${name} is not running`;
      case "pause":
        return this.nodes.pause(name)
          ? `paused ${name} (SIGSTOP to pid ${pid}); its keepalives stop and its lease expires within ${ttl} s`
          : `${name} is not running, or already paused or stopping`;
      case "resume":
        return this.nodes.resume(name) ? `resumed ${name} (SIGCONT to pid ${pid})` : `${name} is not paused`;
      case "stop":
        return this.nodes.stop(name)
          ? `stopping ${name} (SIGTERM to pid ${pid}): it resigns, deregisters and revokes its lease`
          : `${name} is not running, or already stopping`;
    }
  }

  private scheduleFrame(): void {
    if (this.frameTimer !== undefined) return;
    const minGap = this.terminal.interactive ? INTERACTIVE_FRAME_MS : PLAIN_FRAME_MS;
    const wait = Math.max(0, this.lastFrameAt + minGap - Date.now());
    this.frameTimer = setTimeout(() => this.drawNow(), wait);
  }

  private drawNow(): void {
    clearTimeout(this.frameTimer);
    this.frameTimer = undefined;
    this.lastFrameAt = Date.now();
    const { etcd } = this.setup;
    this.terminal.draw(
      renderScreen({
        layout: this.setup.layout,
        configPath: this.setup.configPath,
        leaseTtl: this.setup.leaseTtl,
        etcd: {
          endpoint: this.setup.endpoints.join(","),
          pid: etcd?.pid,
          rootDir: etcd?.rootDir,
          exitReason: etcd?.running === false && !this.quitting ? etcd.exitReason : undefined,
        },
        nodes: this.nodes.list,
        selected: this.selected,
        polled: this.poller.status.value,
        recent: this.nodes.recent,
        leaderChanges: this.nodes.leaderChanges,
        inspectDir: this.setup.inspectDir,
        interactive: this.terminal.interactive,
        color: this.terminal.color,
        notice: this.notice,
      }),
    );
  }

  private async quit(reason: string): Promise<void> {
    if (this.quitting) {
      this.nodes.killAll();
      this.notice = "second quit: SIGKILL to every node still running";
      this.drawNow();
      return;
    }
    this.quitting = true;
    const running = this.nodes.list.filter((n) => n.running);
    this.notice =
      `quitting (${reason}): stopping ${running.length} nodes (SIGTERM, SIGKILL after 2 s) ...` +
      (this.terminal.interactive ? " q or Ctrl-C again: SIGKILL now" : "");
    this.drawNow();
    await this.nodes.stopAll();
    await this.poller.refresh();
    await this.poller.close();
    this.notice = "stopping etcd ...";
    this.drawNow();
    await this.setup.etcd?.stop();
    clearTimeout(this.frameTimer);
    this.terminal.close();
    for (const signal of QUIT_SIGNALS) process.off(signal, this.onSignal);
    this.nodes.dispose();
    this.setup.reaper.done();
    process.stdout.write(`${this.summary()}\n`);
    this.finished();
    setTimeout(exitIfStillAlive, EXIT_GUARD_MS).unref();
  }

  private summary(): string {
    const nodes = this.nodes.list.map((n) => `  ${n.name} (pid ${n.pid ?? "-"}): ${n.liveness}`);
    const { etcd } = this.setup;
    const etcdText = etcd
      ? `  etcd (pid ${etcd.pid ?? "-"}): stopped; removed ${etcd.rootDir}`
      : `  etcd at ${this.setup.endpoints.join(",")}: left running`;
    const inspection = this.setup.inspectDir
      ? [`  inspection files kept: rdeebee-cluster timeline ${this.setup.inspectDir}/*.jsonl`]
      : [];
    return ["rdeebee-cluster local: done", ...nodes, etcdText, ...inspection].join("\n");
  }
}

/**
 * Runs a whole cluster on this machine: a throwaway etcd (unless `--etcd`), N node processes and a
 * live table of their roles, with keys to crash, pause, resume, stop and add nodes.
 */
export async function localCommand(options: LocalCommandOptions): Promise<number> {
  const configPath = resolve(options.config);
  const layout = new ClusterLayout(loadClusterConfig(configPath));
  const count = parseNodeCount(options.nodes, layout.capacity);
  const settings = resolveNodeSettings({ leaseTtl: options.leaseTtl, etcd: options.etcd }, {});
  const inspectDir = inspectionDirectory(options.inspectDir);
  await loadTableRenderer();
  let etcd: LocalEtcd | undefined;
  if (options.etcd !== undefined) await assertEtcdReachable(settings.etcdEndpoints);
  const reaper = new ReaperLink();
  if (options.etcd === undefined) {
    try {
      etcd = await startLocalEtcd(reaper);
    } catch (err) {
      reaper.done();
      if (!(err instanceof EtcdStartError)) throw err;
      process.stderr.write(`rdeebee-cluster: ${err.message}\n`);
      return 1;
    }
  }
  const endpoints = etcd ? [etcd.endpoint] : settings.etcdEndpoints;
  await new LocalSession({
    layout,
    configPath,
    leaseTtl: settings.leaseTtlSeconds,
    endpoints,
    etcd,
    count,
    inspectDir,
    reaper,
  }).run();
  return 0;
}
