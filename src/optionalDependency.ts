/**
 * The CLI, the example server and live inspection need packages a library user may not have
 * installed (they are optional peer dependencies). They are imported only when used, through here,
 * so a missing one fails with a message saying what to install instead of a module-resolution trace.
 */
export class MissingOptionalDependencyError extends Error {
  override readonly name = "MissingOptionalDependencyError";
  constructor(
    readonly packageName: string,
    readonly feature: string,
  ) {
    super(`${feature} needs the optional package "${packageName}": npm install ${packageName}`);
  }
}

/** `import(packageName)`, or MissingOptionalDependencyError when the package is not installed. */
export async function importOptional<Module>(packageName: string, feature: string): Promise<Module> {
  try {
    return (await import(packageName)) as Module;
  } catch (err) {
    if (isMissing(err, packageName)) throw new MissingOptionalDependencyError(packageName, feature);
    throw err;
  }
}

function isMissing(err: unknown, packageName: string): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as NodeJS.ErrnoException).code;
  return (
    (code === "ERR_MODULE_NOT_FOUND" || code === "MODULE_NOT_FOUND") && err.message.includes(packageName)
  );
}
