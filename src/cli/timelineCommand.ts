import { writeFileSync } from "node:fs";
import { readInspectionFiles, roleTimeline } from "../runtime/timeline.js";
import { timelineHtml, timelineText } from "./timelineFormat.js";

export interface TimelineOptions {
  html?: string;
}

/** Prints the role transitions recorded in inspection files; with --html also writes a page. */
export function timelineCommand(
  files: string[],
  options: TimelineOptions,
  out: (text: string) => void,
): void {
  const entries = roleTimeline(readInspectionFiles(files));
  out(timelineText(entries));
  if (options.html) {
    writeFileSync(options.html, timelineHtml(entries));
    out(`wrote ${options.html}`);
  }
}
