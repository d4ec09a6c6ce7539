/**
 * The oracle of the machine model tests: a machine's expected behaviour written as a table of
 * rows (plain data and small pure functions, no xstate), and a small interpreter that runs such
 * tables, children included. Nothing here reads a machine: the tables in `specs/` are written
 * from the design, and the runner compares the real machines with what this interpreter predicts.
 */
import type { Effect } from "./support.js";

export interface SpecEvent {
  readonly type: string;
}

/** The event type of a row that is taken without an event, as soon as its guard holds. */
export const ALWAYS = "always";

/** The event a parent gets when the child it started under `id` reaches a final state. */
export const doneEvent = (id: string) => `xstate.done.actor.${id}`;

/** A named condition of a row on the context and the event. */
export interface Guard<C, E> {
  readonly name: string;
  holds(context: C, event: E): boolean;
}

/**
 * One row: in state `from` (a dotted path; a row of a parent state applies in all its children,
 * after theirs), on event `on`, when `when` holds (rows are tried in order), the machine goes to
 * `to` (omitted: it stays and nothing is exited or entered), its context becomes `update`'s, it
 * runs `effects` (exactly these, in this order), sends `toParent` to its parent, and passes the
 * event on to its child `forward`.
 */
export interface Row<C, E> {
  readonly from: string;
  readonly on: string;
  readonly when?: Guard<C, E>;
  readonly to?: string;
  update?(context: C, event: E): C;
  effects?(context: C, event: E, next: C): readonly Effect[];
  toParent?(next: C, event: E): SpecEvent;
  readonly forward?: string;
}

/** A child machine started when its state is entered and stopped (without exit effects) on exit. */
export interface Invoke<C> {
  readonly id: string;
  readonly table: AnyTable;
  input?(context: C): unknown;
}

export interface Table<C, E> {
  /** The machine's id: its effects are recorded under it, its state ids start with it. */
  readonly machine: string;
  /** The named effects the machine declares (the runtime provides them), sorted. */
  readonly effects: readonly string[];
  /** Every state, as a dotted path (compound states and transient ones included). */
  readonly states: readonly string[];
  readonly initial: string;
  /** The initial child of each compound state, for rows that target the compound state. */
  readonly compound?: Readonly<Record<string, string>>;
  context(input: unknown): C;
  /** What starting the machine does, before it settles in `initial`. */
  readonly start?: {
    effects?(context: C): readonly Effect[];
    toParent?(context: C): SpecEvent;
  };
  readonly rows: readonly Row<C, E>[];
  /** Top-level final states; reaching one ends the machine with `output`. */
  readonly finals?: readonly string[];
  output?(context: C, final: string): unknown;
  readonly invokes?: Readonly<Record<string, Invoke<C>>>;
  /** Context fields the runtime reads, compared with the real machine's after every step. */
  readonly observed?: readonly string[];
}

// Rows and tables are used by the interpreter without their types: their functions are methods,
// so a `Table<C, E>` is a `Table<unknown, SpecEvent>`.
export type AnyTable = Table<unknown, SpecEvent>;
export type AnyRow = Row<unknown, SpecEvent>;

/**
 * Typed row builder: `row({ on: "SLOT_CLAIMED", update: (c, e) => ... })` narrows `e` to the
 * event of that type.
 */
export function rowsOf<C, E extends SpecEvent>() {
  return <T extends E["type"] | typeof ALWAYS | `xstate.done.actor.${string}`>(
    r: Row<C, T extends E["type"] ? Extract<E, { type: T }> : E> & { on: T },
  ): Row<C, E> => r as unknown as Row<C, E>;
}

/** A running machine as the oracle sees it. */
export interface Instance {
  readonly table: AnyTable;
  /** The dotted path of the active leaf state. */
  path: string;
  context: unknown;
  status: "active" | "done";
  output?: unknown;
  /** Running children by invoke id (a finished child stays until its state is left). */
  children: Record<string, Instance>;
}

/** A row that fired, and in which table. */
export interface Taken {
  readonly table: AnyTable;
  readonly row: AnyRow;
}

/** What one step does: effects of this machine and its children, events for the parent, rows fired. */
export interface Outcome {
  effects: Effect[];
  toParent: SpecEvent[];
  taken: Taken[];
}

const newOutcome = (): Outcome => ({ effects: [], toParent: [], taken: [] });

/** The path and every ancestor of it, outermost first: `a.b.c` → `a`, `a.b`, `a.b.c`. */
function chain(path: string): string[] {
  const parts = path.split(".");
  return parts.map((_, i) => parts.slice(0, i + 1).join("."));
}

/** The leaf a target path stands for: compound states enter their initial child. */
function leafOf(table: AnyTable, target: string): string {
  let leaf = target;
  for (let guard = 0; table.compound?.[leaf] !== undefined; guard++) {
    if (guard > 10) throw new Error(`${table.machine}: compound states loop at ${leaf}`);
    leaf = table.compound[leaf] as string;
  }
  return leaf;
}

/** The first row that applies: the deepest state's rows first, each state's rows in order. */
function select(inst: Instance, type: string, event: SpecEvent): AnyRow | undefined {
  for (const state of chain(inst.path).reverse()) {
    for (const row of inst.table.rows) {
      if (row.from !== state || row.on !== type) continue;
      if (!row.when || row.when.holds(inst.context, event)) return row;
    }
  }
  return undefined;
}

function startChild(invoke: Invoke<unknown>, parentContext: unknown, out: Outcome, queue: SpecEvent[]) {
  const sub = newOutcome();
  const child = startInstance(invoke.table, invoke.input?.(parentContext), sub);
  out.effects.push(...sub.effects);
  out.taken.push(...sub.taken);
  queue.push(...sub.toParent);
  if (child.status === "done") queue.push({ type: doneEvent(invoke.id), output: child.output } as SpecEvent);
  return child;
}

function fire(inst: Instance, row: AnyRow, event: SpecEvent, out: Outcome, queue: SpecEvent[]): void {
  const { table } = inst;
  out.taken.push({ table, row });
  const before = inst.context;
  const next = row.update ? row.update(before, event) : before;
  out.effects.push(...(row.effects?.(before, event, next) ?? []));
  if (row.toParent) out.toParent.push(row.toParent(next, event));
  inst.context = next;

  if (row.to !== undefined) {
    const target = leafOf(table, row.to);
    const from = chain(inst.path);
    const to = chain(target);
    const common = from.filter((s, i) => to[i] === s).length;
    for (const state of from.slice(common)) {
      const invoke = table.invokes?.[state];
      if (invoke) delete inst.children[invoke.id];
    }
    inst.path = target;
    for (const state of to.slice(common)) {
      const invoke = table.invokes?.[state];
      if (invoke) inst.children[invoke.id] = startChild(invoke, next, out, queue);
    }
  }

  if (row.forward) {
    const child = inst.children[row.forward];
    if (child?.status === "active") {
      const sub = newOutcome();
      const finished = dispatch(child, event, sub);
      out.effects.push(...sub.effects);
      out.taken.push(...sub.taken);
      queue.push(...sub.toParent);
      if (finished) queue.push({ type: doneEvent(row.forward), output: child.output } as SpecEvent);
    }
  }
}

/** Eventless rows, until none applies. */
function settle(inst: Instance, event: SpecEvent, out: Outcome, queue: SpecEvent[]): void {
  for (let guard = 0; ; guard++) {
    if (guard > 20) throw new Error(`${inst.table.machine}: eventless rows loop at ${inst.path}`);
    const row = select(inst, ALWAYS, event);
    if (!row) return;
    fire(inst, row, event, out, queue);
  }
}

function checkFinal(inst: Instance): void {
  const top = inst.path.split(".")[0] ?? "";
  if (inst.table.finals?.includes(top)) {
    inst.status = "done";
    inst.output = inst.table.output?.(inst.context, top);
  }
}

/**
 * One event and everything it sets off (children's results, events children send up); true when
 * it ended the machine.
 */
function dispatch(inst: Instance, event: SpecEvent, out: Outcome): boolean {
  const queue: SpecEvent[] = [event];
  for (let e = queue.shift(); e !== undefined; e = queue.shift()) {
    const row = select(inst, e.type, e);
    if (!row) continue;
    fire(inst, row, e, out, queue);
    settle(inst, e, out, queue);
    checkFinal(inst);
    if (inst.status === "done") return true;
  }
  return false;
}

function startInstance(table: AnyTable, input: unknown, out: Outcome): Instance {
  const context = table.context(input);
  const inst: Instance = { table, path: "", context, status: "active", children: {} };
  const queue: SpecEvent[] = [];
  out.effects.push(...(table.start?.effects?.(context) ?? []));
  const message = table.start?.toParent?.(context);
  if (message) out.toParent.push(message);
  inst.path = leafOf(table, table.initial);
  for (const state of chain(inst.path)) {
    const invoke = table.invokes?.[state];
    if (invoke) inst.children[invoke.id] = startChild(invoke, context, out, queue);
  }
  const init = { type: "xstate.init" };
  settle(inst, init, out, queue);
  checkFinal(inst);
  for (const e of queue) dispatch(inst, e, out);
  return inst;
}

function clone(inst: Instance): Instance {
  return {
    ...inst,
    context: structuredClone(inst.context),
    output: structuredClone(inst.output),
    children: Object.fromEntries(Object.entries(inst.children).map(([id, c]) => [id, clone(c)])),
  };
}

/** The machine just started with `input`, and what starting did. */
export function start(table: AnyTable, input?: unknown): { next: Instance; outcome: Outcome } {
  const outcome = newOutcome();
  return { next: startInstance(table, input, outcome), outcome };
}

/** The machine after `event` (the given instance is left as it was), and what the step did. */
export function step(inst: Instance, event: SpecEvent): { next: Instance; outcome: Outcome } {
  const next = clone(inst);
  const outcome = newOutcome();
  dispatch(next, event, outcome);
  return { next, outcome };
}

/** Every table an instance may run: itself and, recursively, the tables it invokes. */
export function tablesOf(table: AnyTable): AnyTable[] {
  const found: AnyTable[] = [table];
  for (const t of found)
    for (const invoke of Object.values(t.invokes ?? {}))
      if (!found.includes(invoke.table)) found.push(invoke.table);
  return found;
}

/** A row's name as a real transition would be named: `source --event--> target`. */
export function edgeOf(table: AnyTable, row: AnyRow): string {
  const event = row.on === ALWAYS ? "" : row.on;
  const target = row.to === undefined ? "" : `${table.machine}.${row.to}`;
  return `${table.machine}.${row.from} --${event}--> ${target}`;
}

/** A row's name for people: its edge and guard. */
export function rowName(table: AnyTable, row: AnyRow): string {
  return row.when ? `${edgeOf(table, row)} [${row.when.name}]` : edgeOf(table, row);
}

/** A dotted state path as an XState state value: `member.leader` → `{ member: "leader" }`. */
export function stateValueOf(path: string): unknown {
  const [head, ...rest] = path.split(".");
  return rest.length === 0 ? head : { [head as string]: stateValueOf(rest.join(".")) };
}

/** Mistakes in a table itself: rows or invokes naming states it does not list. */
export function tableErrors(table: AnyTable): string[] {
  const known = new Set(table.states);
  const errors: string[] = [];
  const check = (state: string | undefined, where: string) => {
    if (state !== undefined && !known.has(state)) errors.push(`${table.machine}: ${where} names ${state}`);
  };
  check(table.initial, "initial");
  for (const [parent, child] of Object.entries(table.compound ?? {})) {
    check(parent, "compound");
    check(child, `compound ${parent}`);
  }
  for (const state of Object.keys(table.invokes ?? {})) check(state, "invokes");
  for (const state of table.finals ?? []) check(state, "finals");
  for (const row of table.rows) {
    check(row.from, `a row on ${row.on}`);
    check(row.to, `a row on ${row.on}`);
  }
  return errors;
}
