/** The parts of a vitest file task that fileFailures reads. */
export interface VitestTask {
  readonly type: string;
  readonly filepath?: string;
  readonly tasks?: readonly VitestTask[];
  readonly result?: {
    readonly state?: string;
    readonly duration?: number;
    readonly errors?: readonly { message?: string }[];
  };
}

export interface FailedTestResult {
  readonly id: string;
  readonly name: string;
  readonly status: 1;
  readonly failureMessage: string;
  readonly timeSpentMs: number;
  readonly fileName: string;
}

export function fileFailures(
  files: readonly (VitestTask & { filepath: string; tasks: readonly VitestTask[] })[],
): FailedTestResult[];

export const strykerPlugins: readonly { kind: string; name: string; factory: unknown }[];
