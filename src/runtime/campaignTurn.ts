import type { LeaderSeat } from "../../machines/events.js";
import type { ClusterLayout } from "../config/index.js";
import type { LeadersSnapshot } from "./groupingViews.js";

/** How long each rank waits after the one before it; a winner's key reaches the others' views well within it. */
export const CAMPAIGN_TURN_STEP_MS = 40;
/** Ranks past this wait no longer: a grouping whose first candidates are all slow is not left unseated for long. */
export const CAMPAIGN_TURN_MAX_RANK = 8;

/**
 * When a vacant seat's candidates take their turns: by ID within the grouping, the lowest first,
 * skipping the IDs that hold a seat. The first runs at once and each next one
 * `CAMPAIGN_TURN_STEP_MS` later (up to `CAMPAIGN_TURN_MAX_RANK` steps), so that usually one
 * transaction fills a seat instead of one per member: nine nodes starting together sent 9 to 15.
 * Every lower ID counts, seen as a member or not: while a grouping forms, the nodes of lower IDs
 * hold their tickets before this one did (IDs are handed out in order) and are about to join, and
 * a dead member's slot is taken again by its replacement. Safety does not rest on it: every
 * campaign is still a compare in etcd, and a node that waited and then sees the seat taken does
 * not campaign.
 */
export function campaignTurnMs(
  id: number,
  layout: ClusterLayout,
  leaders: LeadersSnapshot | undefined,
): number {
  const [firstGroup] = layout.groupsOf(layout.groupingOfNode(id));
  const firstId = layout.idRangeOf(firstGroup ?? 0).first;
  const seatedBelow = [leaders?.primary?.record?.id, leaders?.backup?.record?.id].filter(
    (seated) => seated !== undefined && seated >= firstId && seated < id,
  ).length;
  const ahead = id - firstId - seatedBelow;
  return Math.min(ahead, CAMPAIGN_TURN_MAX_RANK) * CAMPAIGN_TURN_STEP_MS;
}

/**
 * Whether a view of the leader keys newer than `revision` shows `seat` held. Only a newer view
 * counts: the decision to campaign came from a fresh read, which the watched view may lag behind.
 */
export function seatTakenSince(
  leaders: LeadersSnapshot | undefined,
  revision: number,
  seat: LeaderSeat,
): boolean {
  if (leaders === undefined || leaders.revision <= revision) return false;
  return Boolean(seat === 1 ? leaders.primary : leaders.backup);
}
