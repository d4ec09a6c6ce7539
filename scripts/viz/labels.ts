import type { GraphInvoke, GraphTransition } from "./model.js";
import { INLINE } from "./names.js";

/** How diagrams show an inline implementation: "inline" (angle brackets would be read as markup). */
function shown(name: string): string {
  return name === INLINE ? "inline" : name;
}

/** `EVENT`, `always`, `after(name)`, `after(500ms)`, `done: child`, `error: child`, … */
export function triggerText(t: GraphTransition): string {
  switch (t.trigger) {
    case "event":
      return t.event;
    case "always":
      return "always";
    case "after":
      return typeof t.delay === "number" ? `after(${t.delay}ms)` : `after(${t.delay ?? "?"})`;
    case "done":
    case "error":
    case "snapshot":
      return `${t.trigger}: ${t.child ?? "?"}`;
    case "stateDone":
      return "done";
  }
}

/** `EVENT [guard] / action1, action2`: the trigger, the guard if any, the actions if any. */
export function transitionLabel(t: GraphTransition): string {
  const guard = t.guard === undefined ? "" : ` [${shown(t.guard)}]`;
  const actions = t.actions.length === 0 ? "" : ` / ${t.actions.map(shown).join(", ")}`;
  return `${triggerText(t)}${guard}${actions}`;
}

/** `entry / a, b` or nothing. */
export function actionsLine(kind: "entry" | "exit", actions: readonly string[]): string[] {
  return actions.length === 0 ? [] : [`${kind} / ${actions.map(shown).join(", ")}`];
}

/** `invokes follower`, and `as role` when the config names an actor id other than the logic's name. */
export function invokeLine(inv: GraphInvoke): string {
  return inv.id === undefined || inv.id === inv.src
    ? `invokes ${inv.src}`
    : `invokes ${inv.src} as ${inv.id}`;
}
