/**
 * A neutral graph model of one statechart, independent of any diagram syntax: the walk in
 * `walk.ts` builds it from a machine's state nodes and the renderers (`toMermaid.ts`, `toDot.ts`)
 * only read it.
 */

export type StateKind = "atomic" | "compound" | "parallel" | "final" | "history";

export interface GraphInvoke {
  /**
   * The actor id the parent uses to address the child (`sendTo("role", …)`); absent when the
   * config gives none and XState generates one.
   */
  id?: string;
  /** The name of the invoked logic as provided in `setup({ actors })`. */
  src: string;
}

export interface GraphState {
  /** The XState state id, e.g. `node.member.follower` (the root's id is the machine id). */
  id: string;
  key: string;
  /** Keys from the root to this state; empty for the root. */
  path: readonly string[];
  kind: StateKind;
  /** Only for history states. */
  history?: "shallow" | "deep";
  /** The id of the initial child state (compound states only). */
  initial?: string;
  entry: readonly string[];
  exit: readonly string[];
  invokes: readonly GraphInvoke[];
  /** In document order. */
  children: readonly GraphState[];
}

/**
 * What fires a transition:
 * - `event`: an event type (`on`);
 * - `always`: an eventless transition;
 * - `after`: a delayed transition (`after`), `delay` holds the delay's name or milliseconds;
 * - `done` / `error` / `snapshot`: an invoked child finished, failed or emitted (`onDone`,
 *   `onError`, `onSnapshot`), `child` holds the invoked logic's name;
 * - `stateDone`: the state itself reached a final child (the state's own `onDone`).
 */
export type TriggerKind = "event" | "always" | "after" | "done" | "error" | "snapshot" | "stateDone";

export interface GraphTransition {
  /** Id of the state the transition is defined on. */
  source: string;
  /** Ids of the target states; empty for a targetless (internal) transition. */
  targets: readonly string[];
  trigger: TriggerKind;
  /** The event type for `event`, the raw XState event type otherwise. */
  event: string;
  delay?: string | number;
  child?: string;
  guard?: string;
  actions: readonly string[];
  reenter: boolean;
}

export interface MachineGraph {
  id: string;
  root: GraphState;
  /** Every transition of every state, states in document order, each state's in definition order. */
  transitions: readonly GraphTransition[];
}
