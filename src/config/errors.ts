/** A configuration or settings problem, naming where it was found (file, flag or env var) and the field. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(
    readonly source: string,
    readonly problems: readonly string[],
  ) {
    super(problems.length === 1 ? `${source}: ${problems[0]}` : `${source}:\n  ${problems.join("\n  ")}`);
  }
}
