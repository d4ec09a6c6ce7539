/** The areas `npm run test:mutation` scores, each with the share of killed mutants it aims at. */
export interface Area {
  readonly name: string;
  /** Files of the area start with this path (relative to the repo root, `/` separators). */
  readonly prefix: string;
  /** Goal for the score, in percent. */
  readonly goal: number;
}

export const AREAS: readonly Area[] = [
  { name: "src/etcd", prefix: "src/etcd/", goal: 90 },
  { name: "machines", prefix: "machines/", goal: 90 },
  { name: "src/runtime", prefix: "src/runtime/", goal: 80 },
  { name: "src/config", prefix: "src/config/", goal: 80 },
];

const OTHER: Area = { name: "other", prefix: "", goal: 80 };

export function areaOf(file: string): Area {
  return AREAS.find((area) => file.startsWith(area.prefix)) ?? OTHER;
}
