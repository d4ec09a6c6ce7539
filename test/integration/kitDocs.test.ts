/**
 * The complete test in docs/testing-kit.md (the README's "Test your server's failover"), run as
 * a reader would: the built package linked into a project of its own, type-checked with the
 * repo's compiler options, then run with plain node (node:test), which exits non-zero on failure.
 */
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

const run = promisify(execFile);
const REPO = resolve(import.meta.dirname, "../..");
const TSC = join(REPO, "node_modules/typescript/bin/tsc");

function typescriptBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1] ?? "");
}

const blocks = typescriptBlocks(readFileSync(join(REPO, "docs/testing-kit.md"), "utf8"));

describe("docs/testing-kit.md", () => {
  let dir: string;
  let compilerOutput: string;

  beforeAll(async () => {
    if (!existsSync(join(REPO, "dist/src/testing/index.js")))
      throw new Error("dist/src/testing is missing: build first (npx tsc -p tsconfig.json)");
    dir = await mkdtemp(join(tmpdir(), "kit-docs-"));
    await mkdir(join(dir, "node_modules"));
    await symlink(REPO, join(dir, "node_modules/rdeebee-cluster"), "dir");
    await symlink(join(REPO, "node_modules/@types"), join(dir, "node_modules/@types"), "dir");
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
    for (const [i, code] of blocks.entries()) await writeFile(join(dir, `example${i}.ts`), code);
    compilerOutput = await run(process.execPath, [TSC, "-p", join(dir, "tsconfig.json")], { cwd: dir }).then(
      ({ stdout, stderr }) => stdout + stderr,
      (err: { stdout?: string; stderr?: string }) => `${err.stdout ?? ""}${err.stderr ?? "tsc failed"}`,
    );
  }, 120_000);

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("has one complete test, which type-checks against the built package", () => {
    expect(blocks).toHaveLength(1);
    expect(compilerOutput).toBe("");
  });

  test("its test passes when run with node", async () => {
    const child = await run(process.execPath, [join(dir, "out", "example0.js")], {
      cwd: dir,
      env: { ...process.env, LOG_LEVEL: "warn" },
      timeout: 120_000,
    }).catch((err: { code?: number; stdout?: string; stderr?: string }) => err);
    expect({ code: "code" in child ? child.code : 0, stdout: child.stdout }).toMatchObject({ code: 0 });
  }, 180_000);
});
