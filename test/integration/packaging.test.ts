import { spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ensureBuilt, PACKAGE_ROOT } from "../support/cli.js";

/**
 * The package as `npm pack` makes it, unpacked into a project of its own beside links to the
 * repo's installed packages, with or without the optional peer dependencies.
 */

const OPTIONAL = ["commander", "cli-table3", "prom-client", "@statelyai/inspect"];
const NPM_TIMEOUT_MS = 120_000;

/** A resolve hook that refuses the optional packages, whoever imports them (a dependency too). */
const REFUSE_OPTIONAL_HOOK = `
const refused = new Set(${JSON.stringify(OPTIONAL)});
export async function resolve(specifier, context, next) {
  const parts = specifier.split("/");
  const name = specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
  if (refused.has(name)) {
    const err = new Error("Cannot find package '" + name + "' imported from " + context.parentURL);
    err.code = "ERR_MODULE_NOT_FOUND";
    throw err;
  }
  return next(specifier, context);
}
`;

/** Refuses to load any module of the testing kit, and any test runner. */
const REFUSE_KIT_HOOK = `
const runners = new Set(["vitest", "jest", "@jest/globals", "mocha"]);
export async function resolve(specifier, context, next) {
  const resolved = await next(specifier, context).catch((err) => {
    if (runners.has(specifier)) throw new Error("test runner " + specifier + " imported by " + context.parentURL);
    throw err;
  });
  if (resolved.url.includes("/dist/src/testing/")) throw new Error("testing kit loaded: " + resolved.url);
  if (runners.has(specifier)) throw new Error("test runner " + specifier + " imported by " + context.parentURL);
  return resolved;
}
`;

interface PackedProject {
  dir: string;
  packageDir: string;
}

function run(command: string, args: string[], cwd: string) {
  const result = spawnSync(command, args, { cwd, encoding: "utf8", timeout: NPM_TIMEOUT_MS });
  if (result.error) throw result.error;
  return result;
}

/** Links every installed package of the repo into `nodeModules`, except those in `left`. */
function linkInstalledPackages(nodeModules: string, left: readonly string[]): void {
  const installed = join(PACKAGE_ROOT, "node_modules");
  for (const entry of readdirSync(installed)) {
    if (entry.startsWith(".")) continue;
    const names = entry.startsWith("@")
      ? readdirSync(join(installed, entry)).map((inner) => `${entry}/${inner}`)
      : [entry];
    for (const name of names) {
      if (left.includes(name) || existsSync(join(nodeModules, name))) continue;
      mkdirSync(join(nodeModules, name, ".."), { recursive: true });
      symlinkSync(join(installed, name), join(nodeModules, name));
    }
  }
}

function unpackInto(tarball: string, dir: string, left: readonly string[]): PackedProject {
  const packageDir = join(dir, "node_modules", "rdeebee-cluster");
  mkdirSync(packageDir, { recursive: true });
  writeFileSync(join(dir, "package.json"), '{"name":"app","private":true,"type":"module"}\n');
  const untar = run("tar", ["-xzf", tarball, "-C", packageDir, "--strip-components=1"], dir);
  expect(untar.status, untar.stderr).toBe(0);
  linkInstalledPackages(join(dir, "node_modules"), ["rdeebee-cluster", ...left]);
  return { dir, packageDir };
}

describe("the packed package", () => {
  let root: string;
  let withoutOptional: PackedProject;
  let withOptional: PackedProject;
  let hook: string;

  beforeAll(() => {
    ensureBuilt();
    root = mkdtempSync(join(tmpdir(), "rdeebee-packaging-"));
    const pack = run("npm", ["pack", "--json", "--pack-destination", root], PACKAGE_ROOT);
    expect(pack.status, pack.stderr).toBe(0);
    const [{ filename }] = JSON.parse(pack.stdout) as [{ filename: string }];
    const tarball = join(root, filename);
    withoutOptional = unpackInto(tarball, join(root, "without-optional"), OPTIONAL);
    withOptional = unpackInto(tarball, join(root, "with-optional"), []);
    hook = join(root, "refuse-optional.mjs");
    writeFileSync(hook, REFUSE_OPTIONAL_HOOK);
    writeFileSync(
      join(root, "register-hook.mjs"),
      `import { register } from "node:module";\nregister(${JSON.stringify(`file://${hook}`)});\n`,
    );
  }, NPM_TIMEOUT_MS);

  afterAll(() => {
    if (root) rmSync(root, { recursive: true, force: true });
  });

  const nodeWithoutOptional = (args: string[]) =>
    run(
      process.execPath,
      ["--import", `file://${join(root, "register-hook.mjs")}`, ...args],
      withoutOptional.dir,
    );

  test("declares the CLI's, the server's and the inspector's packages as optional peers, not dependencies, and ships the LICENSE", () => {
    const manifest = JSON.parse(readFileSync(join(withoutOptional.packageDir, "package.json"), "utf8")) as {
      dependencies: Record<string, string>;
      peerDependencies: Record<string, string>;
      peerDependenciesMeta: Record<string, { optional?: boolean }>;
    };
    for (const name of OPTIONAL) {
      expect(manifest.dependencies[name], name).toBeUndefined();
      expect(manifest.peerDependencies[name], name).toBeDefined();
      expect(manifest.peerDependenciesMeta[name]?.optional, name).toBe(true);
    }
    const license = readFileSync(join(withoutOptional.packageDir, "LICENSE"), "utf8");
    expect(license).toContain("MIT License");
    expect(license).toContain("Copyright (c) 2026 the rdeebee-cluster authors");
  });

  test('import("rdeebee-cluster") loads none of the optional packages', () => {
    const result = nodeWithoutOptional([
      "--input-type=module",
      "-e",
      'const lib = await import("rdeebee-cluster"); console.log(typeof lib.createClusterNode, typeof lib.nodeMachine);',
    ]);
    expect(result.stderr).toBe("");
    expect(result.stdout.trim()).toBe("function object");
    expect(result.status).toBe(0);
  });

  test('import("rdeebee-cluster") does not load the testing kit; "rdeebee-cluster/testing" loads without a test runner', () => {
    const kitHook = join(root, "refuse-kit.mjs");
    writeFileSync(kitHook, REFUSE_KIT_HOOK);
    writeFileSync(
      join(root, "register-kit-hook.mjs"),
      `import { register } from "node:module";\nregister(${JSON.stringify(`file://${kitHook}`)});\n`,
    );
    const withHook = (code: string) =>
      run(
        process.execPath,
        ["--import", `file://${join(root, "register-kit-hook.mjs")}`, "--input-type=module", "-e", code],
        withOptional.dir,
      );
    const library = withHook(
      'const lib = await import("rdeebee-cluster"); console.log(typeof lib.createClusterNode);',
    );
    expect(library.stderr).toBe("");
    expect(library.stdout.trim()).toBe("function");
    const kit = run(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        'const kit = await import("rdeebee-cluster/testing"); console.log(typeof kit.startEtcd, typeof kit.checkFencedWrites, typeof kit.FailoverDriver);',
      ],
      withOptional.dir,
    );
    expect(kit.stderr).toBe("");
    expect(kit.stdout.trim()).toBe("function function function");
    const manifest = JSON.parse(readFileSync(join(withOptional.packageDir, "package.json"), "utf8")) as {
      exports: Record<string, { types: string; default: string }>;
    };
    expect(manifest.exports["./testing"]).toEqual({
      types: "./dist/src/testing/index.d.ts",
      default: "./dist/src/testing/index.js",
    });
    expect(existsSync(join(withOptional.packageDir, "dist/src/testing/index.d.ts"))).toBe(true);
  });

  test("the CLI without commander says what to install and exits non-zero", () => {
    const result = nodeWithoutOptional([
      join(withoutOptional.packageDir, "bin", "rdeebee-cluster.js"),
      "layout",
    ]);
    expect(result.stderr).toContain('needs the optional package "commander": npm install commander');
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(result.status).not.toBe(0);
  });

  test("--version prints the version in the installed package.json", () => {
    const manifestPath = join(withOptional.packageDir, "package.json");
    const manifest = JSON.parse(readFileSync(manifestPath, "utf8")) as { version: string };
    expect(manifest.version).toMatch(/^\d+\.\d+\.\d+/);
    writeFileSync(manifestPath, JSON.stringify({ ...manifest, version: "9.8.7-packaging-test" }));
    const bin = join(withOptional.packageDir, "bin", "rdeebee-cluster.js");
    const result = run(process.execPath, [bin, "--version"], withOptional.dir);
    expect(result.stdout.trim()).toBe("9.8.7-packaging-test");
    expect(result.status).toBe(0);
  });
});
