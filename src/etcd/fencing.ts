import type { LeaderSeat } from "../config/index.js";

/** A leader's proof of office: the create revision of the leader key it holds. */
export interface FencingToken {
  grouping: number;
  seat: LeaderSeat;
  token: number;
}

/** Raised when a fenced transaction finds that the leader key is no longer the caller's. */
export class FenceLostError extends Error {
  override readonly name = "FenceLostError";
  constructor(readonly fence: FencingToken) {
    super(
      `leader key of grouping ${fence.grouping} seat ${fence.seat} no longer has create revision ${fence.token}`,
    );
  }
}
