/** A leader key as the machines see it: who holds it, its fencing token, and whether it is this node's. */
export interface SeatHolder {
  /** Undefined when the key's value does not name a node of this grouping (a poisoned key). */
  nodeId?: number;
  token: number;
  mine: boolean;
  /**
   * Set for a poisoned key that no lease keeps alive: no runtime writes a leader key without a
   * lease, so nothing will ever remove it. The grouping's other leader deletes it, fenced on its
   * own seat and on this mod revision.
   */
  poisonRevision?: number;
}

/** The two leader keys of this node's grouping, as of one etcd revision. */
export interface LeadersChanged {
  type: "LEADERS_CHANGED";
  primary?: SeatHolder;
  backup?: SeatHolder;
}

/** Allocated slots of this grouping that have neither a live member nor an advertisement. */
export interface MembersChanged {
  type: "MEMBERS_CHANGED";
  missing: readonly number[];
}

export type LeaderSeat = 1 | 2;

export interface Office {
  seat: LeaderSeat;
  token: number;
}
