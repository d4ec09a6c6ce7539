/**
 * `npm run viz`: writes `visualizations/<machine>.{json,mmd,dot}` from the machines themselves and
 * renders each `.dot` to `.svg` with Graphviz when `dot` is installed.
 * `npm run viz:check`: regenerates in memory and exits 1 when a text file on disk is missing or
 * differs (the `.svg` files are not compared: they need Graphviz, which CI may lack).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, extname, join, relative } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { allOutputs, GENERATED_EXTENSIONS } from "./outputs.js";
import { GRAPHVIZ_MISSING, renderSvg } from "./svg.js";

/** The package root: the nearest directory above this module that holds a package.json. */
export function packageRoot(from = dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, "package.json"))) return dir;
    if (dirname(dir) === dir) throw new Error(`no package.json above ${from}`);
  }
}

const stem = (file: string) => file.slice(0, -extname(file).length);

/** Generated files in `dir` that belong to no machine or diagram any more (one was renamed or removed). */
function orphans(
  dir: string,
  extensions: readonly string[],
  expected: ReadonlyMap<string, string>,
): string[] {
  if (!existsSync(dir)) return [];
  const stems = new Set([...expected.keys()].map(stem));
  return readdirSync(dir)
    .filter((file) => extensions.includes(extname(file)))
    .filter((file) => !stems.has(stem(file)))
    .sort();
}

/** Each out-of-date file with why, empty when `dir` matches what the machines produce now. */
export function staleFiles(dir: string, expected: ReadonlyMap<string, string> = allOutputs()): string[] {
  const stale: string[] = [];
  for (const [file, text] of expected) {
    const path = join(dir, file);
    if (!existsSync(path)) stale.push(`${file} (missing)`);
    else if (readFileSync(path, "utf8") !== text) stale.push(`${file} (differs)`);
  }
  for (const file of orphans(
    dir,
    [...expected.keys()].map((f) => extname(f)),
    expected,
  )) {
    stale.push(`${file} (no such machine)`);
  }
  return stale;
}

function check(dir: string): number {
  const stale = staleFiles(dir);
  const shown = relative(process.cwd(), dir) || ".";
  if (stale.length === 0) {
    console.log(`${shown}/ is up to date with machines/.`);
    return 0;
  }
  console.error(`${shown}/ is out of date with machines/:`);
  for (const entry of stale) console.error(`  ${shown}/${entry}: run npm run viz`);
  return 1;
}

function generate(dir: string): number {
  mkdirSync(dir, { recursive: true });
  const shown = relative(process.cwd(), dir) || ".";
  const outputs = allOutputs();
  for (const file of orphans(dir, GENERATED_EXTENSIONS, outputs)) {
    rmSync(join(dir, file));
    console.log(`removed ${shown}/${file}`);
  }
  for (const [file, text] of outputs) {
    const path = join(dir, file);
    if (existsSync(path) && readFileSync(path, "utf8") === text) continue;
    writeFileSync(path, text);
    console.log(`wrote ${shown}/${file}`);
  }
  let status = 0;
  for (const [file, dot] of outputs) {
    if (extname(file) !== ".dot") continue;
    const result = renderSvg(dot);
    if (!result.ok && result.missing) {
      console.warn(GRAPHVIZ_MISSING);
      break;
    }
    if (!result.ok) {
      console.error(`dot failed on ${shown}/${file}: ${result.message}`);
      status = 1;
      continue;
    }
    const svgFile = file.replace(/\.dot$/, ".svg");
    const svgPath = join(dir, svgFile);
    if (existsSync(svgPath) && readFileSync(svgPath, "utf8") === result.svg) continue;
    writeFileSync(svgPath, result.svg);
    console.log(`rendered ${shown}/${svgFile}`);
  }
  return status;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const dir = join(packageRoot(), "visualizations");
  process.exitCode = process.argv.includes("--check") ? check(dir) : generate(dir);
}
