/**
 * Names for implementations referenced by a machine (actions, guards, delays, mappers), so that
 * a diagram or a JSON file can show them without functions.
 */

/** What an anonymous function (an inline action, guard, input or params mapper) is called. */
export const INLINE = "<inline>";

type Named = { name?: unknown; type?: unknown; guards?: unknown; sendId?: unknown; id?: unknown };

/**
 * The name of a function-valued implementation. XState's built-ins (`assign`, `sendTo`, `raise`,
 * `and`, `not`, …) carry their kind; a function that has only the name JavaScript inferred from
 * the property holding it (`guard: ({ event }) => …` is named "guard") is inline.
 */
export function functionName(fn: object, key?: string): string {
  const f = fn as Named;
  if (typeof f.type === "string" && f.type.startsWith("xstate.")) return f.type.slice("xstate.".length);
  if (Array.isArray(f.guards)) {
    return `${String(f.name)}(${f.guards.map((g: unknown) => guardName(g)).join(", ")})`;
  }
  const name = typeof f.name === "string" ? f.name : "";
  return name === "" || name === key ? INLINE : name;
}

/** The name of an action reference: a string, `{ type, params }`, or a function. */
export function actionName(action: unknown): string {
  if (typeof action === "string") return action;
  if (typeof action === "function") return functionName(action, "actions");
  if (action && typeof action === "object" && typeof (action as Named).type === "string") {
    const type = (action as { type: string }).type;
    return type.startsWith("xstate.") ? type.slice("xstate.".length) : type;
  }
  return INLINE;
}

/** The name of a guard reference: a string, `{ type, params }`, or a function. */
export function guardName(guard: unknown): string {
  if (typeof guard === "string") return guard;
  if (typeof guard === "function") return functionName(guard, "guard");
  if (guard && typeof guard === "object" && typeof (guard as Named).type === "string") {
    return (guard as { type: string }).type;
  }
  return INLINE;
}

/**
 * Whether an entry/exit action is one XState added itself to schedule or cancel an `after`
 * transition (its event type starts with `xstate.after.`); diagrams show the delayed transition
 * instead.
 */
export function isDelayBookkeeping(action: unknown): boolean {
  if (typeof action !== "function") return false;
  const f = action as Named;
  const ref = f.type === "xstate.raise" ? f.id : f.type === "xstate.cancel" ? f.sendId : undefined;
  return typeof ref === "string" && ref.startsWith("xstate.after.");
}
