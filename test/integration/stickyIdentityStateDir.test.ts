import { spawn } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, expect, test } from "vitest";
import { ConfigError } from "../../src/config/index.js";
import { currentBootId } from "../../src/processLiveness.js";
import { NodeStateDir, StateDirLockedError, takeOverStale } from "../../src/runtime/stateDir.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "h10-state-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const exited = (child: ReturnType<typeof spawn>) => new Promise((resolve) => child.on("exit", resolve));

test("the ID kept survives a release and a new lock; none is there at first", async () => {
  const first = NodeStateDir.lock(dir);
  expect(first.idFile.read()).toBeUndefined();
  await first.idFile.write(17, "7587882263457384456");
  first.release();
  const second = NodeStateDir.lock(dir);
  const bootId = currentBootId();
  expect(second.idFile.read()).toEqual({ id: 17, lease: "7587882263457384456", bootId });
  expect(await readFile(join(dir, "node-id"), "utf8")).toBe(`17 7587882263457384456 ${bootId}\n`);
  await writeFile(join(dir, "node-id"), "4 7587882263457384456\n");
  expect(second.idFile.read()).toEqual({ id: 4, lease: "7587882263457384456" });
  await writeFile(join(dir, "node-id"), "4\n");
  expect(second.idFile.read()).toEqual({ id: 4 });
  second.release();
  expect((await readdir(dir)).sort()).toEqual(["node-id"]);
});

test("a directory locked by a live process is refused, naming it and the pid; also within one process", async () => {
  const held = NodeStateDir.lock(dir);
  expect(() => NodeStateDir.lock(dir)).toThrow(StateDirLockedError);
  held.release();
  const sleeper = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60000)"], { stdio: "ignore" });
  try {
    await writeFile(join(dir, "lock"), `${sleeper.pid}\n`);
    expect(() => NodeStateDir.lock(dir)).toThrow(`${dir} is locked by process ${sleeper.pid}`);
  } finally {
    sleeper.kill("SIGKILL");
    await exited(sleeper);
  }
});

test("a lock left by a process that is gone is stale and taken over", async () => {
  const gone = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
  await exited(gone);
  await writeFile(join(dir, "lock"), `${gone.pid}\n`);
  const taken = NodeStateDir.lock(dir);
  expect((await readFile(join(dir, "lock"), "utf8")).split(" ")[0]?.trim()).toBe(String(process.pid));
  taken.release();
});

test("a lock naming a live pid that another process reused (its start time differs) is stale", async () => {
  await writeFile(join(dir, "lock"), `${process.pid} 1\n`);
  const taken = NodeStateDir.lock(dir);
  taken.release();
});

test("release leaves a lock that is no longer this holder's", async () => {
  const held = NodeStateDir.lock(dir);
  await writeFile(join(dir, "lock"), "12345 6\n");
  held.release();
  expect(await readFile(join(dir, "lock"), "utf8")).toBe("12345 6\n");
});

test("a stored ID that is not a node ID is a ConfigError naming the file", async () => {
  const state = NodeStateDir.lock(dir);
  await writeFile(join(dir, "node-id"), "seven\n");
  expect(() => state.idFile.read()).toThrow(ConfigError);
  expect(() => state.idFile.read()).toThrow(/node-id: not a node ID: "seven\\n"/);
  state.release();
});

test("taking over a stale lock that another process replaced meanwhile puts the new lock back", async () => {
  const lockFile = join(dir, "lock");
  await writeFile(lockFile, "999999 1\n");
  takeOverStale(lockFile, "999999 1\n");
  expect(await readdir(dir)).toEqual([]);
  // Read as stale, but replaced by a live holder before this process moved it aside.
  await writeFile(lockFile, `${process.pid}\n`);
  takeOverStale(lockFile, "999999 1\n");
  expect(await readFile(lockFile, "utf8")).toBe(`${process.pid}\n`);
  expect(await readdir(dir)).toEqual(["lock"]);
});
