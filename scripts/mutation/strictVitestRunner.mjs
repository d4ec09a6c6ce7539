// Stryker test runner "vitest-strict": Stryker's vitest runner, except that a test file that fails
// outside its tests (an error while it is imported or collected, or in a file-level hook) counts as
// a failed test. Stryker's runner (9.6.1) reads only test results, so a mutant that makes a test file
// throw at import, such as one emptying a machine's config, passed as "Survived" with no test run.
import { relative } from "node:path";
import { strykerPlugins as vitestPlugins } from "@stryker-mutator/vitest-runner";

const vitestPlugin = vitestPlugins.find((plugin) => plugin.name === "vitest");
if (vitestPlugin === undefined)
  throw new Error("@stryker-mutator/vitest-runner has no 'vitest' test runner plugin");

// @stryker-mutator/api's DryRunStatus.Complete and TestStatus.Failed.
const COMPLETE = "complete";
const FAILED = 1;

function tasksOf(suite) {
  return suite.tasks.flatMap((task) => (task.type === "suite" ? [task, ...tasksOf(task)] : [task]));
}

function hasFailedTest(file) {
  return tasksOf(file).some((task) => task.type === "test" && task.result?.state === "fail");
}

/** A failed test result for each test file that failed while none of its tests did. */
export function fileFailures(files) {
  return files
    .filter((file) => file.result?.state === "fail" && !hasFailedTest(file))
    .map((file) => {
      const name = relative(process.cwd(), file.filepath).replaceAll("\\", "/");
      const message = file.result?.errors?.[0]?.message ?? "the test file failed outside its tests";
      return {
        id: `${name}#(test file failed outside its tests)`,
        name: `${name} (test file failed outside its tests)`,
        status: FAILED,
        failureMessage: message,
        timeSpentMs: file.result?.duration ?? 0,
        fileName: file.filepath,
      };
    });
}

function createStrictVitestRunner(injector) {
  const runner = vitestPlugin.factory(injector);
  const run = runner.run.bind(runner);
  runner.run = async (options) => {
    const result = await run(options);
    if (result.status !== COMPLETE) return result;
    const failures = fileFailures(runner.ctx.state.getFiles());
    return failures.length === 0 ? result : { ...result, tests: [...result.tests, ...failures] };
  };
  return runner;
}
createStrictVitestRunner.inject = vitestPlugin.factory.inject;

export const strykerPlugins = [
  { kind: vitestPlugin.kind, name: "vitest-strict", factory: createStrictVitestRunner },
];
