import type { ObservedEvent } from "./historyChecker.js";

/** A write the user's server answered as committed. */
export interface AcknowledgedWrite {
  /** The etcd key the write went to. */
  key: string;
  /** The value the client sent, as `clientValueOf` reads it back from the stored value. */
  value: string;
  /** The server that acknowledged it (for the report). */
  node?: string;
  /** The revision the server reported, when it reports one. */
  revision?: number;
}

/** The primary term a stored write claims it was made under. */
export interface WriteFence {
  /** The primary key (the seat) the write was fenced on. */
  primaryKey: string;
  /** Its create revision the writer held. */
  token: number;
  /** The writer's name, compared with `holderOf` of the primary key (a handoff keeps the token). */
  writer?: string;
}

/** A server saying "I am primary of this seat" at a revision (e.g. read with its status). */
export interface PrimaryClaim {
  node: string;
  primaryKey: string;
  revision: number;
}

export interface FencedWriteCheckInput {
  /** etcd's history of the primary keys and the written keys, e.g. from `readEtcdHistory`. */
  history: readonly ObservedEvent[];
  acknowledged: readonly AcknowledgedWrite[];
  /** Whether `key` is a primary key (a seat) the writes are fenced on. */
  isPrimaryKey(key: string): boolean;
  /** The fence a stored write carries; undefined for keys that are not fenced writes. */
  fenceOf(event: ObservedEvent): WriteFence | undefined;
  /** The client's value inside a stored value; the stored value itself by default. */
  clientValueOf?(event: ObservedEvent): string;
  /** The holder's name in a primary key's value; needed to tell terms apart across a handoff. */
  holderOf?(primaryValue: string): string | undefined;
  primaryClaims?: readonly PrimaryClaim[];
}

export interface LostWrite {
  write: AcknowledgedWrite;
  reason: string;
}

export interface DeposedWrite {
  key: string;
  revision: number;
  fence: WriteFence;
  /** The primary key's holder at that revision, if any. */
  primary?: { createRevision: number; holder?: string };
}

export interface TwoPrimaries {
  revision: number;
  primaryKey: string;
  nodes: string[];
}

export interface FencedWriteReport {
  ok: boolean;
  /** Acknowledged writes etcd never committed as acknowledged. */
  lost: LostWrite[];
  /** Writes etcd took although their writer no longer held the primary key. */
  deposed: DeposedWrite[];
  /** Two nodes acting as primary of one seat at one revision. */
  twoPrimaries: TwoPrimaries[];
  /** One line per violation, for an assertion message. */
  messages: string[];
}

interface Holder {
  createRevision: number;
  holder?: string;
}

/**
 * Holds a user's fenced writes to three rules: no acknowledged write lost, no write accepted from
 * a deposed primary, never two primaries of one seat at one revision. Replays etcd's history in
 * revision order; a write at revision r is judged against the primary key as it was before r
 * (a transaction's compares see the state before its own writes).
 */
export function checkFencedWrites(input: FencedWriteCheckInput): FencedWriteReport {
  const clientValueOf = input.clientValueOf ?? ((event: ObservedEvent) => event.value);
  const history = [...input.history].sort((a, b) => a.revision - b.revision);
  const primaries = new Map<string, Holder>();
  const deposed: DeposedWrite[] = [];
  const puts = new Map<string, ObservedEvent[]>();

  for (let i = 0; i < history.length; ) {
    const revision = history[i]?.revision ?? 0;
    const batch: ObservedEvent[] = [];
    while (i < history.length && history[i]?.revision === revision) batch.push(history[i++] as ObservedEvent);
    for (const event of batch) {
      if (event.type !== "put" || input.isPrimaryKey(event.key)) continue;
      const fence = input.fenceOf(event);
      if (fence === undefined) continue;
      puts.set(event.key, [...(puts.get(event.key) ?? []), event]);
      const held = primaries.get(fence.primaryKey);
      const ok =
        held !== undefined &&
        held.createRevision === fence.token &&
        (fence.writer === undefined || held.holder === undefined || held.holder === fence.writer);
      if (!ok) deposed.push({ key: event.key, revision, fence, ...(held ? { primary: held } : {}) });
    }
    for (const event of batch) {
      if (!input.isPrimaryKey(event.key)) continue;
      if (event.type === "delete") primaries.delete(event.key);
      else
        primaries.set(event.key, {
          createRevision: event.createRevision,
          holder: input.holderOf?.(event.value),
        });
    }
  }

  const lost: LostWrite[] = [];
  for (const write of input.acknowledged) {
    const stored = (puts.get(write.key) ?? []).filter((event) => clientValueOf(event) === write.value);
    if (stored.length === 0) lost.push({ write, reason: "etcd never committed this value under its key" });
    else if (write.revision !== undefined && !stored.some((event) => event.revision === write.revision))
      lost.push({
        write,
        reason: `acknowledged at revision ${write.revision}, etcd has it at ${stored.map((e) => e.revision).join(", ")}`,
      });
  }

  const twoPrimaries: TwoPrimaries[] = [];
  const claimsBySeat = new Map<string, PrimaryClaim[]>();
  for (const claim of input.primaryClaims ?? []) {
    const key = `${claim.primaryKey}@${claim.revision}`;
    claimsBySeat.set(key, [...(claimsBySeat.get(key) ?? []), claim]);
  }
  for (const claims of claimsBySeat.values()) {
    const nodes = [...new Set(claims.map((c) => c.node))].sort();
    const first = claims[0];
    if (first && nodes.length > 1)
      twoPrimaries.push({ revision: first.revision, primaryKey: first.primaryKey, nodes });
  }
  for (const write of deposed) {
    if (write.primary?.holder !== undefined && write.fence.writer !== undefined)
      twoPrimaries.push({
        revision: write.revision,
        primaryKey: write.fence.primaryKey,
        nodes: [write.primary.holder, write.fence.writer].sort(),
      });
  }

  const messages = [
    ...lost.map(
      ({ write, reason }) =>
        `lost: ${write.key}=${JSON.stringify(write.value)} acknowledged${write.node ? ` by ${write.node}` : ""}: ${reason}`,
    ),
    ...deposed.map(
      (w) =>
        `deposed: ${w.key} at revision ${w.revision} fenced on ${w.fence.primaryKey}@${w.fence.token}` +
        `${w.fence.writer ? ` by ${w.fence.writer}` : ""}, but the primary key was ` +
        (w.primary
          ? `${w.primary.createRevision}${w.primary.holder ? ` held by ${w.primary.holder}` : ""}`
          : "absent"),
    ),
    ...twoPrimaries.map(
      (t) => `two primaries of ${t.primaryKey} at revision ${t.revision}: ${t.nodes.join(", ")}`,
    ),
  ];
  return { ok: messages.length === 0, lost, deposed, twoPrimaries, messages };
}
