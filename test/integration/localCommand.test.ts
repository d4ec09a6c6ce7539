import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, test } from "vitest";
import { CLI_BIN, cliEnv, ensureBuilt, isProcessAlive, PACKAGE_ROOT } from "../support/cli.js";
import { waitUntil } from "../support/waitUntil.js";

const ROOT = PACKAGE_ROOT;
const BIN = CLI_BIN;
const TMUX = "/usr/bin/tmux";
const SESSION = "local";

interface Row {
  selected: boolean;
  name: string;
  pid: number;
  id: string;
  role: string;
  lease: string;
}

interface Screen {
  text: string;
  rows: Row[];
  etcdPid: number | undefined;
  dataDir: string | undefined;
  primarySeat: string | undefined;
  backupSeat: string | undefined;
}

const ROW =
  /^│\s*(▶?)\s*│\s*(local-\d+)\s*│\s*(\d+)\s*│\s*([\d-]+)\s*│\s*[\d-]+\s*│\s*([^│]+?)\s*│\s*([^│]+?)\s*│$/;
const GROUPING_0 = /^│\s*0\s*│\s*0, 1, 2\s*│\s*([^│]+?)\s*│\s*([^│]+?)\s*│/;

function parseScreen(text: string): Screen {
  const lines = text.split("\n");
  const rows = lines.flatMap((line) => {
    const m = ROW.exec(line.trim());
    if (!m) return [];
    const [, marker, name, pid, id, role, lease] = m;
    return [
      {
        selected: marker === "▶",
        name: name ?? "",
        pid: Number(pid),
        id: id ?? "",
        role: role ?? "",
        lease: lease ?? "",
      },
    ];
  });
  const seats = lines.map((line) => GROUPING_0.exec(line.trim())).find((m) => m !== null);
  const seatName = (seat: string | undefined) => /^ID \d+ (local-\d+)/.exec(seat ?? "")?.[1];
  return {
    text,
    rows,
    etcdPid: Number(/etcd http:\/\/\S+ \(pid (\d+)\)/.exec(text)?.[1]) || undefined,
    dataDir: /etcd data dir: (\S+)/.exec(text)?.[1],
    primarySeat: seatName(seats?.[1]),
    backupSeat: seatName(seats?.[2]),
  };
}

/** The processes of this test's kind that are still there, for a failure message. */
function processList(): string {
  const ps = spawnSync("ps", ["-eo", "pid,ppid,stat,etime,args"], { encoding: "utf8" }).stdout;
  return ps
    .split("\n")
    .filter((line) => /rdeebee-cluster|etcd --name local/.test(line))
    .join("\n");
}

describe("rdeebee-cluster local in a pseudo-terminal (tmux)", () => {
  const socket = `rdeebee-local-test-${process.pid}-${Date.now()}`;
  const seen = { pids: new Set<number>(), dataDir: undefined as string | undefined };

  const tmux = (...args: string[]) => {
    const r = spawnSync(TMUX, ["-L", socket, ...args], { encoding: "utf8", env: cliEnv({ NO_COLOR: "1" }) });
    if (r.status !== 0) throw new Error(`tmux ${args.join(" ")} failed: ${r.stderr}`);
    return r.stdout;
  };
  const capture = () => {
    const screen = parseScreen(tmux("capture-pane", "-p", "-t", SESSION));
    for (const row of screen.rows) seen.pids.add(row.pid);
    if (screen.etcdPid) seen.pids.add(screen.etcdPid);
    seen.dataDir ??= screen.dataDir;
    return screen;
  };
  const press = (...keys: string[]) => tmux("send-keys", "-t", SESSION, ...keys);
  const exitFile = join(tmpdir(), `rdeebee-local-exit-${process.pid}-${Date.now()}`);

  beforeAll(ensureBuilt);

  afterEach(() => {
    rmSync(exitFile, { force: true });
    spawnSync(TMUX, ["-L", socket, "kill-server"], { stdio: "ignore" });
    rmSync(join(process.env.TMUX_TMPDIR ?? "/tmp", `tmux-${process.getuid?.() ?? 0}`, socket), {
      force: true,
    });
    for (const pid of seen.pids) if (isProcessAlive(pid)) process.kill(pid, "SIGKILL");
    if (seen.dataDir) rmSync(seen.dataDir, { recursive: true, force: true });
  });

  test("shows a primary and a backup, crashing a node changes the table, q stops everything", async () => {
    // The shell records local's exit status: tmux's own pane-dead flag has lagged under load.
    const local = [process.execPath, BIN, "local", "--nodes", "4", "--lease-ttl", "2"].join(" ");
    const command = `sh -c '${local}; echo $? > ${exitFile}'`;
    tmux("-f", "/dev/null", "new-session", "-d", "-s", SESSION, "-x", "160", "-y", "50", "-c", ROOT, command);
    tmux("set-option", "-w", "-t", SESSION, "remain-on-exit", "on");

    // Every node has joined before the crash: a late joiner's transitions would push the crash out
    // of the eight-line "recent transitions" list this test reads.
    const formed = await waitUntil(
      "a primary and a backup on the screen, every node with an ID",
      () => {
        const s = capture();
        const roles = s.rows.map((r) => r.role);
        return s.rows.length === 4 &&
          s.rows.every((r) => /^\d+$/.test(r.id)) &&
          s.primarySeat &&
          s.backupSeat &&
          roles.includes("primary") &&
          roles.includes("backup")
          ? s
          : undefined;
      },
      30_000,
      200,
    );
    expect(formed.dataDir).toMatch(/rdeebee-local-/);
    expect(existsSync(formed.dataDir ?? "")).toBe(true);
    for (const row of formed.rows) expect(isProcessAlive(row.pid)).toBe(true);

    const victim = formed.rows.find((r) => r.name === formed.primarySeat);
    const victimIndex = formed.rows.indexOf(victim as Row);
    const selectedIndex = formed.rows.findIndex((r) => r.selected);
    const moves = victimIndex - selectedIndex;
    for (let i = 0; i < Math.abs(moves); i++) press(moves > 0 ? "j" : "k");
    await waitUntil("the primary selected", () => capture().rows[victimIndex]?.selected, 5_000, 100);
    press("c");

    const crashed = await waitUntil(
      `${victim?.name} crashed and another node primary`,
      () => {
        const s = capture();
        const row = s.rows.find((r) => r.name === victim?.name);
        return row?.lease.startsWith("crashed") && s.primarySeat && s.primarySeat !== victim?.name
          ? s
          : undefined;
      },
      15_000,
      200,
    );
    expect(isProcessAlive(victim?.pid)).toBe(false);
    expect(crashed.rows.find((r) => r.name === victim?.name)?.role).toBe("(was primary)");
    expect(crashed.primarySeat).toBe(formed.backupSeat);
    expect(crashed.rows.find((r) => r.name === crashed.primarySeat)?.role).toBe("primary");
    expect(crashed.text).toMatch(new RegExp(`${victim?.name}\\s+primary → \\[crashed\\]`));
    // The promotion reads as the API names the roles (backup → primary), not through the in-flight candidate.
    const promotion = new RegExp(`grouping 0 .* ${formed.backupSeat}\\s+backup → primary`);
    await waitUntil(
      "the promotion among the leader changes",
      () => promotion.test(capture().text),
      10_000,
      200,
    );

    press("q");
    await waitUntil("the local command to exit", () => existsSync(exitFile), 30_000, 100).catch(
      (err: Error) => {
        throw new Error(`${err.message}\nprocesses:\n${processList()}\nthe screen:\n${capture().text}`);
      },
    );
    expect(readFileSync(exitFile, "utf8").trim()).toBe("0");
    const final = tmux("capture-pane", "-p", "-S", "-", "-t", SESSION);
    expect(final).toContain("rdeebee-cluster local: done");
    const lingering = /still alive after cleanup.*/.exec(final)?.[0];
    if (lingering) console.warn(`local exited through its guard: ${lingering}`);
    for (const pid of seen.pids) expect(isProcessAlive(pid), `pid ${pid} still alive`).toBe(false);
    expect(existsSync(seen.dataDir ?? "")).toBe(false);
  });
});
