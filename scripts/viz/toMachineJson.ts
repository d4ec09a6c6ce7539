import type { AnyStateMachine, AnyStateNode, AnyStateNodeDefinition, AnyTransitionDefinition } from "xstate";
import { actionName, functionName, guardName, INLINE, isDelayBookkeeping } from "./names.js";
import { hasExplicitInvokeId } from "./walk.js";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

const DONE_ACTOR = "xstate.done.actor.";
const ERROR_ACTOR = "xstate.error.actor.";
const SNAPSHOT_ACTOR = "xstate.snapshot.";
const DONE_STATE = "xstate.done.state.";

/**
 * The machine as XState machine-config JSON (what `createMachine({ … })` takes, so that the
 * Stately editor can import it), derived from `machine.toJSON()`.
 *
 * `toJSON()` gives the machine *definition*, which differs from a config: targets are arrays of
 * `#id` state nodes, an invoke's `onDone` / `onError` and the `after` transitions appear in `on`
 * under XState's internal event types (`xstate.done.actor.<id>`, `xstate.after.<delay>.<id>`),
 * entry and exit hold the actions XState adds to schedule `after` events, and eventless `always`
 * transitions are missing altogether. This folds those back into `invoke[].onDone`, `after` and
 * `always` (read from the state node), writes targets as `#id` strings, functions as their names
 * or `"<inline>"`, and keys in a fixed order (states and events in document order), so the output
 * is deterministic.
 */
export function toMachineJson(machine: AnyStateMachine): string {
  const definition = machine.toJSON();
  const config: JsonObject = {
    id: definition.id,
    ...(definition.version === undefined ? {} : { version: definition.version }),
    ...(machine.config.context === undefined ? {} : { context: toJson(machine.config.context, "context") }),
    ...stateConfig(definition, machine.root),
  };
  return `${JSON.stringify(config, null, 2)}\n`;
}

function stateConfig(def: AnyStateNodeDefinition, node: AnyStateNode): JsonObject {
  const config: JsonObject = {};
  if (node.parent && node.config.id !== undefined) config.id = def.id;
  if (def.type === "parallel" || def.type === "final" || def.type === "history") config.type = def.type;
  if (def.type === "history") config.history = def.history === "deep" ? "deep" : "shallow";
  const initial = def.initial?.target[0];
  if (def.type === "compound" && initial) config.initial = initial.key;
  if (def.description !== undefined) config.description = def.description;
  if (def.tags.length > 0) config.tags = [...def.tags];
  if (def.meta !== undefined) config.meta = toJson(def.meta, "meta");

  const entry = node.entry.filter((a) => !isDelayBookkeeping(a)).map(actionJson);
  const exit = node.exit.filter((a) => !isDelayBookkeeping(a)).map(actionJson);
  if (entry.length > 0) config.entry = entry;
  if (exit.length > 0) config.exit = exit;

  const on = def.on as Record<string, AnyTransitionDefinition[]>;
  const claimed = new Set<string>();
  const claim = (descriptor: string): AnyTransitionDefinition[] | undefined => {
    const list = on[descriptor];
    if (list) claimed.add(descriptor);
    return list;
  };

  if (def.invoke.length > 0) {
    config.invoke = def.invoke.map((inv, i) => {
      const json: JsonObject = hasExplicitInvokeId(node, i) ? { id: inv.id } : {};
      json.src = typeof inv.src === "string" ? inv.src : INLINE;
      if (inv.systemId !== undefined) json.systemId = inv.systemId;
      if (inv.input !== undefined) json.input = toJson(inv.input, "input");
      for (const [key, prefix] of [
        ["onDone", DONE_ACTOR],
        ["onError", ERROR_ACTOR],
        ["onSnapshot", SNAPSHOT_ACTOR],
      ] as const) {
        const list = claim(`${prefix}${inv.id}`);
        if (list) json[key] = transitionsJson(list);
      }
      return json;
    });
  }

  const onDone = claim(`${DONE_STATE}${def.id}`);
  const after: JsonObject = {};
  const events: JsonObject = {};
  for (const [descriptor, list] of Object.entries(on)) {
    if (claimed.has(descriptor)) continue;
    const delayed = list.filter((t) => "delay" in t);
    for (const t of delayed) {
      const delay = String((t as { delay: unknown }).delay);
      after[delay] = [...asArray(after[delay]), transitionJson(t)];
    }
    const plain = list.filter((t) => !("delay" in t));
    if (plain.length > 0) events[descriptor] = transitionsJson(plain);
  }
  if (Object.keys(events).length > 0) config.on = events;
  const always = (node.always ?? []) as AnyTransitionDefinition[];
  if (always.length > 0) config.always = transitionsJson(always);
  if (Object.keys(after).length > 0) {
    config.after = Object.fromEntries(
      Object.entries(after).map(([delay, list]) => [delay, single(asArray(list))]),
    );
  }
  if (onDone) config.onDone = transitionsJson(onDone);
  if (def.output !== undefined) config.output = toJson(def.output, "output");

  const children = Object.entries(def.states);
  if (children.length > 0) {
    const childNodes = node.states as Record<string, AnyStateNode>;
    config.states = Object.fromEntries(
      children.map(([key, childDef]) => {
        const childNode = childNodes[key];
        if (!childNode) throw new Error(`state node #${def.id}.${key} not found`);
        return [key, stateConfig(childDef, childNode)];
      }),
    );
  }
  return config;
}

function transitionsJson(list: readonly AnyTransitionDefinition[]): Json {
  return single(list.map(transitionJson));
}

function transitionJson(t: AnyTransitionDefinition): JsonObject {
  const json: JsonObject = {};
  const targets = (t.target ?? []).map((target: AnyStateNode) => `#${target.id}`);
  if (targets.length > 0) json.target = single(targets);
  if (t.guard !== undefined) json.guard = guardJson(t.guard);
  if (t.actions.length > 0) json.actions = t.actions.map(actionJson);
  if (t.reenter) json.reenter = true;
  if (t.description !== undefined) json.description = t.description;
  if (t.meta !== undefined) json.meta = toJson(t.meta, "meta");
  return json;
}

/** An action as config: its name, or `{ type, params }` when it has params. */
function actionJson(action: unknown): Json {
  if (action && typeof action === "object" && "params" in action && action.params !== undefined) {
    return { type: actionName(action), params: toJson(action.params, "params") };
  }
  return actionName(action);
}

function guardJson(guard: unknown): Json {
  if (guard && typeof guard === "object" && "params" in guard && guard.params !== undefined) {
    return { type: guardName(guard), params: toJson(guard.params, "params") };
  }
  return guardName(guard);
}

/** Plain data as JSON with object keys sorted; functions become their names or `"<inline>"`. */
function toJson(value: unknown, key: string): Json {
  if (value === null || typeof value === "boolean" || typeof value === "string") return value;
  if (typeof value === "number") return Number.isFinite(value) ? value : String(value);
  if (typeof value === "function") return functionName(value, key);
  if (Array.isArray(value)) return value.map((item) => toJson(item, key));
  if (typeof value === "object") {
    return Object.fromEntries(
      Object.keys(value)
        .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
        .sort()
        .map((k) => [k, toJson((value as Record<string, unknown>)[k], k)]),
    );
  }
  return String(value);
}

function single<T extends Json>(items: T[]): Json {
  return items.length === 1 ? (items[0] as T) : items;
}

function asArray(value: Json | undefined): Json[] {
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}
