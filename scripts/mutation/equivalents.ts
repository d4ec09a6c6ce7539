import { readFileSync } from "node:fs";
import { collapseWhitespace, type Mutant } from "./report.js";

/** One row of the known-equivalent list in docs/mutation.md. */
export interface EquivalentEntry {
  readonly file: string;
  readonly line: number;
  readonly mutator: string;
  readonly original: string;
  readonly replacement: string;
  readonly reason: string;
  /** Where the row is, for error messages and stale entries. */
  readonly docLine: number;
}

export const EQUIVALENTS_HEADING = "## Known equivalent mutants";
const COLUMNS = ["file", "line", "mutator", "original", "replacement", "reason"] as const;

/** A table cell without its code backticks (`` `a` `` or ``` `` a`b `` ```) and with `\|` unescaped. */
function cellText(cell: string): string {
  const trimmed = cell.trim();
  const code = /^(`+) ?(.*?) ?\1$/s.exec(trimmed);
  return (code ? (code[2] ?? "") : trimmed).replaceAll("\\|", "|");
}

function splitRow(row: string): string[] {
  const inner = row.trim().replace(/^\|/, "").replace(/\|$/, "");
  return inner.split(/(?<!\\)\|/).map(cellText);
}

/**
 * The rows of the table under `## Known equivalent mutants` in `text` (docs/mutation.md). A row that
 * does not have the six columns, or whose line is not a positive integer, fails naming the row.
 */
export function parseEquivalents(text: string, source = "docs/mutation.md"): EquivalentEntry[] {
  const lines = text.split("\n");
  const heading = lines.findIndex((line) => line.trim() === EQUIVALENTS_HEADING);
  if (heading < 0) throw new Error(`${source}: no "${EQUIVALENTS_HEADING}" section`);
  const entries: EquivalentEntry[] = [];
  let tableRow = 0;
  for (let index = heading + 1; index < lines.length; index++) {
    const line = lines[index] ?? "";
    if (line.startsWith("#")) break;
    if (!line.trim().startsWith("|")) {
      if (tableRow > 0 && line.trim() !== "") break;
      continue;
    }
    tableRow++;
    if (tableRow <= 2) continue; // header and |---| separator
    const cells = splitRow(line);
    const where = `${source}:${index + 1}`;
    if (cells.length !== COLUMNS.length) {
      throw new Error(
        `${where}: expected ${COLUMNS.length} columns (${COLUMNS.join(", ")}), got ${cells.length}`,
      );
    }
    const [file, lineText, mutator, original, replacement, reason] = cells as [
      string,
      string,
      string,
      string,
      string,
      string,
    ];
    const lineNumber = Number(lineText);
    if (!Number.isInteger(lineNumber) || lineNumber < 1) {
      throw new Error(`${where}: line: expected a positive integer, got "${lineText}"`);
    }
    if (reason === "") throw new Error(`${where}: reason: every equivalent mutant needs a reason`);
    entries.push({
      file,
      line: lineNumber,
      mutator,
      original: collapseWhitespace(original),
      replacement: collapseWhitespace(replacement),
      reason,
      docLine: index + 1,
    });
  }
  return entries;
}

export function loadEquivalents(path: string): EquivalentEntry[] {
  return parseEquivalents(readFileSync(path, "utf8"), path);
}

export interface MatchedEquivalent {
  readonly mutant: Mutant;
  readonly entry: EquivalentEntry;
}

export interface SurvivorClassification {
  /** Survivors no entry accounts for. */
  readonly survivors: Mutant[];
  /** Survivors that a listed entry accounts for, one mutant per entry. */
  readonly equivalents: MatchedEquivalent[];
  /** Entries for a mutated file that match no survivor: killed now, changed, or ambiguous. */
  readonly unmatched: EquivalentEntry[];
}

/** An entry's text ending in `…` (as the summary shortens long code) matches by its beginning. */
function sameCode(actual: string, listed: string): boolean {
  return listed.endsWith("…") ? actual.startsWith(listed.slice(0, -1)) : actual === listed;
}

export function sameMutation(mutant: Mutant, entry: EquivalentEntry): boolean {
  return (
    mutant.file === entry.file &&
    mutant.mutator === entry.mutator &&
    sameCode(mutant.original, entry.original) &&
    sameCode(mutant.replacement, entry.replacement)
  );
}

/**
 * Splits surviving mutants into those a docs entry explains and the rest. An entry matches a
 * survivor with the same file, mutator, original text and replacement (a text ending in `…` matches
 * by its beginning): the one on its line, or, when
 * the line moved, the only such survivor. Entries for files outside `mutatedFiles` are ignored.
 */
export function classifySurvivors(
  survivors: readonly Mutant[],
  entries: readonly EquivalentEntry[],
  mutatedFiles: ReadonlySet<string>,
): SurvivorClassification {
  const claimed = new Set<Mutant>();
  const equivalents: MatchedEquivalent[] = [];
  const unmatched: EquivalentEntry[] = [];
  for (const entry of entries.filter((e) => mutatedFiles.has(e.file))) {
    const candidates = survivors.filter((mutant) => !claimed.has(mutant) && sameMutation(mutant, entry));
    const match =
      candidates.find((mutant) => mutant.line === entry.line) ??
      (candidates.length === 1 ? candidates[0] : undefined);
    if (match === undefined) {
      unmatched.push(entry);
      continue;
    }
    claimed.add(match);
    equivalents.push({ mutant: match, entry });
  }
  return { survivors: survivors.filter((mutant) => !claimed.has(mutant)), equivalents, unmatched };
}
