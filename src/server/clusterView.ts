import type { Subscription } from "rxjs";
import type { ClusterNode, LeadersSnapshot, LeaderView, MembersByGroup } from "../runtime/index.js";

export interface SeatJson {
  id?: number;
  name?: string;
  address?: string;
  token: number;
}

export interface ClusterJson {
  node: string;
  role: string;
  state: string;
  id: number | null;
  group: number | null;
  grouping: number | null;
  fence: { grouping: number; seat: number; token: number } | null;
  leaders: { revision: number; primary: SeatJson | null; backup: SeatJson | null } | null;
  members: { group: number; members: { id: number; name: string; address: string }[] }[];
}

function seatJson(view: LeaderView | undefined): SeatJson | null {
  return view ? { ...view.record, token: view.token } : null;
}

/** The latest leaders and members a node has seen, kept for answering `/cluster`. */
export class ClusterView {
  private leaders: LeadersSnapshot | undefined;
  private members: MembersByGroup = new Map();
  private readonly subscriptions: Subscription[];

  constructor(private readonly node: ClusterNode) {
    this.subscriptions = [
      node.leaders$.subscribe((l) => {
        this.leaders = l;
      }),
      node.members$.subscribe((m) => {
        this.members = m;
      }),
    ];
  }

  /** The grouping's primary as last seen, if any. */
  primary(): SeatJson | null {
    return seatJson(this.leaders?.primary);
  }

  toJSON(): ClusterJson {
    const { status } = this.node;
    return {
      node: status.name,
      role: status.role,
      state: status.state,
      id: status.id ?? null,
      group: status.group ?? null,
      grouping: status.grouping ?? null,
      fence: status.fence ?? null,
      leaders: this.leaders
        ? {
            revision: this.leaders.revision,
            primary: seatJson(this.leaders.primary),
            backup: seatJson(this.leaders.backup),
          }
        : null,
      members: [...this.members].map(([group, records]) => ({
        group,
        members: records.map((r) => ({ ...r })),
      })),
    };
  }

  close(): void {
    for (const s of this.subscriptions) s.unsubscribe();
  }
}
