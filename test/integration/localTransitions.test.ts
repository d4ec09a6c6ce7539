import { beforeAll, describe, expect, test } from "vitest";
import { loadTableRenderer, renderScreen, type ScreenModel } from "../../src/cli/local/table.js";
import { type RoleChange, shownRole, TransitionLog } from "../../src/cli/local/transitionLog.js";
import { ClusterLayout, loadClusterConfig } from "../../src/config/index.js";
import { PACKAGE_ROOT } from "../support/cli.js";

const layout = new ClusterLayout(loadClusterConfig(`${PACKAGE_ROOT}/config.yaml`));
let changes = 0;
function change(node: string, id: number, from: string, to: string, kind: RoleChange["kind"] = "role") {
  changes += 1;
  return { at: new Date(Date.UTC(2026, 0, 1, 12, 0, changes)), node, id, kind, from, to };
}

function screen(log: TransitionLog): string {
  const model: ScreenModel = {
    layout,
    configPath: "config.yaml",
    leaseTtl: 2,
    etcd: { endpoint: "http://127.0.0.1:2379" },
    nodes: [],
    selected: 0,
    polled: {},
    recent: log.recent,
    leaderChanges: log.leaders,
    interactive: false,
    color: false,
  };
  return renderScreen(model);
}

describe("local's transitions", () => {
  beforeAll(loadTableRenderer);

  test("a backup's promotion in flight is shown as the backup it was, so the promotion reads backup → primary", () => {
    let shown = "backup";
    const logged = [
      { role: "candidate", to: "member.leader" },
      { role: "primary", to: "member.leader" },
    ];
    const seen = logged.map((line) => {
      shown = shownRole(line.role, line.to, shown);
      return shown;
    });
    expect(seen).toEqual(["backup", "primary"]);
    expect(shownRole("candidate", "member.candidate", "follower")).toBe("candidate");
  });

  test("follower/candidate churn stays out of the recent list, and a promotion stays on screen after much churn", () => {
    const log = new TransitionLog(8);
    log.add(change("local-1", 0, "primary", "crashed", "process"));
    log.add(change("local-2", 1, "backup", "primary"));
    for (let i = 0; i < 40; i++) {
      log.add(change("local-3", 2, "follower", "candidate"));
      log.add(change("local-3", 2, "candidate", "follower"));
    }
    expect(log.recent.some((c) => c.from === "candidate" || c.to === "candidate")).toBe(false);
    expect(log.recent.map((c) => c.node)).toEqual(["local-1", "local-2"]);
    for (let i = 0; i < 10; i++) log.add(change(`local-${10 + i}`, 10 + i, "connecting", "bootstrapping"));
    expect(log.recent.some((c) => c.node === "local-2")).toBe(false);
    const text = screen(log);
    expect(text).toMatch(/grouping 0 .* local-2\s+backup → primary/);
    expect(text).toMatch(/grouping 0 .* local-1\s+primary → \[crashed\]/);
  });

  test("leader changes are kept per grouping: a busy grouping does not push another's out", () => {
    const log = new TransitionLog(8);
    const inGrouping1 = layout.idRangeOf(layout.groupsOf(1)[0] as number).first;
    log.add(change("local-9", inGrouping1, "backup", "primary"));
    for (let i = 0; i < 10; i++)
      log.add(change("local-1", 0, i % 2 ? "primary" : "backup", i % 2 ? "backup" : "primary"));
    const text = screen(log);
    expect(text).toMatch(/grouping 1 .* local-9\s+backup → primary/);
    expect(text.match(/grouping 0 /g)).toHaveLength(3);
  });
});
