import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startEtcd } from "../support/etcdCluster.js";

const run = promisify(execFile);
const REPO = resolve(import.meta.dirname, "../..");
const BUILT_PACKAGE = join(REPO, "dist/src/index.js");
const TSC = join(REPO, "node_modules/typescript/bin/tsc");

/** Every ```ts block of the README, with the line it starts on. */
function typescriptBlocks(markdown: string): { line: number; code: string }[] {
  const blocks: { line: number; code: string }[] = [];
  const lines = markdown.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]?.trim() !== "```ts") continue;
    const start = i + 1;
    let end = start;
    while (end < lines.length && lines[end]?.trim() !== "```") end++;
    blocks.push({ line: start + 1, code: lines.slice(start, end).join("\n") });
    i = end;
  }
  return blocks;
}

const blocks = typescriptBlocks(readFileSync(join(REPO, "README.md"), "utf8"));

/**
 * The README's TypeScript blocks as a user would run them: `rdeebee-cluster` is the built package
 * (a symlink in a temp `node_modules`, so its `exports` are resolved as for an installed copy),
 * each block is type-checked with the repo's compiler options, then run as its own process with a
 * fresh etcd's endpoint in `ETCD`, and must exit 0 on its own.
 */
describe("README examples", () => {
  let dir: string;
  let compilerOutput: string;

  beforeAll(async () => {
    if (!existsSync(BUILT_PACKAGE))
      throw new Error(`${BUILT_PACKAGE} is missing: build first (npx tsc -p tsconfig.json)`);
    dir = await mkdtemp(join(tmpdir(), "readme-examples-"));
    await mkdir(join(dir, "node_modules"));
    await symlink(REPO, join(dir, "node_modules/rdeebee-cluster"), "dir");
    for (const dependency of ["rxjs", "@types"])
      await symlink(join(REPO, "node_modules", dependency), join(dir, "node_modules", dependency), "dir");
    await writeFile(join(dir, "package.json"), JSON.stringify({ type: "module", private: true }));
    const repoOptions = JSON.parse(readFileSync(join(REPO, "tsconfig.json"), "utf8")).compilerOptions;
    const compilerOptions = {
      ...repoOptions,
      rootDir: ".",
      outDir: "out",
      declaration: false,
      sourceMap: false,
    };
    await writeFile(join(dir, "tsconfig.json"), JSON.stringify({ compilerOptions, include: ["*.ts"] }));
    for (const [i, block] of blocks.entries()) await writeFile(join(dir, `example${i}.ts`), block.code);
    // Emitted even with type errors, so that each example still runs and reports its own failure.
    compilerOutput = await run(process.execPath, [TSC, "-p", join(dir, "tsconfig.json")], { cwd: dir }).then(
      ({ stdout, stderr }) => stdout + stderr,
      (err: { stdout?: string; stderr?: string }) => `${err.stdout ?? ""}${err.stderr ?? "tsc failed"}`,
    );
  }, 120_000);

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("the README has TypeScript examples", () => {
    expect(blocks.length).toBeGreaterThanOrEqual(2);
  });

  test("docs/testing-kit.md's complete test is the README's, verbatim (so running the README's runs it)", () => {
    const kitBlocks = typescriptBlocks(readFileSync(join(REPO, "docs/testing-kit.md"), "utf8"));
    expect(kitBlocks).toHaveLength(1);
    expect(blocks.map((block) => block.code)).toContain(kitBlocks[0]?.code);
  });

  test("every example type-checks against the built package", () => {
    // tsc names each error by file: exampleN.ts is the N-th block.
    const located = compilerOutput.replace(
      /example(\d+)\.ts/g,
      (_, n) => `README block at line ${blocks[Number(n)]?.line}`,
    );
    expect(located).toBe("");
  });

  test.each(blocks.map((block, i) => ({ ...block, i })))(
    "the example at README line $line runs to exit 0 against a real etcd",
    async ({ i }) => {
      const etcd = await startEtcd();
      try {
        const child = await run(process.execPath, [join(dir, "out", `example${i}.js`)], {
          cwd: dir,
          env: { ...process.env, ETCD: etcd.endpoints.join(","), LOG_LEVEL: "warn" },
          timeout: 120_000,
        }).catch((err: { code?: number; stdout?: string; stderr?: string; signal?: string }) => err);
        expect({ code: "code" in child ? child.code : 0, stderr: child.stderr }).toMatchObject({ code: 0 });
      } finally {
        await etcd.stop();
      }
    },
    180_000,
  );
});
