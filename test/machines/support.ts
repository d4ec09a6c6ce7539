/**
 * Shared helpers for the model-based machine tests: an effect recorder to plug into
 * `machine.provide`, the list of every state node and transition of a machine (derived from the
 * machine, never hard-coded), a coverage tracker fed by XState inspection events, traversal
 * serializers and path utilities for `xstate/graph`, and the advertiser spec that both the
 * advertiser and the group leader suites check against.
 */
import { expect } from "vitest";
import {
  type AnyEventObject,
  type AnyMachineSnapshot,
  type AnyStateMachine,
  type AnyStateNode,
  type AnyTransitionDefinition,
  type InspectionEvent,
  initialTransition,
  type Snapshot,
  type SnapshotFrom,
  transition,
} from "xstate";
import { getStateNodes, type StatePath } from "xstate/graph";
import type { FailoverAdvertiserEvent } from "../../machines/failoverAdvertiser.js";

// ---------------------------------------------------------------------------------------------
// Effects
// ---------------------------------------------------------------------------------------------

/** One call of a named effect, as seen by the implementation the runtime would provide. */
export interface Effect {
  /** The machine whose action ran (its `id`). */
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

  /** A recording implementation for one named effect. */
  action(machine: string, name: string): RecorderAction {
    return (_args, params) => this.record(machine, name, params);
  }

  /** Recording implementations for each of `names`. */
  actions(machine: string, names: readonly string[]): Record<string, RecorderAction> {
    return Object.fromEntries(names.map((name) => [name, this.action(machine, name)]));
  }

  /** The effects recorded since the previous call. */
  take(): Effect[] {
    const fresh = this.all.slice(this.taken);
    this.taken = this.all.length;
    return fresh;
  }
}

/**
 * The named effects of a machine: the actions declared in `setup()` whose default
 * implementation is a plain function (a no-op for the runtime to replace), as opposed to XState
 * built-ins such as `assign`, `sendTo` or `sendParent`, which carry a `resolve` method.
 */
export function effectNames(machine: AnyStateMachine): string[] {
  const actions = (machine.implementations.actions ?? {}) as Record<string, unknown>;
  return Object.entries(actions)
    .filter(([, impl]) => typeof impl === "function" && !("resolve" in impl))
    .map(([name]) => name)
    .sort();
}

// ---------------------------------------------------------------------------------------------
// State nodes and transitions of a machine
// ---------------------------------------------------------------------------------------------

/** Every state node of `machine` except the root, by id (e.g. `node.member.follower`). */
export function allStateIds(machine: AnyStateMachine): string[] {
  return getStateNodes(machine.root).map((n) => n.id);
}

function allNodes(machine: AnyStateMachine): AnyStateNode[] {
  return [machine.root, ...getStateNodes(machine.root)];
}

/** The key of one transition: source state id, event (`always` for eventless) and its index. */
export function keyOf(t: AnyTransitionDefinition): string {
  const always = t.source.always ?? [];
  const index = always.indexOf(t);
  if (index >= 0) return `${t.source.id} --always[${index}]`;
  const candidates = t.source.transitions.get(t.eventType) ?? [];
  return `${t.source.id} --${t.eventType}[${candidates.indexOf(t)}]`;
}

/**
 * Every transition `machine` defines, one key per state node x event x alternative: guarded
 * alternatives of one event count separately, so do `always` transitions and `invoke.onDone`.
 */
export function allTransitions(machine: AnyStateMachine): string[] {
  const keys: string[] = [];
  for (const node of allNodes(machine)) {
    for (const candidates of node.transitions.values()) for (const t of candidates) keys.push(keyOf(t));
    for (const t of node.always ?? []) keys.push(keyOf(t));
  }
  return keys;
}

/**
 * Collects the state nodes entered and the transitions taken by real actors, from XState
 * inspection events (`createActor(m, { inspect: coverage.inspect })`). One tracker may watch a
 * whole actor system: keys carry the machine id, and `report(machine)` reads one machine's share.
 */
export class Coverage {
  readonly states = new Set<string>();
  readonly transitions = new Set<string>();

  readonly inspect = (event: InspectionEvent): void => {
    if (event.type === "@xstate.snapshot" || event.type === "@xstate.microstep") {
      const snapshot = event.snapshot as Partial<AnyMachineSnapshot>;
      for (const node of snapshot._nodes ?? []) this.states.add(node.id);
    }
    if (event.type === "@xstate.microstep") {
      for (const t of event._transitions) {
        this.transitions.add(keyOf(t));
        this.states.add(t.source.id);
        for (const target of t.target ?? []) this.states.add(target.id);
      }
    }
  };

  report(machine: AnyStateMachine) {
    const states = allStateIds(machine);
    const transitions = allTransitions(machine);
    const missingStates = states.filter((id) => !this.states.has(id));
    const missingTransitions = transitions.filter((key) => !this.transitions.has(key));
    return {
      missingStates,
      missingTransitions,
      summary: `${machine.id}: states ${states.length - missingStates.length}/${states.length}, transitions ${
        transitions.length - missingTransitions.length
      }/${transitions.length}`,
    };
  }
}

/** The state node ids of a (model or real) snapshot, e.g. `["node.member", "node.member.leader"]`. */
export function stateIdsOf(snapshot: Snapshot<unknown>): string[] {
  return ((snapshot as Partial<AnyMachineSnapshot>)._nodes ?? []).map((n) => n.id);
}

// ---------------------------------------------------------------------------------------------
// Traversal
// ---------------------------------------------------------------------------------------------

type SerializeState<S> = (state: S, event: AnyEventObject | undefined, prev?: S) => string;

/**
 * A serializer that keys each traversal vertex by the state reached *and* the transition that
 * reached it (event payload and source state value), so that shortest paths take every
 * transition once rather than only reach every state. `abstract` chooses what of a snapshot
 * counts (default: value and context).
 */
export function transitionKeyed<S extends AnyMachineSnapshot>(
  abstract: (s: S) => unknown = (s) => ({ value: s.value, context: s.context }),
): SerializeState<S> {
  return (state, event, prev) => {
    const vertex = JSON.stringify(abstract(state));
    if (!event || !prev) return vertex;
    return `${vertex} <- ${JSON.stringify(event)} <- ${JSON.stringify(prev.value)}`;
  };
}

/** Keys a vertex by an abstraction of the state only (for simple paths: no incoming event). */
export function stateKeyed<S extends AnyMachineSnapshot>(
  abstract: (s: S) => unknown = (s) => ({ value: s.value, context: s.context }),
): SerializeState<S> {
  return (state) => JSON.stringify(abstract(state));
}

/** The events of a path, without the `xstate.init` step `xstate/graph` puts first. */
export function eventsOf<E extends AnyEventObject>(path: StatePath<Snapshot<unknown>, E>): E[] {
  return path.steps.map((s) => s.event).filter((e) => e.type !== "xstate.init");
}

/** Removes duplicate paths and paths whose events are a prefix of another path's events. */
export function dedupePaths<P extends StatePath<Snapshot<unknown>, AnyEventObject>>(
  paths: readonly P[],
): P[] {
  const keyed = paths.map((path) => ({ path, events: eventsOf(path).map((e) => JSON.stringify(e)) }));
  keyed.sort((a, b) => b.events.length - a.events.length);
  const kept: typeof keyed = [];
  for (const candidate of keyed) {
    const covered = kept.some((k) => candidate.events.every((e, i) => k.events[i] === e));
    if (!covered) kept.push(candidate);
  }
  return kept.map((k) => k.path);
}

/** A readable one-line name for a path: its events with payloads. */
export function describePath(events: readonly AnyEventObject[]): string {
  if (events.length === 0) return "(initial state)";
  return events
    .map((e) => {
      const { type, ...rest } = e;
      const short = type.replace(/^xstate\.done\.actor\./, "done:");
      return Object.keys(rest).length ? `${short} ${JSON.stringify(rest)}` : short;
    })
    .join(" → ");
}

/**
 * Asserts that a real actor's snapshot is the one the model predicted: value, status, output, and
 * context, or only `project(context)` when the traversal abstracted part of the context away (the
 * model's snapshot for an abstract vertex may come from another concrete history).
 */
export function expectSameState(
  real: AnyMachineSnapshot,
  model: AnyMachineSnapshot,
  where: string,
  project: (context: AnyMachineSnapshot["context"]) => unknown = (c) => c,
): void {
  expect({ where, value: real.value, status: real.status }).toEqual({
    where,
    value: model.value,
    status: model.status,
  });
  expect(project(real.context), `${where}: context`).toEqual(project(model.context));
  if (model.status === "done") expect(real.output, `${where}: output`).toEqual(model.output);
}

/** The last event of a given type in a list, if any. */
export function lastOf<E extends AnyEventObject, T extends E["type"]>(
  events: readonly E[],
  type: T,
): Extract<E, { type: T }> | undefined {
  for (let i = events.length - 1; i >= 0; i--) {
    const e = events[i];
    if (e?.type === type) return e as Extract<E, { type: T }>;
  }
  return undefined;
}

/**
 * States a stable snapshot can never be in: those with an unguarded `always` transition. The
 * graph traversal only sees stable snapshots; real actors pass through these in a microstep.
 */
export function transientStateIds(machine: AnyStateMachine): string[] {
  return getStateNodes(machine.root)
    .filter((n) => (n.always ?? []).some((t) => !t.guard))
    .map((n) => n.id);
}

/** Every state node id found in the snapshots along the given paths. */
export function statesOnPaths(paths: readonly StatePath<Snapshot<unknown>, AnyEventObject>[]): Set<string> {
  const ids = new Set<string>();
  for (const path of paths) {
    for (const step of path.steps) for (const id of stateIdsOf(step.state)) ids.add(id);
    for (const id of stateIdsOf(path.state)) ids.add(id);
  }
  return ids;
}

// ---------------------------------------------------------------------------------------------
// Specs shared by several models
// ---------------------------------------------------------------------------------------------

/** Representative advertiser events: missing sets (empty, one, two IDs) and each result. */
export const ADVERTISER_EVENTS: FailoverAdvertiserEvent[] = [
  { type: "MEMBERS_CHANGED", missing: [] },
  { type: "MEMBERS_CHANGED", missing: [4] },
  { type: "MEMBERS_CHANGED", missing: [4, 5] },
  { type: "SLOTS_ADVERTISED" },
  { type: "ADVERTISE_FAILED", error: "etcdserver: request timed out" },
  { type: "RETRY" },
];

export type AdvertiserPhase = "idle" | "inFlight" | "retryWait";
export const STATE_OF_PHASE: Record<AdvertiserPhase, string> = {
  idle: "watchingMembers",
  inFlight: "advertising",
  retryWait: "waitingToRetry",
};

/**
 * The advertiser as the design describes it, written independently of the machine: at most one
 * batch in flight; the latest missing set seen while a batch is in flight (or while waiting to
 * retry) is advertised next; an empty set is never advertised. On start it asks for the current
 * missing set (`readMissingSlots`), which the runtime answers with a MEMBERS_CHANGED: gaps that
 * opened before this node became primary are advertised too.
 *
 * A failed batch is not dropped: the runtime's missing-slot stream does not repeat an unchanged
 * set, so after the retry wait the failed IDs are advertised again, unless a newer non-empty
 * missing set arrived while the batch was in flight, which replaces them (a newer empty set does
 * not cancel the retry). A set that arrives while waiting to retry replaces whatever was to be
 * retried, as it would any pending set.
 */
export class AdvertiserSpec {
  phase: AdvertiserPhase = "idle";
  private latest: readonly number[] = [];
  private inFlight: readonly number[] = [];

  start(): Effect[] {
    return [effect("failoverAdvertiser", "readMissingSlots")];
  }

  step(e: FailoverAdvertiserEvent): Effect[] {
    switch (e.type) {
      case "MEMBERS_CHANGED":
        this.latest = e.missing;
        return this.phase === "idle" ? this.flush() : [];
      case "SLOTS_ADVERTISED":
        if (this.phase !== "inFlight") return [];
        this.phase = "idle";
        this.inFlight = [];
        return this.flush();
      case "ADVERTISE_FAILED":
        if (this.phase !== "inFlight") return [];
        this.phase = "retryWait";
        if (this.latest.length === 0) this.latest = this.inFlight;
        this.inFlight = [];
        return [effect("failoverAdvertiser", "scheduleRetry")];
      case "RETRY":
        if (this.phase !== "retryWait") return [];
        this.phase = "idle";
        return this.flush();
    }
  }

  private flush(): Effect[] {
    if (this.latest.length === 0) return [];
    this.inFlight = this.latest;
    this.latest = [];
    this.phase = "inFlight";
    return [effect("failoverAdvertiser", "advertiseSlots", { ids: this.inFlight })];
  }
}

/**
 * The path a pure machine takes through `events` from its initial state, in the shape
 * `xstate/graph` gives paths (first step `xstate.init`). Traversals that key vertices by an
 * abstraction give event sequences whose snapshots may come from other histories; replaying
 * them gives the snapshots of this very history.
 */
export function replay<TMachine extends AnyStateMachine>(
  machine: TMachine,
  events: readonly AnyEventObject[],
  input?: unknown,
): StatePath<SnapshotFrom<TMachine>, AnyEventObject> {
  // The loose signatures: these paths mix in events the machine's own types do not list
  // (e.g. `xstate.done.actor.*` with a chosen output), which the traversal may send.
  const init = initialTransition as unknown as (m: AnyStateMachine, i?: unknown) => [AnyMachineSnapshot];
  const next = transition as unknown as (
    m: AnyStateMachine,
    s: AnyMachineSnapshot,
    e: AnyEventObject,
  ) => [AnyMachineSnapshot];
  let [state] = init(machine, input);
  const steps = [{ state, event: { type: "xstate.init" } as AnyEventObject }];
  for (const event of events) {
    [state] = next(machine, state, event);
    steps.push({ state, event });
  }
  return { state, steps, weight: events.length } as StatePath<SnapshotFrom<TMachine>, AnyEventObject>;
}

/**
 * Effects grouped by machine, each group in call order. Steps that run effects in a parent and
 * its children are compared this way: XState orders a child's start against its parent's entry
 * actions differently on an actor's start than inside a transition, and the design only fixes
 * the order within one machine.
 */
export function byMachine(effects: readonly Effect[]): Record<string, Effect[]> {
  const groups: Record<string, Effect[]> = {};
  for (const e of effects) groups[e.machine] = [...(groups[e.machine] ?? []), e];
  return groups;
}
