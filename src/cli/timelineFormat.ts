import type { TimelineEntry } from "../runtime/timeline.js";

const offset = (t: number, t0: number) => `+${((t - t0) / 1000).toFixed(3)}s`;

const NO_TRANSITIONS = "no role transitions in the recordings (no node machine snapshot in them)";

const idSuffix = (id: number | undefined) => (id === undefined ? "" : ` id ${id}`);

/** What happened, in words: `backup -> primary`, or a vanished node's last role. */
function describe(e: TimelineEntry): { change: string; detail: string } {
  if (e.kind === "vanished")
    return {
      change: `vanished, last seen as ${e.lastRole}`,
      detail: `(${e.lastState}; the recording ends without a stop)`,
    };
  return {
    change: e.fromRole === e.toRole ? e.toRole : `${e.fromRole ?? "-"} -> ${e.toRole}`,
    detail: `(${e.fromState ?? "-"} -> ${e.toState} on ${e.event ?? "?"})`,
  };
}

export function timelineText(entries: readonly TimelineEntry[]): string {
  if (entries.length === 0) return NO_TRANSITIONS;
  const t0 = entries[0]?.t ?? 0;
  const width = Math.max(4, ...entries.map((e) => e.node.length));
  return entries
    .map((e) => {
      const { change, detail } = describe(e);
      return `${offset(e.t, t0).padStart(10)}  ${e.node.padEnd(width)}  ${change.padEnd(26)} ${detail}${idSuffix(e.id)}`;
    })
    .join("\n");
}

const escapeHtml = (s: string) =>
  s.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] ?? c,
  );

const ROLE_COLOURS: Record<string, string> = {
  primary: "#1b7f3b",
  backup: "#2f6fb3",
  candidate: "#b8860b",
  follower: "#555",
  suspended: "#b22222",
  stopped: "#999",
  stopping: "#999",
  bootstrapping: "#7a4fb3",
  connecting: "#7a4fb3",
};

type Transition = Extract<TimelineEntry, { kind: "transition" }>;
type Vanished = Extract<TimelineEntry, { kind: "vanished" }>;

function transitionCell(e: Transition): string {
  const colour = ROLE_COLOURS[e.toRole] ?? "#000";
  const change = `${escapeHtml(e.fromRole ?? "-")} &rarr; <b style="color:${colour}">${escapeHtml(e.toRole)}</b>`;
  const detail = escapeHtml(`${e.fromState ?? "-"} -> ${e.toState} on ${e.event ?? "?"}${idSuffix(e.id)}`);
  return `<td class="transition" data-node="${escapeHtml(e.node)}" data-role="${escapeHtml(e.toRole)}">${change}<div class="detail">${detail}</div></td>`;
}

function vanishedCell(e: Vanished): string {
  const detail = escapeHtml(`${e.lastState}; the recording ends without a stop${idSuffix(e.id)}`);
  return `<td class="vanished" data-node="${escapeHtml(e.node)}" data-role="vanished">last seen as <b>${escapeHtml(e.lastRole)}</b> &mdash; <b class="gone">vanished</b><div class="detail">${detail}</div></td>`;
}

/** A self-contained page (no scripts, no external assets): one column per node, one row per transition. */
export function timelineHtml(
  entries: readonly TimelineEntry[],
  title = "rdeebee-cluster role timeline",
): string {
  const t0 = entries[0]?.t ?? 0;
  const nodes = [...new Set(entries.map((e) => e.node))].sort();
  const header = nodes.map((n) => `<th>${escapeHtml(n)}</th>`).join("");
  const rows = entries
    .map((e) => {
      const cells = nodes
        .map((n) => {
          if (n !== e.node) return "<td></td>";
          return e.kind === "vanished" ? vanishedCell(e) : transitionCell(e);
        })
        .join("");
      return `<tr><td class="time">${offset(e.t, t0)}</td>${cells}</tr>`;
    })
    .join("\n");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5rem}
table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 8px;vertical-align:top}
th{background:#f4f4f4;position:sticky;top:0}
td.time{font-family:monospace;color:#666;white-space:nowrap}
.detail{font-size:11px;color:#777;font-family:monospace}
td.vanished{background:#fbeaea}
.gone{color:#b22222}
</style></head>
<body><h1>${escapeHtml(title)}</h1>
<p>${entries.length === 0 ? escapeHtml(NO_TRANSITIONS) : `${entries.length} entries across ${nodes.length} nodes, starting ${escapeHtml(new Date(t0).toISOString())}.`}</p>
<table id="timeline"><thead><tr><th>time</th>${header}</tr></thead>
<tbody>
${rows}
</tbody></table></body></html>
`;
}
