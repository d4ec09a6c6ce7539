import { writeFileSync } from "node:fs";
import { it } from "vitest";
import { startEtcd } from "../support/etcdCluster.js";
it("leaks", async () => {
  const c = await startEtcd({ name: "orphancheck" });
  writeFileSync("/tmp/orph/pid", String(c.members[0]!.pid));
  setInterval(() => {}, 1000);
  await new Promise(() => {});
}, 2000);
