import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, expect, test } from "vitest";
import { NodeStateDir, StateDirLockedError } from "../../src/runtime/stateDir.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "h10-state-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

test("the ID kept survives a release and a new lock; none is there at first", async () => {
  const first = await NodeStateDir.lock(dir);
  expect(await first.readId()).toBeUndefined();
  await first.writeId(17);
  await first.release();
  const second = await NodeStateDir.lock(dir);
  expect(await second.readId()).toBe(17);
  await second.release();
});

test("a directory locked by a live process is refused, naming it and the pid; also within one process", async () => {
  const held = await NodeStateDir.lock(dir);
  await expect(NodeStateDir.lock(dir)).rejects.toBeInstanceOf(StateDirLockedError);
  await held.release();
  const sleeper = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60000)"], { stdio: "ignore" });
  try {
    await writeFile(join(dir, "lock"), `${sleeper.pid}\n`);
    await expect(NodeStateDir.lock(dir)).rejects.toThrow(`locked by process ${sleeper.pid}`);
  } finally {
    sleeper.kill("SIGKILL");
  }
});

test("a lock left by a process that is gone is stale and taken over", async () => {
  const gone = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
  await new Promise((resolve) => gone.on("exit", resolve));
  await writeFile(join(dir, "lock"), `${gone.pid}\n`);
  const taken = await NodeStateDir.lock(dir);
  expect((await readFile(join(dir, "lock"), "utf8")).trim()).toBe(String(process.pid));
  await taken.release();
});

test("a stored ID that is not a node ID is an error naming the file", async () => {
  const state = await NodeStateDir.lock(dir);
  await writeFile(join(dir, "node-id"), "seven\n");
  await expect(state.readId()).rejects.toThrow(/node-id: not a node ID: "seven\\n"/);
  await state.release();
});
