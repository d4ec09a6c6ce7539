import { randomUUID } from "node:crypto";
import { linkSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { open, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { ConfigError } from "../config/index.js";
import { currentBootId, isProcessAlive, processStartTicks } from "../processLiveness.js";

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
/** A node ID, and the lease it was last held under and the host's boot id then (absent in files that predate them). */
const STORED_ID = /^(0|[1-9]\d{0,8})(?: ([1-9]\d{0,19})(?: ([0-9a-f-]{36}))?)?\n?$/;

/**
 * What the ID file holds: the ID the node held last, the lease of the session that held it, and
 * the boot id of the host it ran on (`currentBootId`).
 */
export interface StoredIdentity {
  id: number;
  lease?: string;
  bootId?: string;
}

/** What a lock file holds: the holder's pid and, on Linux, its start time (a reused pid is another process). */
interface LockHolder {
  pid: number;
  startTicks?: number;
}

function lockContent(): string {
  const ticks = processStartTicks(process.pid);
  return ticks === undefined ? `${process.pid}\n` : `${process.pid} ${ticks}\n`;
}

function parseLock(text: string): LockHolder | undefined {
  const [pid, ticks] = text.trim().split(/\s+/).map(Number);
  if (pid === undefined || !Number.isInteger(pid) || pid <= 0) return undefined;
  return ticks !== undefined && Number.isInteger(ticks) ? { pid, startTicks: ticks } : { pid };
}

const readText = (file: string): string | undefined => {
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
};

/** The file holding the ID a node held last; only the holder of the directory's lock writes it. */
export class NodeIdFile {
  readonly file: string;

  constructor(readonly dir: string) {
    this.file = join(dir, ID_FILE);
  }

  /** The ID stored, or undefined when there is none; a file that is not a node ID is a ConfigError naming it. */
  read(): StoredIdentity | undefined {
    const text = readText(this.file);
    if (text === undefined) return undefined;
    const match = STORED_ID.exec(text);
    if (!match)
      throw new ConfigError(this.file, [
        `not a node ID: ${JSON.stringify(text.slice(0, 40))} (remove the file to start without a previous ID)`,
      ]);
    const [, id, lease, bootId] = match;
    return { id: Number(id), ...(lease && { lease }), ...(bootId && { bootId }) };
  }

  /**
   * Stores `id`: written to a temporary file, flushed, then renamed over the old one, so the file
   * holds the old ID or the new one, never a torn write, even after a power loss.
   */
  async write(id: number, lease: string): Promise<void> {
    const temporary = `${this.file}.${process.pid}.tmp`;
    const handle = await open(temporary, "w");
    try {
      const bootId = currentBootId();
      await handle.writeFile(bootId ? `${id} ${lease} ${bootId}\n` : `${id} ${lease}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, this.file).catch(async (err: unknown) => {
      await rm(temporary, { force: true });
      throw err;
    });
  }
}

/**
 * A node's state directory (`--state-dir`, `stateDir`): the ID it held last (`idFile`), kept
 * across restarts, under a lock file that names the holding process. The lock file appears whole
 * (written aside, then hard-linked into place, which fails when one exists). A lock whose process
 * is gone (or is a zombie, or whose pid was reused) is stale and taken over; a live one refuses
 * (`StateDirLockedError`), this process's own included, so two nodes of one process cannot share
 * a directory either.
 */
export class NodeStateDir {
  readonly idFile: NodeIdFile;
  private readonly lockFile: string;

  private constructor(
    readonly dir: string,
    private readonly content: string,
  ) {
    this.idFile = new NodeIdFile(dir);
    this.lockFile = join(dir, LOCK_FILE);
  }

  /** Takes the directory's lock (creating the directory if needed), synchronously: before anything else runs. */
  static lock(dir: string): NodeStateDir {
    mkdirSync(dir, { recursive: true });
    const lockFile = join(dir, LOCK_FILE);
    const content = lockContent();
    for (let attempt = 0; attempt < 3; attempt++) {
      if (linkNew(lockFile, content)) return new NodeStateDir(dir, content);
      const seen = readText(lockFile);
      if (seen === undefined) continue;
      const holder = parseLock(seen);
      if (holder && isProcessAlive(holder.pid, holder.startTicks))
        throw new StateDirLockedError(dir, holder.pid);
      takeOverStale(lockFile, seen);
    }
    throw new Error(
      `state directory ${dir}: could not take its lock file ${lockFile} (other processes kept taking it)`,
    );
  }

  /** Gives the lock up; a lock file that is no longer this holder's (taken over meanwhile) is left alone. */
  release(): void {
    if (readText(this.lockFile) === this.content) rmSync(this.lockFile, { force: true });
  }
}

/** Creates `lockFile` holding `content`, whole; false when a lock file exists. */
function linkNew(lockFile: string, content: string): boolean {
  const aside = `${lockFile}.${randomUUID()}.tmp`;
  writeFileSync(aside, content);
  try {
    linkSync(aside, lockFile);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw err;
  } finally {
    rmSync(aside, { force: true });
  }
}

/**
 * Moves a stale lock file out of the way. Another process may have replaced it since it was read
 * (it judged it stale too and took the lock): the file moved aside is checked, and one that is
 * not the stale lock is put back.
 */
export function takeOverStale(lockFile: string, staleContent: string): void {
  const aside = `${lockFile}.stale.${randomUUID()}`;
  try {
    renameSync(lockFile, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw err;
  }
  try {
    if (readText(aside) !== staleContent) linkSync(aside, lockFile);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  } finally {
    rmSync(aside, { force: true });
  }
}
