/** A role the child logged (`kind: "role"`), or something done to or seen of its process. */
export interface RoleChange {
  readonly at: Date;
  readonly node: string;
  /** The node's ID when the change happened, if it had one. */
  readonly id: number | undefined;
  readonly kind: "role" | "process";
  readonly from: string;
  readonly to: string;
}

const LEADER_ROLES = new Set(["primary", "backup"]);
const CHURN_ROLES = new Set(["follower", "candidate"]);

/** A change into or out of a leader seat, including a leader's process crashing, pausing or stopping. */
export const isLeaderChange = (change: RoleChange): boolean =>
  LEADER_ROLES.has(change.from) || (change.kind === "role" && LEADER_ROLES.has(change.to));

/** Followers campaigning for a vacant seat and losing: many lines that say little. */
const isChurn = (change: RoleChange): boolean =>
  change.kind === "role" && CHURN_ROLES.has(change.from) && CHURN_ROLES.has(change.to);

/**
 * The role `local` shows for a transition a node logged. The API counts a backup whose promotion is
 * in flight as a candidate (`roleOf` in src/runtime/roles.ts); like `timeline`, `local` shows it as
 * the backup it was until the result is in, so a promotion reads backup → primary.
 */
export function shownRole(logged: string, state: unknown, shown: string): string {
  return logged === "candidate" && state === "member.leader" && shown === "backup" ? shown : logged;
}

/** The recent role changes without follower/candidate churn, and a longer list of leader changes. */
export class TransitionLog {
  private readonly recentChanges: RoleChange[] = [];
  private readonly leaderChanges: RoleChange[] = [];

  constructor(
    private readonly recentLimit = 8,
    private readonly leaderLimit = 64,
  ) {}

  get recent(): readonly RoleChange[] {
    return this.recentChanges;
  }

  /** Oldest first; the screen shows the latest few per grouping. */
  get leaders(): readonly RoleChange[] {
    return this.leaderChanges;
  }

  add(change: RoleChange): void {
    if (!isChurn(change)) keepLast(this.recentChanges, change, this.recentLimit);
    if (isLeaderChange(change)) keepLast(this.leaderChanges, change, this.leaderLimit);
  }
}

function keepLast<T>(list: T[], item: T, limit: number): void {
  list.push(item);
  if (list.length > limit) list.splice(0, list.length - limit);
}
