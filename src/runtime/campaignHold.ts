import type { CampaignResult, ClusterStore, FencingToken, NodeRecord } from "../etcd/index.js";
import { monotonicNow } from "../etcd/index.js";
import type { HistoryRecorder } from "./history.js";
import { RecordingStore } from "./recordingStore.js";
import type { Timers } from "./sessionScope.js";

/**
 * The node's store, with campaigns held off for a while after `resign()`: a campaign asked for
 * during the hold waits until it ends and then counts as lost without a transaction, so the
 * follower re-reads its leader keys and decides afresh. Meanwhile any other eligible node takes
 * the vacated seat; a node with no rival takes it back once the hold is over.
 */
export class CampaignHoldStore extends RecordingStore {
  private heldUntil = 0;

  constructor(
    store: ClusterStore,
    history: HistoryRecorder,
    private readonly timers: Timers,
  ) {
    super(store, history);
  }

  holdCampaigns(ms: number): void {
    this.heldUntil = Math.max(this.heldUntil, monotonicNow() + ms);
  }

  override async campaign(
    grouping: number,
    seat: FencingToken["seat"],
    record: NodeRecord,
    leaseId: string,
  ): Promise<CampaignResult> {
    const holdMs = this.heldUntil - monotonicNow();
    if (holdMs > 0) {
      // Timers are cleared when the node shuts down; the campaign then never settles, as its scope has ended.
      await new Promise<void>((resolve) => this.timers.after(holdMs, resolve));
      return { kind: "lost" };
    }
    return super.campaign(grouping, seat, record, leaseId);
  }
}
