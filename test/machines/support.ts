/**
 * Small helpers shared by the machine model tests: the named-effect record, a recorder to plug
 * into `machine.provide`, and readable names for event sequences.
 */
import type { AnyStateMachine } from "xstate";

/** One call of a named effect, as seen by the implementation the runtime would provide. */
export interface Effect {
  /** The machine whose action ran (its `id`), or `parent` for an event sent to the parent. */
  machine: string;
  name: string;
  params?: unknown;
}

/** Shorthand for an expected effect. */
export function effect(machine: string, name: string, params?: unknown): Effect {
  return params === undefined ? { machine, name } : { machine, name, params };
}

/** An action implementation as `provide` accepts it. */
export type RecorderAction = (args: unknown, params: unknown) => void;

/**
 * Records every named effect in call order. `actions(machine, names)` gives implementations for
 * `machine.provide({ actions })`; `take()` returns the effects recorded since the last `take()`.
 */
export class EffectLog {
  readonly all: Effect[] = [];
  private taken = 0;

  record(machine: string, name: string, params?: unknown): void {
    this.all.push(effect(machine, name, params));
  }

  /** Recording implementations for each of `names`. */
  actions(machine: string, names: readonly string[]): Record<string, RecorderAction> {
    return Object.fromEntries(
      names.map((name) => [name, (_args: unknown, params: unknown) => this.record(machine, name, params)]),
    );
  }

  /** The effects recorded since the previous call. */
  take(): Effect[] {
    const fresh = this.all.slice(this.taken);
    this.taken = this.all.length;
    return fresh;
  }
}

/**
 * The named effects a machine declares: the actions in `setup()` whose default implementation is a
 * plain function (a no-op for the runtime to replace), as opposed to XState built-ins such as
 * `assign`, `sendTo` or `sendParent`, which carry a `resolve` method. Used only to check that a
 * spec lists exactly these, never to build expectations.
 */
export function effectNames(machine: AnyStateMachine): string[] {
  const actions = (machine.implementations.actions ?? {}) as Record<string, unknown>;
  return Object.entries(actions)
    .filter(([, impl]) => typeof impl === "function" && !("resolve" in impl))
    .map(([name]) => name)
    .sort();
}

/**
 * Effects grouped by machine, each group in call order. XState orders a child's start against its
 * parent's actions differently on an actor's start than inside a transition; the design only fixes
 * the order within one machine.
 */
export function byMachine(effects: readonly Effect[]): Record<string, Effect[]> {
  const groups: Record<string, Effect[]> = {};
  for (const e of effects) groups[e.machine] = [...(groups[e.machine] ?? []), e];
  return groups;
}

/** A readable one-line name for a sequence of events, with their payloads. */
export function describePath(events: readonly { type: string }[]): string {
  if (events.length === 0) return "(start)";
  return events
    .map((e) => {
      const { type, ...rest } = e;
      return Object.keys(rest).length ? `${type} ${JSON.stringify(rest)}` : type;
    })
    .join(" → ");
}
