import { Writable } from "node:stream";
import winston from "winston";
import type { Logger } from "../../src/logging.js";

export interface LogRecord {
  level: string;
  message: string;
  [field: string]: unknown;
}

/** A real winston logger whose JSON lines are kept in memory, for tests that assert on logs. */
export function recordingLogger(): { logger: Logger; records: LogRecord[] } {
  const records: LogRecord[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      records.push(JSON.parse(chunk.toString()) as LogRecord);
      done();
    },
  });
  const logger = winston.createLogger({
    level: "debug",
    format: winston.format.json(),
    transports: [new winston.transports.Stream({ stream })],
  });
  return { logger, records };
}
