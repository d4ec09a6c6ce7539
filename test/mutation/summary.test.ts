import { readFileSync } from "node:fs";
import { describe, expect, test } from "vitest";
import {
  classifySurvivors,
  type EquivalentEntry,
  parseEquivalents,
} from "../../scripts/mutation/equivalents.js";
import { type Mutant, type MutationReport, mutantsOf } from "../../scripts/mutation/report.js";
import { formatSummary, summarize } from "../../scripts/mutation/summary.js";

function mutant(overrides: Partial<Mutant>): Mutant {
  return {
    file: "machines/node.ts",
    line: 10,
    column: 5,
    mutator: "ConditionalExpression",
    original: "a > b",
    replacement: "true",
    status: "Survived",
    static: false,
    ...overrides,
  };
}

function entry(overrides: Partial<EquivalentEntry>): EquivalentEntry {
  return {
    file: "machines/node.ts",
    line: 10,
    mutator: "ConditionalExpression",
    original: "a > b",
    replacement: "true",
    reason: "b is never below a",
    docLine: 1,
    ...overrides,
  };
}

const DOC = [
  "# Mutation testing",
  "",
  "## Known equivalent mutants",
  "",
  "| file | line | mutator | original | replacement | why it is equivalent |",
  "|---|---|---|---|---|---|",
  "| `src/etcd/session.ts` | 12 | LogicalOperator | `a \\|\\| b` | `a && b` | both are false together here |",
  "| `machines/node.ts` | 40 | StringLiteral | `` `x` `` | `` `` `` | only a log text |",
  "",
  "## Next section",
  "| not | part | of | the | list | here |",
].join("\n");

describe("docs/mutation.md's list of equivalent mutants", () => {
  test("rows are read with code backticks removed and \\| unescaped, up to the next section", () => {
    const entries = parseEquivalents(DOC);
    expect(entries).toEqual([
      {
        file: "src/etcd/session.ts",
        line: 12,
        mutator: "LogicalOperator",
        original: "a || b",
        replacement: "a && b",
        reason: "both are false together here",
        docLine: 7,
      },
      {
        file: "machines/node.ts",
        line: 40,
        mutator: "StringLiteral",
        original: "`x`",
        replacement: "``",
        reason: "only a log text",
        docLine: 8,
      },
    ]);
  });

  test("a row without a reason, or with a bad line, fails naming the row", () => {
    const noReason = DOC.replace("only a log text", "");
    expect(() => parseEquivalents(noReason)).toThrow("docs/mutation.md:8: reason");
    const badLine = DOC.replace("| 12 |", "| twelve |");
    expect(() => parseEquivalents(badLine)).toThrow(
      'docs/mutation.md:7: line: expected a positive integer, got "twelve"',
    );
    expect(() => parseEquivalents("# nothing here")).toThrow('no "## Known equivalent mutants" section');
  });

  test("the project's own docs/mutation.md parses", () => {
    const text = readFileSync(new URL("../../docs/mutation.md", import.meta.url), "utf8");
    expect(() => parseEquivalents(text)).not.toThrow();
  });
});

describe("classifying survivors against the list", () => {
  const mutated = new Set(["machines/node.ts"]);

  test("an entry accounts for the survivor on its line, and for no other", () => {
    const atLine = mutant({ line: 10 });
    const elsewhere = mutant({ line: 30 });
    const result = classifySurvivors([elsewhere, atLine], [entry({ line: 10 })], mutated);
    expect(result.equivalents.map((m) => m.mutant)).toEqual([atLine]);
    expect(result.survivors).toEqual([elsewhere]);
    expect(result.unmatched).toEqual([]);
  });

  test("an entry whose line moved matches the only survivor of the same mutation", () => {
    const moved = mutant({ line: 14 });
    const result = classifySurvivors([moved], [entry({ line: 10 })], mutated);
    expect(result.equivalents.map((m) => m.mutant)).toEqual([moved]);
  });

  test("an entry that matches two survivors on other lines is ambiguous: it matches neither", () => {
    const both = [mutant({ line: 14 }), mutant({ line: 20 })];
    const result = classifySurvivors(both, [entry({ line: 10 })], mutated);
    expect(result.equivalents).toEqual([]);
    expect(result.survivors).toEqual(both);
    expect(result.unmatched).toHaveLength(1);
  });

  test("listed code ending in … matches by its beginning, as the summary shortens it", () => {
    const long = mutant({ original: "{ context: {} as { id?: number } }" });
    const result = classifySurvivors([long], [entry({ original: "{ context: {} as…" })], mutated);
    expect(result.equivalents.map((m) => m.mutant)).toEqual([long]);
    const other = classifySurvivors([long], [entry({ original: "{ input: {} as…" })], mutated);
    expect(other.equivalents).toEqual([]);
  });

  test("a different mutation on the listed line is still a survivor", () => {
    const other = mutant({ replacement: "false" });
    const result = classifySurvivors([other], [entry({})], mutated);
    expect(result.survivors).toEqual([other]);
    expect(result.unmatched).toHaveLength(1);
  });

  test("entries for files this run did not mutate are neither matched nor reported stale", () => {
    const result = classifySurvivors([], [entry({ file: "src/etcd/session.ts" })], mutated);
    expect(result.unmatched).toEqual([]);
  });
});

describe("the summary", () => {
  const mutants = [
    mutant({ status: "Killed", line: 1 }),
    mutant({ status: "Timeout", line: 2 }),
    mutant({ status: "Survived", line: 10 }),
    mutant({ status: "Survived", line: 11, replacement: "false" }),
    mutant({ status: "NoCoverage", line: 12 }),
    mutant({ status: "CompileError", line: 13 }),
    mutant({ file: "src/config/keys.ts", status: "Killed", line: 3 }),
  ];

  test("counts a listed equivalent as a survivor in the score and leaves it out only of 'w/o equiv'", () => {
    const summary = summarize(mutants, [entry({ line: 10 })]);
    const machines = summary.areas.find((a) => a.area.name === "machines");
    expect(machines).toMatchObject({
      detected: 2,
      valid: 5,
      equivalent: 1,
      score: 40,
      scoreWithoutEquivalents: 50,
    });
    expect(machines?.goalMet).toBe(false);
    expect(summary.areas.find((a) => a.area.name === "src/config")).toMatchObject({
      score: 100,
      goalMet: true,
    });
  });

  test("prints every survivor, every uncovered mutant and every equivalent with its reason", () => {
    const summary = summarize(mutants, [entry({ line: 10 })]);
    expect(summary.survivors.map((m) => m.line)).toEqual([11]);
    expect(summary.noCoverage.map((m) => m.line)).toEqual([12]);
    const text = formatSummary(summary);
    expect(text).toContain("machines/node.ts:11:5  ConditionalExpression  a > b  →  false");
    expect(text).toContain("machines/node.ts:12:5");
    expect(text).toContain(
      "machines/node.ts:10:5  ConditionalExpression  a > b  →  true\n      why: b is never below a",
    );
    expect(text).toContain("1 mutant(s) were detected only by timing out");
  });

  test("an uncovered mutant can be listed as equivalent too; it then leaves the uncovered list", () => {
    const summary = summarize(mutants, [entry({ line: 12 })]);
    expect(summary.noCoverage).toEqual([]);
    expect(summary.equivalents.map((m) => m.mutant.line)).toEqual([12]);
    expect(summary.areas.find((a) => a.area.name === "machines")).toMatchObject({ score: 40, equivalent: 1 });
  });

  test("names the listed entries whose mutant is detected now, apart from those with no such mutant", () => {
    const summary = summarize(mutants, [entry({ line: 1 }), entry({ line: 1, replacement: "x" })]);
    expect(summary.killedEquivalents.map((e) => e.replacement)).toEqual(["true"]);
    expect(summary.missingEquivalents.map((e) => e.replacement)).toEqual(["x"]);
    const text = formatSummary(summary);
    expect(text).toContain(
      "whose mutant is detected now (1): not equivalent after all, remove them\n" +
        "  docs/mutation.md:1  machines/node.ts:1  ConditionalExpression  a > b  →  true",
    );
    expect(text).toContain("no such mutant in this run (1)");
  });
});

describe("reading Stryker's report", () => {
  test("a mutant's original text spans its location, across lines", () => {
    const report: MutationReport = {
      files: {
        "machines/x.ts": {
          source: "const a = f(\n  1,\n  2);\nconst b = 'hi';\n",
          mutants: [
            {
              mutatorName: "ArrayDeclaration",
              replacement: "[]",
              status: "Survived",
              location: { start: { line: 1, column: 11 }, end: { line: 3, column: 5 } },
            },
            {
              mutatorName: "StringLiteral",
              replacement: '""',
              status: "Killed",
              location: { start: { line: 4, column: 11 }, end: { line: 4, column: 15 } },
            },
          ],
        },
      },
    };
    expect(mutantsOf(report).map((m) => m.original)).toEqual(["f( 1, 2)", "'hi'"]);
  });
});
