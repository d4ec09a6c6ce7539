import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { type AnyStateMachine, and, createMachine, not, StateMachine, setup } from "xstate";
import { nodeMachine } from "../../machines/node.js";
import { MACHINES } from "../../scripts/viz/machines.js";
import type { MachineGraph } from "../../scripts/viz/model.js";
import { allOutputs } from "../../scripts/viz/outputs.js";
import { renderSvg } from "../../scripts/viz/svg.js";
import { toDot } from "../../scripts/viz/toDot.js";
import { toMachineJson } from "../../scripts/viz/toMachineJson.js";
import { toMermaid } from "../../scripts/viz/toMermaid.js";
import { walkMachine } from "../../scripts/viz/walk.js";

const MACHINES_DIR = fileURLToPath(new URL("../../machines/", import.meta.url));
const VIZ_DIR = fileURLToPath(new URL("../../visualizations/", import.meta.url));

const outputs = allOutputs();

function onDisk(file: string): string {
  return readFileSync(`${VIZ_DIR}${file}`, "utf8");
}

function generated(file: string): string {
  const text = outputs.get(file);
  if (text === undefined) throw new Error(`the generator produces no ${file}`);
  return text;
}

describe("visualizations/", () => {
  it("lists every machine exported from machines/", async () => {
    const found: string[] = [];
    for (const file of readdirSync(MACHINES_DIR).filter((f) => f.endsWith(".ts"))) {
      const stem = file.slice(0, -".ts".length);
      const module: Record<string, unknown> = await import(
        /* @vite-ignore */ new URL(`../../machines/${file}`, import.meta.url).href
      );
      const machines = Object.values(module).filter((v): v is AnyStateMachine => v instanceof StateMachine);
      if (machines.length > 0) found.push(stem);
      for (const machine of machines) expect(MACHINES[stem]).toBe(machine);
    }
    expect(Object.keys(MACHINES).sort()).toEqual(found.sort());
  });

  it.each(Object.keys(MACHINES))(
    "%s: the .json, .mmd and .dot on disk are what the generator produces",
    (name) => {
      for (const ext of ["json", "mmd", "dot"]) {
        expect(onDisk(`${name}.${ext}`), `visualizations/${name}.${ext} is stale: run npm run viz`).toBe(
          generated(`${name}.${ext}`),
        );
      }
    },
  );

  it("the node machine's member state has a diagram of its own, on disk as generated", () => {
    expect(onDisk("node.member.dot")).toBe(generated("node.member.dot"));
    const dot = generated("node.dot");
    expect(dot).not.toContain("cluster_node.member");
    expect(dot).not.toMatch(/lhead|ltail/);
    expect(dot).toContain('"node.suspended" -> "node.member" [label=" SESSION_VALID "]');
    expect(generated("node.member.dot")).toContain(
      '"node.member.candidate" -> "node.member.leader" [label=" done: candidate [wonCampaign] "]',
    );
  });

  it.each(Object.keys(MACHINES))(
    "%s.json is a machine config with the machine's states and transitions",
    (name) => {
      const machine = MACHINES[name] as AnyStateMachine;
      const json = generated(`${name}.json`);
      expect(json).not.toMatch(/xstate\.(done|after|error)\./);
      const config = JSON.parse(json);
      expect(config.id).toBe(machine.id);
      expect(shape(walkMachine(createMachine(config)))).toEqual(shape(walkMachine(machine)));
    },
  );

  it("node.mmd shows every top-level state of the node machine and the children it invokes", () => {
    const mmd = generated("node.mmd");
    expect(mmd.startsWith("stateDiagram-v2\n")).toBe(true);
    for (const state of Object.keys(nodeMachine.root.states)) {
      expect(mmd).toMatch(new RegExp(`^\\s*state ${state}\\b`, "m"));
    }
    const invoked = walkMachine(nodeMachine)
      .transitions.filter((t) => t.trigger === "done")
      .map((t) => t.child);
    expect(new Set(invoked)).toEqual(new Set(["bootstrapId", "follower", "candidate", "groupLeader"]));
    for (const child of ["bootstrapId", "follower", "candidate", "groupLeader"]) {
      expect(mmd).toContain(`invokes ${child}`);
      expect(mmd).toContain(`done#58; ${child}`);
    }
    expect(mmd).toContain("state member {");
    expect(mmd).toContain("[*] --> connecting");
    expect(mmd).toContain("stopped --> [*]");
    expect(mmd).toContain("renewing --> reconnecting : always");
  });

  it("groupLeader.mmd shows promoting, the PROMOTED transition and the eventless ones", () => {
    const mmd = generated("groupLeader.mmd");
    expect(mmd).toMatch(/^\s*state promoting$/m);
    expect(mmd).toContain("promoting --> takingOffice : PROMOTED / assign");
    expect(mmd).toContain("takingOffice --> primary : always [isPrimary]");
    expect(mmd).toContain("backup --> promoting : LEADERS_CHANGED [primaryVacant]");
  });
});

/** A machine using what the cluster machines do not: delays, parallel regions, history, onError. */
const synthetic = setup({
  actors: { child: setup({}).createMachine({ id: "child", initial: "a", states: { a: { type: "final" } } }) },
  delays: { retryDelay: 500 },
  guards: { ok: () => true, ready: () => true },
  actions: { tick: () => {} },
}).createMachine({
  id: "synthetic",
  initial: "idle",
  states: {
    idle: {
      after: { retryDelay: "busy", 1000: { target: "busy", actions: "tick" } },
      on: { GO: { target: "busy", guard: and(["ok", not("ready")]) } },
    },
    busy: {
      type: "parallel",
      onDone: "idle",
      states: {
        left: {
          initial: "l1",
          states: {
            l1: { on: { NEXT: "l2" } },
            l2: { type: "final" },
            hist: { type: "history", history: "deep" },
          },
        },
        right: {
          initial: "r1",
          states: {
            r1: { invoke: { src: "child", onDone: "r2", onError: "#synthetic.idle" } },
            r2: { type: "final" },
          },
        },
      },
    },
    state: { entry: [() => {}] },
  },
});

describe("the generator on a machine with delays, parallel regions and history", () => {
  const graph = walkMachine(synthetic);

  it("labels delayed, done, error and guarded transitions and keeps XState's delay actions out", () => {
    const mmd = toMermaid(graph);
    expect(mmd).toContain("idle --> busy : after(retryDelay)");
    expect(mmd).toContain("idle --> busy : after(1000ms) / tick");
    expect(mmd).toContain("idle --> busy : GO [and(ok, not(ready))]");
    expect(mmd).toContain("busy --> idle : done");
    expect(mmd).toContain("busy_right_r1 --> busy_right_r2 : done#58; child");
    expect(mmd).toContain("busy_right_r1 --> idle : error#58; child");
    expect(mmd).toContain("note right of busy_right_r1 : invokes child");
    expect(mmd).toMatch(/state "left" as busy_left \{[\s\S]*\n\s*--\n\s*state "right" as busy_right \{/);
    expect(mmd).toContain('state "H*" as busy_left_hist');
    expect(mmd).toContain('state "state" as s_state');
    expect(graph.root.children[0]?.entry).toEqual([]);
  });

  it("writes delays under after, invoke results under invoke, and round-trips through createMachine", () => {
    const config = JSON.parse(toMachineJson(synthetic));
    expect(Object.keys(config.states.idle.after)).toEqual(["1000", "retryDelay"]);
    expect(config.states.idle.entry).toBeUndefined();
    expect(config.states.busy.states.right.states.r1.invoke).toEqual([
      {
        src: "child",
        onDone: { target: "#synthetic.busy.right.r2" },
        onError: { target: "#synthetic.idle" },
      },
    ]);
    expect(config.states.state.entry).toEqual(["<inline>"]);
    expect(shape(walkMachine(createMachine(config)))).toEqual(shape(graph));
  });

  it("draws compound and parallel states as clusters with edges clipped at their borders", () => {
    const dot = toDot(graph);
    expect(dot).toContain('subgraph "cluster_synthetic.busy" {');
    expect(dot).toContain('label="busy (parallel)"');
    expect(dot).toContain(
      '"synthetic.busy#initial" -> "synthetic.idle" [label=" done ", ltail="cluster_synthetic.busy"];',
    );
    expect(dot).toContain('"synthetic.busy.left.hist" [shape=circle, label="H*"];');
  });
});

/** What a diagram shows of a machine: each transition's ends, trigger, guard and action count. */
function shape(graph: MachineGraph) {
  return graph.transitions.map((t) => ({
    source: t.source,
    targets: t.targets,
    trigger: t.trigger,
    event: t.trigger === "after" ? "" : t.event,
    delay: t.delay,
    guard: t.guard,
    actions: t.actions.length,
  }));
}

/**
 * The README shows visualizations/node.svg 880 px wide. Checked on the file on disk and on what the
 * generator renders now (when Graphviz is installed).
 */
describe("node.svg at the README's width of 880 px", () => {
  const README_WIDTH_PX = 880;
  const rendered = renderSvg(generated("node.dot"));
  const svgs: [string, string][] = [["visualizations/node.svg", onDisk("node.svg")]];
  if (rendered.ok) svgs.push(["rendered from node.dot", rendered.svg]);

  it.each(svgs)("%s: no text smaller than 11 px", (_, svg) => {
    const width = Number(/viewBox="[\d.]+ [\d.]+ ([\d.]+) [\d.]+"/.exec(svg)?.[1]);
    const sizes = [...svg.matchAll(/font-size="([\d.]+)"/g)].map((m) => Number(m[1]));
    expect(sizes.length).toBeGreaterThan(10);
    expect((Math.min(...sizes) * README_WIDTH_PX) / width).toBeGreaterThanOrEqual(11);
  });

  it.each(svgs)("%s: every label sits on its own edge", (_, svg) => {
    for (const edge of svgEdges(svg)) {
      expect(edge.curve.length, edge.title).toBeGreaterThan(1);
      if (edge.label)
        expect(distanceToBox(edge.curve, edge.label), `${edge.title}: ${edge.label.text}`).toBeLessThan(12);
    }
  });

  it.each(svgs)("%s: no edge drawn over another", (_, svg) => {
    const edges = svgEdges(svg);
    for (const [i, a] of edges.entries()) {
      for (const b of edges.slice(i + 1)) {
        const shared = a.curve.filter((p) => b.curve.some((q) => Math.hypot(p.x - q.x, p.y - q.y) < 4));
        expect(shared.length / a.curve.length, `${a.title} over ${b.title}`).toBeLessThan(0.3);
      }
    }
  });
});

interface Point {
  x: number;
  y: number;
}

interface SvgEdge {
  title: string;
  /** Points along the edge's Bézier curve. */
  curve: Point[];
  label?: { text: string; box: { left: number; right: number; top: number; bottom: number } };
}

/** Graphviz's edges: each `<g class="edge">` with its path (M, then cubic Bézier segments) and label. */
function svgEdges(svg: string): SvgEdge[] {
  return [...svg.matchAll(/<g id="edge\d+" class="edge">([\s\S]*?)<\/g>/g)].map(([, body = ""]) => {
    const numbers = (/ d="([^"]+)"/.exec(body)?.[1] ?? "").match(/-?[\d.]+/g)?.map(Number) ?? [];
    const points: Point[] = [];
    for (let i = 0; i + 1 < numbers.length; i += 2)
      points.push({ x: numbers[i] ?? 0, y: numbers[i + 1] ?? 0 });
    const text =
      /<text text-anchor="middle" x="([-\d.]+)" y="([-\d.]+)"[^>]*font-size="([\d.]+)">([^<]*)</.exec(body);
    const edge: SvgEdge = { title: /<title>([^<]*)</.exec(body)?.[1] ?? "?", curve: bezierPoints(points) };
    if (text) {
      const [x, y, size] = [Number(text[1]), Number(text[2]), Number(text[3])];
      const label = text[4] ?? "";
      const halfWidth = (label.length * size * 0.62) / 2;
      edge.label = {
        text: label,
        box: { left: x - halfWidth, right: x + halfWidth, top: y - size, bottom: y },
      };
    }
    return edge;
  });
}

function bezierPoints([start, ...controls]: Point[]): Point[] {
  if (!start) return [];
  const curve = [start];
  let from = start;
  for (let i = 0; i + 2 < controls.length; i += 3) {
    const [c1, c2, to] = [controls[i], controls[i + 1], controls[i + 2]] as [Point, Point, Point];
    for (let step = 1; step <= 20; step++) {
      const t = step / 20;
      const u = 1 - t;
      const at = (a: number, b: number, c: number, d: number) =>
        u ** 3 * a + 3 * u * u * t * b + 3 * u * t * t * c + t ** 3 * d;
      curve.push({ x: at(from.x, c1.x, c2.x, to.x), y: at(from.y, c1.y, c2.y, to.y) });
    }
    from = to;
  }
  return curve;
}

function distanceToBox(curve: readonly Point[], label: NonNullable<SvgEdge["label"]>): number {
  const { left, right, top, bottom } = label.box;
  return Math.min(
    ...curve.map((p) =>
      Math.hypot(Math.max(left - p.x, 0, p.x - right), Math.max(top - p.y, 0, p.y - bottom)),
    ),
  );
}
