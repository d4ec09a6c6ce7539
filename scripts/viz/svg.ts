import { spawnSync } from "node:child_process";

export type SvgResult = { ok: true; svg: string } | { ok: false; missing: boolean; message: string };

/** Renders DOT to SVG with Graphviz's `dot` (no network, no browser). */
export function renderSvg(dot: string): SvgResult {
  const run = spawnSync("dot", ["-Tsvg"], { input: dot, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  if (run.error) {
    const missing = (run.error as NodeJS.ErrnoException).code === "ENOENT";
    return { ok: false, missing, message: run.error.message };
  }
  if (run.status !== 0) {
    return { ok: false, missing: false, message: run.stderr.trim() || `dot exited with ${run.status}` };
  }
  return { ok: true, svg: run.stdout };
}

export const GRAPHVIZ_MISSING =
  "Graphviz `dot` was not found, so no .svg files were written (the .json, .mmd and .dot files were).\n" +
  "Install it (Debian/Ubuntu: `sudo apt-get install graphviz`, the package `graphviz`) and run `npm run viz` again.";
