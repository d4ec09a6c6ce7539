import { mkdir, open, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { isProcessAlive } from "../processLiveness.js";

/** Another live process holds the state directory: two processes must never share one node ID. */
export class StateDirLockedError extends Error {
  override readonly name = "StateDirLockedError";
  constructor(
    readonly dir: string,
    readonly pid: number,
  ) {
    super(`state directory ${dir} is locked by process ${pid}, which is alive`);
  }
}

const LOCK_FILE = "lock";
const ID_FILE = "node-id";

/**
 * A node's state directory (`--state-dir`): the ID it held last, kept across restarts, under a
 * lock file created with O_EXCL that names the holding process. A lock whose process is gone is
 * stale and taken over; a live one refuses (`StateDirLockedError`), this process's own included,
 * so two nodes of one process cannot share a directory either.
 */
export class NodeStateDir {
  private constructor(readonly dir: string) {}

  static async lock(dir: string): Promise<NodeStateDir> {
    await mkdir(dir, { recursive: true });
    const lockFile = join(dir, LOCK_FILE);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const handle = await open(lockFile, "wx");
        await handle.writeFile(`${process.pid}\n`);
        await handle.close();
        return new NodeStateDir(dir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
        const text = await readFile(lockFile, "utf8").catch(() => "");
        const pid = Number(text.trim());
        if (Number.isInteger(pid) && pid > 0 && isProcessAlive(pid)) throw new StateDirLockedError(dir, pid);
        await rm(lockFile, { force: true });
      }
    }
    throw new Error(`state directory ${dir}: could not take its lock file ${lockFile}`);
  }

  /** The ID stored, or undefined when there is none; a file that is not a node ID is a clear error. */
  async readId(): Promise<number | undefined> {
    const file = join(this.dir, ID_FILE);
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
    if (!/^(0|[1-9]\d{0,8})\n?$/.test(text))
      throw new Error(`${file}: not a node ID: ${JSON.stringify(text.slice(0, 40))}`);
    return Number(text.trim());
  }

  /** Stores `id` atomically (a temporary file renamed over the old one). */
  async writeId(id: number): Promise<void> {
    const file = join(this.dir, ID_FILE);
    const temporary = `${file}.${process.pid}.tmp`;
    await writeFile(temporary, `${id}\n`);
    await rename(temporary, file);
  }

  async release(): Promise<void> {
    await rm(join(this.dir, LOCK_FILE), { force: true });
  }
}
