import winston from "winston";

/** Structured fields of one log line. */
export type LogMeta = Record<string, unknown>;

/**
 * What the runtime logs through: five methods, each `(message, meta?)`, and `child(meta)` for a
 * logger whose lines all carry `meta`. winston's loggers fit it as they are; `createLogger` is
 * the default.
 */
export interface Logger {
  error(message: string, meta?: LogMeta): void;
  warn(message: string, meta?: LogMeta): void;
  info(message: string, meta?: LogMeta): void;
  debug(message: string, meta?: LogMeta): void;
  child(meta: LogMeta): Logger;
}

export interface LoggerOptions {
  level?: string;
  /** Fields on every line, e.g. the node name. */
  defaultMeta?: LogMeta;
  /** Where lines go; defaults to stderr so stdout stays free for command output. */
  transports?: winston.transport[];
}

/** A JSON-lines winston logger; `LOG_LEVEL` sets the level when none is given. */
export function createLogger(options: LoggerOptions = {}): Logger {
  return winston.createLogger({
    level: options.level ?? process.env.LOG_LEVEL ?? "info",
    defaultMeta: options.defaultMeta,
    format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
    transports: options.transports ?? [
      new winston.transports.Console({ stderrLevels: Object.keys(winston.config.npm.levels) }),
    ],
  });
}

const ignore = (): void => {};

/** A logger that drops everything, for tests and embedders that want no logs from the node. */
export function silentLogger(): Logger {
  const silent: Logger = { error: ignore, warn: ignore, info: ignore, debug: ignore, child: () => silent };
  return silent;
}
