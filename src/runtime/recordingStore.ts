import {
  type BackupSeat,
  type CampaignResult,
  type ClusterStore,
  type FencedWrite,
  FenceLostError,
  type FencingToken,
  type FreshIdResult,
  type HandoffResult,
  type NodeRecord,
  WriteNotCommittedError,
  WriteOutcomeUnknownError,
} from "../etcd/index.js";
import type { HistoryRecorder, LeaderAction } from "./history.js";

type Outcome = "ok" | "refused" | "unknown" | "error";

/** How a failed fenced write ended: refused for certain, unknown (it may have committed), or another error. */
function writeOutcomeOf(err: unknown): Outcome {
  if (err instanceof FenceLostError || err instanceof WriteNotCommittedError) return "refused";
  if (err instanceof WriteOutcomeUnknownError) return "unknown";
  return "error";
}

/**
 * The node's view of `ClusterStore`: the one place where its leader actions (campaign, promote,
 * advertise, write, resign, handoff) are written to its history, each with the fence it ran under and
 * its outcome. The other calls pass through unrecorded.
 */
export class RecordingStore {
  constructor(
    private readonly store: ClusterStore,
    private readonly history: HistoryRecorder,
  ) {}

  private record(
    action: LeaderAction,
    fence: FencingToken,
    outcome: Outcome,
    extra: { revision?: number; detail?: string } = {},
  ): void {
    const { grouping, seat, token } = fence;
    this.history.record({ kind: "leader", action, grouping, slot: seat, token, outcome, ...extra });
  }

  allocateFreshId(
    record: Omit<NodeRecord, "id">,
    leaseId: string,
    stillWanted: () => boolean,
  ): Promise<FreshIdResult> {
    return this.store.allocateFreshId(record, leaseId, stillWanted);
  }

  claimAdvertisedSlot(record: Omit<NodeRecord, "id">, leaseId: string): Promise<number | undefined> {
    return this.store.claimAdvertisedSlot(record, leaseId);
  }

  deregister(nodeId: number, leaseId: string): Promise<boolean> {
    return this.store.deregister(nodeId, leaseId);
  }

  async campaign(
    grouping: number,
    seat: FencingToken["seat"],
    record: NodeRecord,
    leaseId: string,
  ): Promise<CampaignResult> {
    const result = await this.store.campaign(grouping, seat, record, leaseId);
    if (result.kind === "lost") this.record("campaign", { grouping, seat, token: 0 }, "refused");
    else this.record("campaign", { grouping, seat, token: result.token }, "ok", { revision: result.token });
    return result;
  }

  async promote(backup: FencingToken, record: NodeRecord, leaseId: string): Promise<CampaignResult> {
    const result = await this.store.promote(backup, record, leaseId);
    if (result.kind === "lost") this.record("promote", backup, "refused");
    else {
      const primary = { grouping: backup.grouping, seat: 1 as const, token: result.token };
      this.record("promote", primary, "ok", { revision: result.token });
    }
    return result;
  }

  async advertiseFailedSlot(
    fence: FencingToken,
    leaseId: string,
    nodeId: number,
    advertisedBy: number,
  ): Promise<boolean> {
    try {
      const advertised = await this.store.advertiseFailedSlot(fence, leaseId, nodeId, advertisedBy);
      if (advertised) this.record("advertise", fence, "ok", { detail: `slot ${nodeId}` });
      return advertised;
    } catch (err) {
      if (err instanceof FenceLostError) this.record("advertise", fence, "refused");
      throw err;
    }
  }

  async resign(fence: FencingToken, leaseId: string): Promise<boolean> {
    const resigned = await this.store.resign(fence, leaseId);
    this.record("resign", fence, resigned ? "ok" : "refused");
    return resigned;
  }

  /** A stopping primary's handoff; recorded as `handoff`, or as `resign` when it fell back to resigning. */
  async handoff(
    primary: FencingToken,
    leaseId: string,
    backup: BackupSeat | undefined,
  ): Promise<HandoffResult> {
    const result = await this.store.handoff(primary, leaseId, backup);
    if (result.kind === "handedOff") this.record("handoff", primary, "ok", { revision: result.revision });
    else this.record("resign", primary, result.kind === "resigned" ? "ok" : "refused");
    return result;
  }

  async fencedTxn(
    fence: FencingToken,
    build: Parameters<ClusterStore["fencedTxn"]>[1],
    leaseId: string,
  ): Promise<FencedWrite> {
    try {
      const write = await this.store.fencedTxn(fence, build, leaseId);
      this.record("write", fence, "ok", { revision: write.revision });
      return write;
    } catch (err) {
      this.record("write", fence, writeOutcomeOf(err), { detail: String(err) });
      throw err;
    }
  }
}
