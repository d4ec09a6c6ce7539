import { Writable } from "node:stream";
import { describe, expect, test } from "vitest";
import winston from "winston";
import { createLogger, type Logger, type LogMeta, silentLogger } from "../../src/logging.js";

/** A logger of the embedder's own, as the runtime sees it: five methods, nothing from winston. */
function arrayLogger(
  lines: { level: string; message: string; meta: LogMeta }[],
  bound: LogMeta = {},
): Logger {
  const at =
    (level: string) =>
    (message: string, meta: LogMeta = {}) =>
      lines.push({ level, message, meta: { ...bound, ...meta } });
  return {
    error: at("error"),
    warn: at("warn"),
    info: at("info"),
    debug: at("debug"),
    child: (meta) => arrayLogger(lines, { ...bound, ...meta }),
  };
}

describe("logging", () => {
  test("createLogger writes JSON lines with the child's fields, at the given level", () => {
    const lines: Record<string, unknown>[] = [];
    const stream = new Writable({
      write(chunk, _encoding, done) {
        lines.push(JSON.parse(chunk.toString()));
        done();
      },
    });
    const log = createLogger({ level: "info", transports: [new winston.transports.Stream({ stream })] });
    log.child({ node: "db-1" }).warn("lease deadline passed", { lease: "7" });
    log.debug("dropped below the level");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: "warn",
      message: "lease deadline passed",
      node: "db-1",
      lease: "7",
    });
    expect(typeof lines[0]?.timestamp).toBe("string");
  });

  test("silentLogger drops everything, its children too", () => {
    const log = silentLogger();
    expect(() => log.child({ a: 1 }).error("nothing", { b: 2 })).not.toThrow();
  });

  test("any object with error/warn/info/debug/child is a Logger; children carry their fields", () => {
    const lines: { level: string; message: string; meta: LogMeta }[] = [];
    const log: Logger = arrayLogger(lines);
    log.child({ node: "db-2" }).child({ id: 4 }).info("transition", { role: "primary" });
    expect(lines).toEqual([
      { level: "info", message: "transition", meta: { node: "db-2", id: 4, role: "primary" } },
    ]);
  });
});
