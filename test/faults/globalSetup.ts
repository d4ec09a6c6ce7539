import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { TestProject } from "vitest/node";
import { formatSummary, readRows } from "./summary.js";

const RESULTS_DIR = fileURLToPath(new URL("./results", import.meta.url));

/** Collects the rows every fault test file appends, and prints and saves the summary table at the end. */
export default function setup(project: TestProject): () => void {
  const startedAt = Date.now();
  const rowsFile = join(tmpdir(), `rdeebee-fault-rows-${process.pid}-${startedAt}.jsonl`);
  writeFileSync(rowsFile, "");
  project.provide("faultRowsFile", rowsFile);
  return () => {
    const rows = readRows(rowsFile);
    rmSync(rowsFile, { force: true });
    if (rows.length === 0) return;
    const summary = formatSummary(rows, Date.now() - startedAt);
    console.log(`\n${summary}\n`);
    mkdirSync(RESULTS_DIR, { recursive: true });
    const stamp = new Date(startedAt).toISOString().replace(/:/g, "-").replace(/\..*/, "");
    writeFileSync(join(RESULTS_DIR, `summary-${stamp}.txt`), `${summary}\n`);
  };
}
