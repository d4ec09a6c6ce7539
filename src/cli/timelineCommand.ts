import { statSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { readInspectionFiles, roleTimeline, TimelineInputError } from "../runtime/timeline.js";
import { timelineHtml, timelineText } from "./timelineFormat.js";

export interface TimelineOptions {
  html?: string;
}

/** Refuses an `--html` path whose directory does not exist, before any input is read. */
function checkHtmlTarget(path: string): void {
  const dir = dirname(resolve(path));
  let isDirectory = false;
  try {
    isDirectory = statSync(dir).isDirectory();
  } catch {}
  if (!isDirectory) throw new TimelineInputError(`--html ${path}`, `directory ${dir} does not exist`);
}

function writeHtml(path: string, html: string): void {
  try {
    writeFileSync(path, html);
  } catch (err) {
    throw new TimelineInputError(
      `--html ${path}`,
      `cannot be written: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}

/**
 * Prints the role transitions recorded in inspection files (or directories of them); with --html
 * also writes a page. A file that is missing, unreadable, empty or not a recording is refused with
 * a TimelineInputError naming it (exit 2).
 */
export function timelineCommand(
  files: string[],
  options: TimelineOptions,
  out: (text: string) => void,
): void {
  if (options.html) checkHtmlTarget(options.html);
  const entries = roleTimeline(readInspectionFiles(files));
  out(timelineText(entries));
  if (options.html) {
    writeHtml(options.html, timelineHtml(entries));
    out(`wrote ${options.html}`);
  }
}
