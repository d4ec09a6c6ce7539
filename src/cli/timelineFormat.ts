import type { TimelineEntry } from "../runtime/timeline.js";

const offset = (t: number, t0: number) => `+${((t - t0) / 1000).toFixed(3)}s`;

export function timelineText(entries: readonly TimelineEntry[]): string {
  const t0 = entries[0]?.t ?? 0;
  const width = Math.max(4, ...entries.map((e) => e.node.length));
  return entries
    .map((e) => {
      const role = e.fromRole === e.toRole ? e.toRole : `${e.fromRole ?? "-"} -> ${e.toRole}`;
      const id = e.id === undefined ? "" : ` id ${e.id}`;
      return `${offset(e.t, t0).padStart(10)}  ${e.node.padEnd(width)}  ${role.padEnd(26)} (${e.fromState ?? "-"} -> ${e.toState} on ${e.event ?? "?"})${id}`;
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
          const colour = ROLE_COLOURS[e.toRole] ?? "#000";
          const change = `${escapeHtml(e.fromRole ?? "-")} &rarr; <b style="color:${colour}">${escapeHtml(e.toRole)}</b>`;
          const detail = escapeHtml(`${e.fromState ?? "-"} -> ${e.toState} on ${e.event ?? "?"}`);
          return `<td class="transition" data-node="${escapeHtml(e.node)}" data-role="${escapeHtml(e.toRole)}">${change}<div class="detail">${detail}${e.id === undefined ? "" : ` · id ${e.id}`}</div></td>`;
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
</style></head>
<body><h1>${escapeHtml(title)}</h1>
<p>${entries.length} transitions across ${nodes.length} nodes, starting ${escapeHtml(new Date(t0).toISOString())}.</p>
<table id="timeline"><thead><tr><th>time</th>${header}</tr></thead>
<tbody>
${rows}
</tbody></table></body></html>
`;
}
