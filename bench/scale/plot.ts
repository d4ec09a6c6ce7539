/**
 * A hand-written SVG of the scale results: small multiples, one panel per metric, each log-log
 * (x = nodes). A dashed grey reference line through the first point shows what "grows like n"
 * (totals) or "stays flat" (per-node and latency metrics) would look like, so growth is visible
 * at a glance.
 */

export interface Series {
  title: string;
  unit: string;
  /** "linear": a total expected to grow like n; "flat": a per-node or latency figure expected to stay put. */
  reference: "linear" | "flat";
  /** `hollow`: measured on a cluster that did not form. */
  points: { n: number; value: number; hollow?: boolean; label?: string }[];
}

const PANEL_W = 330;
const PANEL_H = 230;
const MARGIN = { left: 58, right: 16, top: 44, bottom: 38 };
const COLUMNS = 3;
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#e377c2"];

const esc = (s: string) =>
  s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;");

function fmt(v: number): string {
  if (!Number.isFinite(v)) return "—";
  const a = Math.abs(v);
  if (a >= 10_000) return `${(v / 1000).toFixed(0)}k`;
  if (a >= 1000) return `${(v / 1000).toFixed(1)}k`;
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  return v.toPrecision(2);
}

/** Decades (and 2x, 5x steps when the range is short) between lo and hi. */
function logTicks(lo: number, hi: number): number[] {
  const ticks: number[] = [];
  const short = Math.log10(hi / lo) < 1.5;
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of short ? [1, 2, 5] : [1]) {
      const t = m * 10 ** e;
      if (t >= lo * 0.999 && t <= hi * 1.001) ticks.push(t);
    }
  }
  return ticks;
}

function panel(series: Series, index: number, sizes: readonly number[]): string {
  const x0 = (index % COLUMNS) * PANEL_W;
  const y0 = Math.floor(index / COLUMNS) * PANEL_H;
  const w = PANEL_W - MARGIN.left - MARGIN.right;
  const h = PANEL_H - MARGIN.top - MARGIN.bottom;
  const pts = series.points.filter((p) => Number.isFinite(p.value) && p.value > 0 && p.n > 0);
  const nLo = Math.min(...sizes);
  const nHi = Math.max(...sizes);
  const xSpan = nHi > nLo ? Math.log10(nHi / nLo) : 1;
  const xOf = (n: number) => MARGIN.left + (nHi > nLo ? (Math.log10(n / nLo) / xSpan) * w : w / 2);
  const first = pts[0];
  const ref = (n: number) =>
    first ? (series.reference === "linear" ? first.value * (n / first.n) : first.value) : 0;
  const values = [...pts.map((p) => p.value), ...(first ? [ref(nLo), ref(nHi)] : [])];
  let lo = values.length ? Math.min(...values) : 1;
  let hi = values.length ? Math.max(...values) : 10;
  if (hi / lo < 3) {
    const mid = Math.sqrt(hi * lo);
    lo = mid / 2;
    hi = mid * 2;
  }
  lo /= 1.3;
  hi *= 1.3;
  const ySpan = Math.log10(hi / lo);
  const yOf = (v: number) => MARGIN.top + h - (Math.log10(v / lo) / ySpan) * h;
  const colour = COLOURS[index % COLOURS.length] as string;
  const out: string[] = [`<g transform="translate(${x0},${y0})">`];
  out.push(
    `<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${w}" height="${h}" fill="#fafafa" stroke="#ccc"/>`,
    `<text x="${MARGIN.left}" y="14" font-size="13" font-weight="bold">${esc(series.title)}</text>`,
    `<text x="${MARGIN.left}" y="28" font-size="10" fill="#666">${esc(series.unit)}, log scale; dashed: ${series.reference === "linear" ? "∝ n" : "flat"}</text>`,
  );
  for (const t of logTicks(lo, hi)) {
    const y = yOf(t).toFixed(1);
    out.push(
      `<line x1="${MARGIN.left}" x2="${MARGIN.left + w}" y1="${y}" y2="${y}" stroke="#e5e5e5"/>`,
      `<text x="${MARGIN.left - 5}" y="${y}" font-size="10" text-anchor="end" dominant-baseline="middle">${fmt(t)}</text>`,
    );
  }
  for (const n of sizes) {
    const x = xOf(n).toFixed(1);
    out.push(
      `<line x1="${x}" x2="${x}" y1="${MARGIN.top}" y2="${MARGIN.top + h}" stroke="#e5e5e5"/>`,
      `<text x="${x}" y="${MARGIN.top + h + 14}" font-size="10" text-anchor="middle">${n}</text>`,
    );
  }
  out.push(
    `<text x="${MARGIN.left + w / 2}" y="${PANEL_H - 6}" font-size="10" text-anchor="middle" fill="#666">nodes</text>`,
  );
  if (first && sizes.length > 1) {
    out.push(
      `<line x1="${xOf(nLo).toFixed(1)}" y1="${yOf(ref(nLo)).toFixed(1)}" x2="${xOf(nHi).toFixed(1)}" y2="${yOf(ref(nHi)).toFixed(1)}" stroke="#999" stroke-dasharray="4 3"/>`,
    );
  }
  if (pts.length > 1) {
    const d = pts.map((p) => `${xOf(p.n).toFixed(1)},${yOf(p.value).toFixed(1)}`).join(" ");
    out.push(`<polyline points="${d}" fill="none" stroke="${colour}" stroke-width="2"/>`);
  }
  for (const p of pts) {
    const x = xOf(p.n);
    const y = yOf(p.value);
    out.push(
      p.hollow
        ? `<circle cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="3.5" fill="white" stroke="${colour}" stroke-width="1.5"/>`
        : `<circle cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="3.5" fill="${colour}"/>`,
      `<text x="${(x + (p.n === nHi ? -6 : 6)).toFixed(1)}" y="${(y - 7).toFixed(1)}" font-size="10" text-anchor="${p.n === nHi ? "end" : "start"}">${esc(p.label ?? fmt(p.value))}</text>`,
    );
  }
  if (pts.length === 0) {
    out.push(
      `<text x="${MARGIN.left + w / 2}" y="${MARGIN.top + h / 2}" font-size="11" text-anchor="middle" fill="#999">no data</text>`,
    );
  }
  out.push("</g>");
  return out.join("\n");
}

export { fmt as formatValue };

export function renderSvg(title: string, subtitle: string, series: readonly Series[]): string {
  const sizes = [...new Set(series.flatMap((s) => s.points.map((p) => p.n)))].sort((a, b) => a - b);
  const rows = Math.ceil(series.length / COLUMNS);
  const width = COLUMNS * PANEL_W;
  const head = 50;
  const height = head + rows * PANEL_H;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="12" y="22" font-size="16" font-weight="bold">${esc(title)}</text>`,
    `<text x="12" y="40" font-size="11" fill="#444">${esc(subtitle)}</text>`,
    `<g transform="translate(0,${head})">`,
    ...series.map((s, i) => panel(s, i, sizes.length ? sizes : [1])),
    "</g>",
    "</svg>",
    "",
  ].join("\n");
}
