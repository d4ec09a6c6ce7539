import { describe, expect, test } from "vitest";
import { ClusterLayout } from "../../src/config/index.js";
import {
  CAMPAIGN_TURN_MAX_RANK,
  CAMPAIGN_TURN_STEP_MS,
  campaignTurnMs,
  seatTakenSince,
} from "../../src/runtime/campaignTurn.js";
import type { LeadersSnapshot, LeaderView } from "../../src/runtime/groupingViews.js";

const config = {
  dbname: "db",
  groups: 6,
  group_size: 3,
  reads: 3,
  writes: 2,
  id_key: "id",
  failover_id_key_prefix: "f",
};
/** Two groupings of three groups of three: IDs 0–8 and 9–17. */
const layout = new ClusterLayout(config);
const wide = new ClusterLayout({ ...config, groups: 8, group_size: 5, reads: 4 });

const seat = (id: number): LeaderView => ({
  record: { id, name: `n${id}`, address: `a${id}` },
  token: 10,
  modRevision: 10,
  lease: "1",
});
const leaders = (revision: number, primary?: number, backup?: number): LeadersSnapshot => ({
  revision,
  primary: primary === undefined ? undefined : seat(primary),
  backup: backup === undefined ? undefined : seat(backup),
});

describe("campaign turns: the lowest unseated ID of a grouping runs first", () => {
  test("each ID waits one step per lower ID of its own grouping", () => {
    expect(campaignTurnMs(0, layout, undefined)).toBe(0);
    expect(campaignTurnMs(1, layout, undefined)).toBe(CAMPAIGN_TURN_STEP_MS);
    expect(campaignTurnMs(5, layout, undefined)).toBe(5 * CAMPAIGN_TURN_STEP_MS);
    expect(campaignTurnMs(9, layout, undefined)).toBe(0);
    expect(campaignTurnMs(11, layout, undefined)).toBe(2 * CAMPAIGN_TURN_STEP_MS);
  });

  test("IDs holding a seat are not in the queue: the next one runs for the backup at once", () => {
    expect(campaignTurnMs(1, layout, leaders(5, 0))).toBe(0);
    expect(campaignTurnMs(2, layout, leaders(5, 0, 1))).toBe(0);
    expect(campaignTurnMs(4, layout, leaders(5, 3, 0))).toBe(2 * CAMPAIGN_TURN_STEP_MS);
    // A seat held by a higher ID, or by another grouping's ID in a poisoned key, moves nobody up.
    expect(campaignTurnMs(4, layout, leaders(5, 7, 12))).toBe(4 * CAMPAIGN_TURN_STEP_MS);
  });

  test("only seated IDs below this one, of this grouping, move it up; an unreadable seat moves nobody", () => {
    // The node's own ID seated (a view that is behind) is not below it.
    expect(campaignTurnMs(4, layout, leaders(5, 4))).toBe(4 * CAMPAIGN_TURN_STEP_MS);
    // An ID of another grouping below this grouping's first (only a forged record could name one).
    expect(campaignTurnMs(11, layout, leaders(5, 3))).toBe(2 * CAMPAIGN_TURN_STEP_MS);
    // A poisoned key (held, no record) in either seat, and a vacant primary with a held backup.
    const poisoned: LeaderView = { problem: "not a node record", token: 10, modRevision: 10, lease: "0" };
    expect(campaignTurnMs(4, layout, { revision: 5, primary: poisoned, backup: poisoned })).toBe(
      4 * CAMPAIGN_TURN_STEP_MS,
    );
    expect(campaignTurnMs(4, layout, leaders(5, undefined, 1))).toBe(3 * CAMPAIGN_TURN_STEP_MS);
  });

  test("no rank waits past the cap", () => {
    expect(campaignTurnMs(19, wide, undefined)).toBe(CAMPAIGN_TURN_MAX_RANK * CAMPAIGN_TURN_STEP_MS);
    expect(campaignTurnMs(CAMPAIGN_TURN_MAX_RANK, wide, undefined)).toBe(
      CAMPAIGN_TURN_MAX_RANK * CAMPAIGN_TURN_STEP_MS,
    );
  });

  test("only a view newer than the one the wait began with counts a seat as taken", () => {
    expect(seatTakenSince(leaders(7, 3), 7, 1)).toBe(false);
    expect(seatTakenSince(leaders(8, 3), 7, 1)).toBe(true);
    expect(seatTakenSince(leaders(8, 3), 7, 2)).toBe(false);
    expect(seatTakenSince(leaders(8, 3, 4), 7, 2)).toBe(true);
    expect(seatTakenSince(undefined, 0, 1)).toBe(false);
  });
});
