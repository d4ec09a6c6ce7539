/**
 * The layer table of the README, enforced: which folder may import which, that the machines stay
 * pure, and that only `src/etcd` talks to etcd. Imports are read as text from every source file.
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

type Layer =
  | "machines"
  | "config"
  | "logging"
  | "optional"
  | "process"
  | "etcd"
  | "runtime"
  | "watchdog"
  | "server"
  | "cli"
  | "testing"
  | "package";

/**
 * Each layer and the layers it may import (itself included); `package` is src/index.ts. `testing`
 * (the `rdeebee-cluster/testing` entry) uses the CLI's etcd launcher and process spawner; no other
 * layer may import it, so the package's main entry never loads it.
 */
const MAY_IMPORT: Record<Layer, readonly Layer[]> = {
  machines: ["machines"],
  config: ["config"],
  logging: ["logging"],
  optional: ["optional"],
  process: ["process"],
  etcd: ["etcd", "config", "logging"],
  runtime: ["runtime", "machines", "etcd", "config", "logging", "process"],
  watchdog: ["watchdog", "etcd", "config", "logging", "process"],
  server: ["server", "runtime", "config", "logging", "optional"],
  cli: ["cli", "server", "runtime", "watchdog", "config", "logging", "optional", "process"],
  testing: ["testing", "runtime", "etcd", "config", "logging", "optional", "cli"],
  package: ["package", "machines", "config", "logging", "etcd", "runtime", "watchdog"],
};

/** npm packages only one layer may use. */
const OWNED_PACKAGES: Record<string, Layer> = { etcd3: "etcd", cockatiel: "etcd" };

const TEST_RUNNERS = ["vitest", "jest", "@jest/globals", "mocha", "node:test"];

function layerOf(path: string): Layer | undefined {
  const rel = relative(ROOT, path);
  if (rel.startsWith("machines/")) return "machines";
  if (rel === "src/logging.ts") return "logging";
  if (rel === "src/optionalDependency.ts") return "optional";
  if (rel === "src/processLiveness.ts") return "process";
  if (rel === "src/index.ts") return "package";
  const folder = /^src\/(config|etcd|runtime|watchdog|server|cli|testing)\//.exec(rel)?.[1];
  return folder as Layer | undefined;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith(".ts") ? [path] : [];
  });
}

/** The module specifiers a file imports or re-exports, type-only ones included. */
function specifiersOf(text: string): string[] {
  const found: string[] = [];
  const patterns = [
    /^\s*(?:import|export)\s+[\w$*{}\s,]+?\s*from\s*["']([^"']+)["']/gm,
    /^\s*import\s*["']([^"']+)["']/gm,
  ];
  for (const pattern of patterns)
    for (const match of text.matchAll(pattern)) if (match[1]) found.push(match[1]);
  for (const match of text.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g))
    if (match[1]) found.push(match[1]);
  return found;
}

const packageOf = (specifier: string) =>
  specifier.startsWith("@") ? specifier.split("/").slice(0, 2).join("/") : (specifier.split("/")[0] ?? "");

/** Every import that breaks the table, as `file: specifier (why)`. */
function violations(): string[] {
  const files = [...sourceFiles(join(ROOT, "machines")), ...sourceFiles(join(ROOT, "src"))];
  const found: string[] = [];
  for (const file of files) {
    const from = layerOf(file);
    if (!from) continue;
    for (const specifier of specifiersOf(readFileSync(file, "utf8"))) {
      const where = `${relative(ROOT, file)}: ${specifier}`;
      if (specifier.startsWith(".")) {
        const to = layerOf(resolve(dirname(file), specifier.replace(/\.js$/, ".ts")));
        if (!to) found.push(`${where} (outside the layers)`);
        else if (!MAY_IMPORT[from].includes(to)) found.push(`${where} (${from} may not import ${to})`);
        continue;
      }
      const owner = OWNED_PACKAGES[packageOf(specifier)];
      if (owner && owner !== from) found.push(`${where} (only ${owner} may import it)`);
      if (from === "machines" && specifier !== "xstate") found.push(`${where} (machines import only xstate)`);
      if (from === "testing" && TEST_RUNNERS.includes(packageOf(specifier)))
        found.push(`${where} (the testing kit works under any runner)`);
    }
  }
  return found.sort();
}

describe("layers", () => {
  it("every import follows the layer table", () => {
    expect(violations()).toEqual([]);
  });

  it("reads imports, re-exports and type-only imports", () => {
    const text = [
      'import { a } from "./a.js";',
      'import type { B } from "../b.js";',
      "import {\n  c,\n  d,\n} from 'etcd3';",
      'export { e } from "./e.js";',
      'export * from "./f.js";',
      'import "./g.js";',
      'const h = await import("./h.js");',
      '// not an import: "from ./i.js"',
      'export type J = { type: "K" } | { type: "L" };',
    ].join("\n");
    expect(specifiersOf(text).sort()).toEqual(
      ["../b.js", "./a.js", "./e.js", "./f.js", "./g.js", "./h.js", "etcd3"].sort(),
    );
  });
});
