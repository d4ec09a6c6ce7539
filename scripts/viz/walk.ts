import type { AnyStateMachine, AnyStateNode, AnyTransitionDefinition } from "xstate";
import type { GraphState, GraphTransition, MachineGraph, StateKind, TriggerKind } from "./model.js";
import { actionName, guardName, isDelayBookkeeping } from "./names.js";

const DONE_ACTOR = "xstate.done.actor.";
const ERROR_ACTOR = "xstate.error.actor.";
const SNAPSHOT_ACTOR = "xstate.snapshot.";
const DONE_STATE = "xstate.done.state.";

/**
 * Turns a machine into the neutral graph model by walking its state nodes (`machine.root`).
 *
 * A state node's `transitions` map holds, per event descriptor, its `on` transitions, then its own
 * `onDone` (`xstate.done.state.<id>`), then each invoke's `onDone` / `onError` / `onSnapshot`
 * (`xstate.done.actor.<invokeId>`, …), then its `after` transitions (`xstate.after.<delay>.<id>`,
 * recognisable by their `delay`). Eventless `always` transitions live apart, in `always`.
 */
export function walkMachine(machine: AnyStateMachine): MachineGraph {
  const transitions: GraphTransition[] = [];
  const root = walkState(machine.root, transitions);
  return { id: machine.id, root, transitions };
}

function walkState(node: AnyStateNode, transitions: GraphTransition[]): GraphState {
  const state: GraphState = {
    id: node.id,
    key: node.key,
    path: node.path,
    kind: node.type as StateKind,
    ...(node.type === "history" ? { history: node.history === "deep" ? "deep" : "shallow" } : {}),
    ...(node.type === "compound" && node.initial.target[0] ? { initial: node.initial.target[0].id } : {}),
    entry: node.entry.filter((a) => !isDelayBookkeeping(a)).map(actionName),
    exit: node.exit.filter((a) => !isDelayBookkeeping(a)).map(actionName),
    invokes: node.invoke.map((inv, i) => ({
      ...(hasExplicitInvokeId(node, i) ? { id: inv.id } : {}),
      src: typeof inv.src === "string" ? inv.src : inv.id,
    })),
    children: [],
  };
  transitions.push(...ownTransitions(node, state));
  return {
    ...state,
    children: Object.values(node.states as Record<string, AnyStateNode>).map((child) =>
      walkState(child, transitions),
    ),
  };
}

function ownTransitions(node: AnyStateNode, state: GraphState): GraphTransition[] {
  const srcOfInvoke = (invokeId: string): string => {
    const index = node.invoke.findIndex((inv) => inv.id === invokeId);
    return state.invokes[index]?.src ?? invokeId;
  };
  const result: GraphTransition[] = [];
  for (const [descriptor, list] of node.transitions as Map<string, AnyTransitionDefinition[]>) {
    for (const t of list) {
      if ("delay" in t) {
        const delay = (t as { delay: unknown }).delay;
        result.push(
          toGraph(t, "after", descriptor, { delay: typeof delay === "number" ? delay : String(delay) }),
        );
      } else if (descriptor.startsWith(DONE_ACTOR)) {
        result.push(
          toGraph(t, "done", descriptor, { child: srcOfInvoke(descriptor.slice(DONE_ACTOR.length)) }),
        );
      } else if (descriptor.startsWith(ERROR_ACTOR)) {
        result.push(
          toGraph(t, "error", descriptor, { child: srcOfInvoke(descriptor.slice(ERROR_ACTOR.length)) }),
        );
      } else if (descriptor.startsWith(SNAPSHOT_ACTOR)) {
        result.push(
          toGraph(t, "snapshot", descriptor, { child: srcOfInvoke(descriptor.slice(SNAPSHOT_ACTOR.length)) }),
        );
      } else if (descriptor === `${DONE_STATE}${node.id}`) {
        result.push(toGraph(t, "stateDone", descriptor, {}));
      } else {
        result.push(toGraph(t, "event", descriptor, {}));
      }
    }
  }
  for (const t of (node.always ?? []) as AnyTransitionDefinition[]) {
    result.push(toGraph(t, "always", "", {}));
  }
  return result;
}

function toGraph(
  t: AnyTransitionDefinition,
  trigger: TriggerKind,
  event: string,
  extra: { delay?: string | number; child?: string },
): GraphTransition {
  return {
    source: t.source.id,
    targets: (t.target ?? []).map((target: AnyStateNode) => target.id),
    trigger,
    event,
    ...extra,
    ...(t.guard === undefined ? {} : { guard: guardName(t.guard) }),
    actions: t.actions.map(actionName),
    reenter: t.reenter,
  };
}

/** Whether the `index`-th invoke of the state's config names its actor id (else XState made one up). */
export function hasExplicitInvokeId(node: AnyStateNode, index: number): boolean {
  const invoke: unknown = node.config.invoke;
  const configs: unknown[] = Array.isArray(invoke) ? invoke : invoke === undefined ? [] : [invoke];
  const config = configs[index];
  return typeof config === "object" && config !== null && "id" in config && config.id !== undefined;
}

/** Every state of the graph, the root first, in document order. */
export function allStates(state: GraphState): GraphState[] {
  return [state, ...state.children.flatMap(allStates)];
}
