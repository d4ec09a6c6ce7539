import type CliTable3 from "cli-table3";
import type { ClusterLayout } from "../../config/index.js";
import { importOptional } from "../../optionalDependency.js";
import type { ClusterStatus, SeatStatus } from "../../runtime/clusterStatus.js";
import type { NodeView } from "./nodeProcesses.js";
import type { PolledStatus } from "./statusPoller.js";
import type { RoleChange } from "./transitionLog.js";

export interface ScreenModel {
  layout: ClusterLayout;
  configPath: string;
  leaseTtl: number;
  etcd: { endpoint: string; pid?: number; rootDir?: string; exitReason?: string };
  /** Where the nodes record their inspection events (`--inspect-dir`). */
  inspectDir?: string;
  nodes: readonly NodeView[];
  selected: number;
  polled: PolledStatus;
  recent: readonly RoleChange[];
  /** Changes into and out of leader seats, oldest first; the latest few of each grouping are shown. */
  leaderChanges: readonly RoleChange[];
  /** Keys work (stdin is a TTY). */
  interactive: boolean;
  color: boolean;
  /** The outcome of the last key, or what is happening while quitting. */
  notice?: string;
}

import { KEYS_HELP } from "./registerLocalCommand.js";

let Table: typeof CliTable3 | undefined;

/** Loads cli-table3 (an optional package) once, before the first screen is rendered. */
export async function loadTableRenderer(): Promise<void> {
  Table ??= (await importOptional<{ default: typeof CliTable3 }>("cli-table3", "rdeebee-cluster local"))
    .default;
}

const ANSI = {
  bold: 1,
  dim: 2,
  inverse: 7,
  red: 31,
  green: 32,
  yellow: 33,
  blue: 34,
  magenta: 35,
  cyan: 36,
} as const;
type Style = keyof typeof ANSI;

function plainTable(head: string[]) {
  if (!Table) throw new Error("loadTableRenderer() must be awaited before rendering");
  return new Table({
    head,
    style: { head: [], border: [], compact: true, "padding-left": 1, "padding-right": 1 },
  });
}

function painter(color: boolean) {
  return (text: string, ...styles: Style[]) =>
    color && styles.length > 0 ? `\x1b[${styles.map((s) => ANSI[s]).join(";")}m${text}\x1b[0m` : text;
}

const PRIMARY: Style[] = ["green", "bold"];
const BACKUP: Style[] = ["yellow", "bold"];
const VACANT: Style[] = ["red"];

const ROLE_STYLE: Record<string, Style[]> = {
  primary: PRIMARY,
  backup: BACKUP,
  candidate: ["cyan"],
  suspended: ["magenta"],
};

const LIVENESS_STYLE: Record<NodeView["liveness"], Style[]> = {
  starting: ["dim"],
  alive: ["green"],
  paused: ["cyan"],
  stopping: ["yellow"],
  stopped: ["dim"],
  crashed: ["red", "bold"],
  killed: ["red"],
  exited: ["red"],
};

const clock = (at: Date) =>
  [at.getHours(), at.getMinutes(), at.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":") +
  `.${String(at.getMilliseconds()).padStart(3, "0")}`;

function holdsMemberKey(node: NodeView, status: ClusterStatus | undefined): boolean {
  return (status?.groups ?? []).some((g) => g.members.some((m) => m.name === node.name && m.id === node.id));
}

function leaseText(node: NodeView, status: ClusterStatus | undefined): string {
  const keyHeld = holdsMemberKey(node, status);
  switch (node.liveness) {
    case "paused":
    case "crashed":
    case "killed":
      return `${node.liveness} (${keyHeld ? "lease still held" : "lease gone"})`;
    case "stopped":
    case "exited":
      return keyHeld ? `${node.liveness} (lease still held)` : node.liveness;
    default:
      return node.liveness;
  }
}

function nodeTable(model: ScreenModel, paint: ReturnType<typeof painter>): string {
  const head = ["node", "pid", "ID", "group", "role", "lease"];
  const table = plainTable(model.interactive ? ["", ...head] : head);
  const status = model.polled.status;
  model.nodes.forEach((node, index) => {
    const selected = index === model.selected;
    const dead = !node.running && node.liveness !== "starting";
    const group =
      node.id !== undefined && model.layout.isNodeId(node.id) ? model.layout.nodeGroup(node.id) : undefined;
    const role =
      dead && node.role !== "stopped"
        ? `(was ${node.role})`
        : node.liveness === "paused"
          ? `${node.role} (frozen)`
          : node.role;
    const marker = model.interactive ? [selected ? paint("▶", "bold") : ""] : [];
    table.push([
      ...marker,
      selected && model.interactive ? paint(node.name, "inverse") : node.name,
      node.pid ?? "-",
      node.id ?? "-",
      group ?? "-",
      dead ? paint(role, "dim") : paint(role, ...(ROLE_STYLE[node.role] ?? [])),
      paint(leaseText(node, status), ...LIVENESS_STYLE[node.liveness]),
    ]);
  });
  return table.toString();
}

const seatText = (seat: SeatStatus | undefined) =>
  seat === undefined
    ? "(vacant)"
    : seat.problem
      ? `(bad value: ${seat.problem})`
      : `ID ${seat.id} ${seat.name ?? "?"} (token ${seat.token})`;

function groupingTable(model: ScreenModel, paint: ReturnType<typeof painter>): string[] {
  const status = model.polled.status;
  if (!status) return [model.polled.error ? `etcd: ${model.polled.error}` : "reading etcd ..."];
  const table = plainTable([
    "grouping",
    "groups",
    "primary (etcd)",
    "backup (etcd)",
    "live IDs",
    "missing IDs",
  ]);
  const hidden: number[] = [];
  for (const g of status.groupings) {
    const groups = status.groups.filter((s) => g.groups.includes(s.group));
    const live = groups.flatMap((s) => s.members.map((m) => m.id));
    const missing = groups.flatMap((s) => s.missing);
    const used = live.length + missing.length > 0 || g.primary !== undefined || g.backup !== undefined;
    if (!used && g.grouping > 0) {
      hidden.push(g.grouping);
      continue;
    }
    table.push([
      g.grouping,
      g.groups.join(", "),
      paint(seatText(g.primary), ...(g.primary ? PRIMARY : VACANT)),
      paint(seatText(g.backup), ...(g.backup ? BACKUP : VACANT)),
      live.join(" ") || "-",
      missing.length > 0 ? paint(missing.join(" "), "red") : "-",
    ]);
  }
  const advertised = status.advertised.map(
    (a) => `${a.id}${a.advertisedBy === undefined ? "" : ` (by ${a.advertisedBy})`}`,
  );
  const lines = [table.toString()];
  if (hidden.length > 0)
    lines.push(paint(`groupings ${hidden.join(", ")}: no node IDs handed out yet`, "dim"));
  lines.push(
    `advertised failed slots: ${advertised.length > 0 ? paint(advertised.join(", "), "yellow", "bold") : "none"}` +
      `   ·   IDs handed out: ${status.allocated}/${model.layout.capacity}   ·   etcd revision ${status.revision}`,
  );
  for (const problem of status.problems) lines.push(paint(`bad value in etcd: ${problem}`, "red"));
  if (model.polled.error) lines.push(paint(`etcd read failed: ${model.polled.error}`, "red"));
  return lines;
}

const LEADER_CHANGES_PER_GROUPING = 3;

function changeLine(change: RoleChange, paint: ReturnType<typeof painter>): string {
  const to =
    change.kind === "role"
      ? paint(change.to, ...(ROLE_STYLE[change.to] ?? []))
      : paint(`[${change.to}]`, "red");
  return `${clock(change.at)}  ${change.node.padEnd(10)} ${change.from} → ${to}`;
}

function leaderChangeLines(model: ScreenModel, paint: ReturnType<typeof painter>): string[] {
  const byGrouping = new Map<number, RoleChange[]>();
  for (const change of model.leaderChanges) {
    if (change.id === undefined || !model.layout.isNodeId(change.id)) continue;
    const grouping = model.layout.groupingOfNode(change.id);
    byGrouping.set(grouping, [...(byGrouping.get(grouping) ?? []), change]);
  }
  const lines = [paint(`leader changes (latest ${LEADER_CHANGES_PER_GROUPING} per grouping)`, "bold")];
  if (byGrouping.size === 0) lines.push(paint("  (none yet)", "dim"));
  for (const [grouping, changes] of [...byGrouping].sort(([a], [b]) => a - b)) {
    for (const change of changes.slice(-LEADER_CHANGES_PER_GROUPING))
      lines.push(`  grouping ${grouping}  ${changeLine(change, paint)}`);
  }
  return lines;
}

function recentLines(model: ScreenModel, paint: ReturnType<typeof painter>): string[] {
  const lines = [paint("recent transitions (follower ↔ candidate left out)", "bold")];
  if (model.recent.length === 0) lines.push(paint("  (none yet)", "dim"));
  for (const change of model.recent) lines.push(`  ${changeLine(change, paint)}`);
  return lines;
}

function header(model: ScreenModel, paint: ReturnType<typeof painter>): string[] {
  const { etcd } = model;
  const etcdText = etcd.rootDir
    ? `etcd ${etcd.endpoint} (pid ${etcd.pid ?? "-"})`
    : `etcd ${etcd.endpoint} (given with --etcd; left running)`;
  const lines = [
    `${paint("rdeebee-cluster local", "bold")} · ${etcdText} · lease TTL ${model.leaseTtl} s · config ${model.configPath}`,
  ];
  if (etcd.rootDir) lines.push(`etcd data dir: ${etcd.rootDir} (removed on quit)`);
  if (model.inspectDir)
    lines.push(
      `inspection: ${model.inspectDir}/<node>.jsonl (rdeebee-cluster timeline ${model.inspectDir}/*.jsonl)`,
    );
  if (etcd.exitReason) lines.push(paint(`etcd ${etcd.exitReason}`, "red", "bold"));
  return lines;
}

function footer(model: ScreenModel, paint: ReturnType<typeof painter>): string[] {
  const lines: string[] = [];
  const selected = model.nodes[model.selected];
  if (model.notice) lines.push(paint(model.notice, "yellow"));
  if (model.interactive && selected?.lastMessage)
    lines.push(paint(`${selected.name}: ${selected.lastMessage}`, "dim"));
  lines.push(
    model.interactive
      ? paint(KEYS_HELP, "bold")
      : "stdin is not a terminal: keys are off; SIGINT or SIGTERM stops every node and the etcd",
  );
  return lines;
}

/** The whole screen as text, without cursor movement; colours only when `model.color`. */
export function renderScreen(model: ScreenModel): string {
  const paint = painter(model.color);
  return [
    ...header(model, paint),
    nodeTable(model, paint),
    ...groupingTable(model, paint),
    "",
    ...leaderChangeLines(model, paint),
    "",
    ...recentLines(model, paint),
    "",
    ...footer(model, paint),
  ].join("\n");
}
