import winston from "winston";

export type Logger = winston.Logger;

export interface LoggerOptions {
  level?: string;
  /** Fields on every line, e.g. the node name. */
  defaultMeta?: Record<string, unknown>;
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

/** A logger that drops everything, for tests and embedders that bring their own. */
export function silentLogger(): Logger {
  return winston.createLogger({
    silent: true,
    transports: [new winston.transports.Console({ silent: true })],
  });
}
