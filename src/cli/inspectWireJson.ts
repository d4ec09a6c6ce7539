/** Nesting deeper than this is cut, as @statelyai/inspect's own serializer does (its default, 10). */
export const WIRE_DEPTH_LIMIT = 10;

/**
 * JSON text of an inspection message that never throws: `toJSON` is honoured (XState's actors and
 * snapshots define it), functions become `{ type: name }` as the Stately inspector expects, bigints
 * strings, a repeated object `"[Circular]"`, and anything nested deeper than the limit `"[...]"`.
 */
export function wireJson(value: unknown, depthLimit = WIRE_DEPTH_LIMIT): string {
  const depthOf = new WeakMap<object, number>();
  return JSON.stringify(value, function (this: unknown, _key, v: unknown) {
    if (typeof v === "function") return { type: v.name };
    if (typeof v === "bigint") return v.toString();
    if (v === null || typeof v !== "object") return v;
    if (depthOf.has(v)) return "[Circular]";
    const depth = (this && typeof this === "object" ? (depthOf.get(this) ?? 0) : 0) + 1;
    if (depth > depthLimit) return "[...]";
    depthOf.set(v, depth);
    return v;
  });
}
