import { describe, expect, test } from "vitest";
import { fileFailures, type VitestTask } from "../../scripts/mutation/strictVitestRunner.mjs";

function file(state: string | undefined, tasks: VitestTask[], message?: string) {
  return {
    type: "suite",
    filepath: `${process.cwd()}/test/machines/x.test.ts`,
    tasks,
    result: { state, errors: message === undefined ? [] : [{ message }] },
  };
}

const passed: VitestTask = { type: "test", result: { state: "pass" } };
const failed: VitestTask = { type: "test", result: { state: "fail" } };

describe("the vitest-strict Stryker runner", () => {
  test("a test file that failed while none of its tests did counts as one failed test", () => {
    const failures = fileFailures([file("fail", [], "Cannot read properties of undefined")]);
    expect(failures).toEqual([
      {
        id: "test/machines/x.test.ts#(test file failed outside its tests)",
        name: "test/machines/x.test.ts (test file failed outside its tests)",
        status: 1,
        failureMessage: "Cannot read properties of undefined",
        timeSpentMs: 0,
        fileName: `${process.cwd()}/test/machines/x.test.ts`,
      },
    ]);
  });

  test("a file whose failure is a failed test, even in a nested suite, adds nothing: the test already says so", () => {
    expect(fileFailures([file("fail", [{ type: "suite", tasks: [passed, failed] }])])).toEqual([]);
  });

  test("a passing file adds nothing", () => {
    expect(fileFailures([file("pass", [passed])])).toEqual([]);
  });
});
