/**
 * The one model-test runner: it explores a spec's own graph (the oracle in `table.ts` run on the
 * spec's events), and for every state the oracle can reach and every event tried there, drives the
 * real machine along that path and compares, after each step, its state, status, output, observed
 * context, children and recorded effects with the oracle's. Coverage is asserted against the
 * spec's tables: every row taken by the oracle and by the real machines (their transitions seen
 * through XState inspection), every listed state entered, and nothing taken that the tables do
 * not list.
 */
import { describe, expect, it } from "vitest";
import {
  type AnyActorRef,
  type AnyMachineSnapshot,
  type AnyStateMachine,
  createActor,
  type InspectionEvent,
  type Snapshot,
} from "xstate";
import { byMachine, describePath, type Effect, EffectLog, effect, effectNames } from "./support.js";
import {
  type AnyRow,
  type AnyTable,
  edgeOf,
  type Instance,
  type Outcome,
  rowName,
  type SpecEvent,
  start,
  stateValueOf,
  step,
  tableErrors,
  tablesOf,
} from "./table.js";

/** The real machine under test, however it is hosted. */
export interface Subject {
  send(event: SpecEvent): void;
  snapshot(): AnyMachineSnapshot;
  /** The whole actor system's state, to start another subject from (`HostOptions.snapshot`). */
  persist(): unknown;
  stop(): void;
}

export type Inspect = (event: InspectionEvent) => void;

export interface ModelSpec {
  readonly title: string;
  /** The root table; the tables it invokes are checked too. */
  readonly table: AnyTable;
  /** The real machines, one per table, to check that each declares the effects its table lists. */
  readonly machines: readonly AnyStateMachine[];
  /** One exploration per input (default: one, without input). */
  readonly inputs?: readonly unknown[];
  /** The events to try in a state the oracle reached (variants for every guard that matters). */
  events(state: Instance): readonly SpecEvent[];
  /** What of a state tells it apart for exploration (default: all of it). */
  key?(state: Instance): unknown;
  /**
   * `transitions` (default): a state is explored once per state it is reached from, so that a
   * machine keeping something the oracle forgets (e.g. which batch failed) shows it on the next
   * event. `states`: once per state, for a composition whose parts are explored on their own.
   */
  readonly explore?: "states" | "transitions";
  /** The real machine with every named effect recorded in `log` (built once per suite). */
  machine(log: EffectLog): AnyStateMachine;
  /** How a run starts the machine (default: as an actor of its own). */
  host?(machine: AnyStateMachine, options: HostOptions, log: EffectLog): Subject;
}

/**
 * `snapshot`: a state `Subject.persist` gave, to start from instead of the initial state (the
 * events tried in one state start there rather than replay the path each time).
 */
export interface HostOptions {
  inspect: Inspect;
  input: unknown;
  snapshot: Snapshot<unknown> | undefined;
}

/** The real machine as an actor of its own. */
export function actorSubject(machine: AnyStateMachine, options: HostOptions): Subject {
  const actor = createActor(machine, options).start();
  return {
    send: (event) => actor.send(event),
    snapshot: () => actor.getSnapshot(),
    persist: () => actor.getPersistedSnapshot(),
    stop: () => actor.stop(),
  };
}

/** Starts runs of one spec's real machine, every effect recorded in `log`. */
class Runs {
  readonly log = new EffectLog();
  private readonly machine: AnyStateMachine;

  constructor(
    private readonly spec: ModelSpec,
    private readonly inspect: Inspect,
  ) {
    this.machine = spec.machine(this.log);
  }

  /** A run from the start (its start's effects in the log), or from a persisted state. */
  start(input: unknown, restore?: unknown): Subject {
    this.log.take();
    const options = { inspect: this.inspect, input, snapshot: restore as Snapshot<unknown> | undefined };
    const subject = this.spec.host
      ? this.spec.host(this.machine, options, this.log)
      : actorSubject(this.machine, options);
    if (restore !== undefined) this.log.take();
    return subject;
  }
}

/** A state the oracle reached, the events that lead there, and the events to try in it. */
interface Vertex {
  readonly input: unknown;
  readonly path: readonly SpecEvent[];
  readonly state: Instance;
  readonly events: readonly SpecEvent[];
}

const MAX_VERTICES = 2_000;

function fullKey(inst: Instance): unknown {
  return {
    path: inst.path,
    status: inst.status,
    context: inst.context,
    children: Object.fromEntries(Object.entries(inst.children).map(([id, c]) => [id, fullKey(c)])),
  };
}

/**
 * Breadth-first over the oracle's graph, each vertex by its shortest path: every distinct state
 * once, or (`transitions`) every distinct pair of a state and the different state it came from.
 */
function explore(spec: ModelSpec): { vertices: Vertex[]; taken: Set<AnyRow> } {
  const vertices: Vertex[] = [];
  const taken = new Set<AnyRow>();
  const keyOf = (s: Instance) => JSON.stringify(spec.key ? spec.key(s) : fullKey(s));
  const byPredecessor = (spec.explore ?? "transitions") === "transitions";
  for (const input of spec.inputs ?? [undefined]) {
    const first = start(spec.table, input);
    for (const t of first.outcome.taken) taken.add(t.row);
    const firstKey = keyOf(first.next);
    const seen = new Set([firstKey]);
    const queue = [{ path: [] as SpecEvent[], state: first.next, key: firstKey }];
    for (let v = queue.shift(); v !== undefined; v = queue.shift()) {
      const events = v.state.status === "active" ? spec.events(v.state) : [];
      vertices.push({ input, path: v.path, state: v.state, events });
      if (vertices.length > MAX_VERTICES) throw new Error(`${spec.title}: over ${MAX_VERTICES} states`);
      for (const e of events) {
        const { next, outcome } = step(v.state, e);
        for (const t of outcome.taken) taken.add(t.row);
        const key = keyOf(next);
        const vertex = byPredecessor ? `${key} <- ${v.key}` : key;
        if (key === v.key || seen.has(vertex)) continue;
        seen.add(vertex);
        queue.push({ path: [...v.path, e], state: next, key });
      }
    }
  }
  return { vertices, taken };
}

function pick(context: unknown, fields: readonly string[]): Record<string, unknown> {
  const c = (context ?? {}) as Record<string, unknown>;
  return Object.fromEntries(fields.filter((f) => c[f] !== undefined).map((f) => [f, c[f]]));
}

interface View {
  value: unknown;
  status: string;
  output?: unknown;
  context?: unknown;
  children: Record<string, View>;
}

function expectedView(inst: Instance): View {
  const { observed } = inst.table;
  return {
    value: stateValueOf(inst.path),
    status: inst.status,
    ...(inst.status === "done" && { output: inst.output }),
    ...(observed && { context: pick(inst.context, observed) }),
    children: Object.fromEntries(Object.entries(inst.children).map(([id, c]) => [id, expectedView(c)])),
  };
}

/** The real snapshot in the shape of `expectedView`; `like` says which context fields count. */
function actualView(snapshot: AnyMachineSnapshot, like: Instance | undefined): View {
  const observed = like?.table.observed;
  const children = Object.entries(snapshot.children as Record<string, AnyActorRef | undefined>).flatMap(
    ([id, ref]) => (ref ? [[id, actualView(ref.getSnapshot(), like?.children[id])] as const] : []),
  );
  return {
    value: snapshot.value,
    status: snapshot.status,
    ...(snapshot.status === "done" && { output: snapshot.output }),
    ...(observed && { context: pick(snapshot.context, observed) }),
    children: Object.fromEntries(children),
  };
}

/** An event the machine sends to its parent, as the parent of a hosted subject records it. */
export const parentEffect = ({ type, ...rest }: SpecEvent): Effect =>
  effect("parent", type, Object.keys(rest).length ? rest : undefined);

function expectStep(subject: Subject, effects: Effect[], state: Instance, outcome: Outcome, where: string) {
  const actual = { state: actualView(subject.snapshot(), state), effects: byMachine(effects) };
  const wanted = {
    state: expectedView(state),
    effects: byMachine([...outcome.effects, ...outcome.toParent.map(parentEffect)]),
  };
  expect(actual, where).toEqual(wanted);
}

/**
 * Checks every event of one vertex on the real machine. The first drives it from its start along
 * the vertex's path, checking every step; the others start from the state it reached there.
 */
function runVertex(spec: ModelSpec, vertex: Vertex, runs: Runs): void {
  const label = vertex.input === undefined ? spec.title : `${spec.title} ${JSON.stringify(vertex.input)}`;
  const where = (events: readonly SpecEvent[]) => `${label}: ${describePath(events)}`;
  const { log } = runs;
  const live = runs.start(vertex.input);
  let reached: unknown;
  try {
    let { next: state, outcome } = start(spec.table, vertex.input);
    expectStep(live, log.take(), state, outcome, where([]));
    for (const [i, e] of vertex.path.entries()) {
      ({ next: state, outcome } = step(state, e));
      live.send(e);
      expectStep(live, log.take(), state, outcome, where(vertex.path.slice(0, i + 1)));
    }
    reached = live.persist();
    const [first] = vertex.events;
    if (first) checkEvent(live, log, vertex, first, where);
  } finally {
    live.stop();
  }
  for (const e of vertex.events.slice(1)) {
    const restored = runs.start(vertex.input, structuredClone(reached));
    try {
      checkEvent(restored, log, vertex, e, where);
    } finally {
      restored.stop();
    }
  }
}

function checkEvent(
  subject: Subject,
  log: EffectLog,
  vertex: Vertex,
  event: SpecEvent,
  where: (events: readonly SpecEvent[]) => string,
): void {
  const { next, outcome } = step(vertex.state, event);
  subject.send(event);
  expectStep(subject, log.take(), next, outcome, where([...vertex.path, event]));
}

/** The states entered and transitions taken by real actors, from XState inspection events. */
class RealCoverage {
  readonly states = new Set<string>();
  readonly edges = new Set<string>();

  readonly inspect: Inspect = (event) => {
    if (event.type === "@xstate.snapshot" || event.type === "@xstate.microstep") {
      const snapshot = event.snapshot as Partial<AnyMachineSnapshot>;
      for (const node of snapshot._nodes ?? []) this.states.add(node.id);
    }
    if (event.type === "@xstate.microstep") {
      for (const t of event._transitions) {
        const targets = (t.target ?? []).map((n) => n.id);
        for (const id of targets) this.states.add(id);
        this.edges.add(`${t.source.id} --${t.eventType}--> ${targets.join(",")}`);
      }
    }
  };
}

const ofMachines = (ids: Iterable<string>, tables: readonly AnyTable[]) =>
  [...ids].filter((id) => tables.some((t) => id.startsWith(`${t.machine}.`) || id === t.machine)).sort();

const missingFrom = (have: Iterable<string>, want: Iterable<string>) => {
  const set = new Set(have);
  return [...new Set(want)].filter((x) => !set.has(x)).sort();
};

/** Registers the model tests of one spec. */
export function describeModel(spec: ModelSpec): void {
  describe(`${spec.title} model`, () => {
    const tables = tablesOf(spec.table);
    const { vertices, taken } = explore(spec);
    const coverage = new RealCoverage();
    const runs = new Runs(spec, coverage.inspect);

    it("its tables name only the states they list, and each machine declares the effects its table lists", () => {
      expect(tables.flatMap(tableErrors)).toEqual([]);
      const declared = Object.fromEntries(spec.machines.map((m) => [m.id, effectNames(m)]));
      const listed = Object.fromEntries(tables.map((t) => [t.machine, [...t.effects].sort()]));
      expect(declared).toEqual(listed);
    });

    for (const vertex of vertices) {
      const name = `${JSON.stringify(stateValueOf(vertex.state.path))} after ${describePath(vertex.path)}`;
      const label = vertex.input === undefined ? name : `${JSON.stringify(vertex.input)} ${name}`;
      it(`${label}: ${vertex.events.length} events`, () => runVertex(spec, vertex, runs));
    }

    it("takes every row of its tables and enters every state they list, on the oracle and the real machines", () => {
      const rows = tables.flatMap((table) => table.rows.map((row) => ({ table, row })));
      expect(rows.filter((r) => !taken.has(r.row)).map((r) => rowName(r.table, r.row))).toEqual([]);

      const edges = rows.map((r) => edgeOf(r.table, r.row));
      const seenEdges = ofMachines(coverage.edges, tables);
      expect({
        "rows the real machines never took": missingFrom(seenEdges, edges),
        "transitions the tables do not list": missingFrom(edges, seenEdges),
      }).toEqual({ "rows the real machines never took": [], "transitions the tables do not list": [] });

      const states = tables.flatMap((t) => [t.machine, ...t.states.map((s) => `${t.machine}.${s}`)]);
      const seenStates = ofMachines(coverage.states, tables);
      expect({
        "states never entered": missingFrom(seenStates, states),
        "states the tables do not list": missingFrom(states, seenStates),
      }).toEqual({ "states never entered": [], "states the tables do not list": [] });
      console.info(
        `${spec.title}: ${vertices.length} states explored, ${vertices.reduce((n, v) => n + v.events.length, 0)} paths, ${rows.length} rows in ${tables.length} tables`,
      );
    });
  });
}

/** `machine` with each effect its table lists recorded in `log` under the table's machine id. */
export function recording<T extends AnyStateMachine>(machine: T, table: AnyTable, log: EffectLog): T {
  return machine.provide({ actions: log.actions(table.machine, table.effects) }) as T;
}
