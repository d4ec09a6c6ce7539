import type { Observable } from "rxjs";
import type { NodeEvent } from "../../../machines/node.js";
import type { ClusterLayout, NodeSettings } from "../../config/index.js";
import type { Etcd3, FencingToken, NodeRecord, PrefixSnapshot } from "../../etcd/index.js";
import type { Logger } from "../../logging.js";
import type { CampaignHoldStore } from "../campaignHold.js";
import type { GroupingEvents } from "../groupingEvents.js";
import { type NodeSnapshot, officeOf } from "../roles.js";
import type { SessionScope, Timers } from "../sessionScope.js";
import type { NodeIdFile, StoredIdentity } from "../stateDir.js";

/** What the effects of every machine may use: the node's etcd access, its scopes and its machine. */
export interface EffectContext {
  readonly layout: ClusterLayout;
  readonly settings: NodeSettings;
  /** With `settings.stateDir`: its ID file, and what it held when the node locked the directory. */
  readonly stateDir?: { idFile: NodeIdFile; stored?: StoredIdentity };
  readonly log: Logger;
  readonly etcd: Etcd3;
  /** The node's store: every leader action recorded in its history, campaigns held off after a resign or a step-down. */
  readonly store: CampaignHoldStore;
  readonly grouping: GroupingEvents;
  readonly timers: Timers;
  /** Deadline of each etcd call. */
  readonly callTimeoutMs: number;
  /** A prefix view of this node's client (see `watchPrefix`). */
  watch(prefix: string): Observable<PrefixSnapshot>;
  /** The scope of the node's current session. */
  scope(): SessionScope;
  /** Ends the current scope and starts the next session's. */
  beginScope(): SessionScope;
  /** The node machine's snapshot. */
  snapshot(): NodeSnapshot;
  /** Sends to the node machine whatever session it is in (for events about the node itself). */
  send(event: NodeEvent): void;
  /** Reports the round-trip time of an acknowledged keepalive. */
  keepaliveRoundTrip(ms: number): void;
}

/** The ID and grouping of the node; throws when it has no ID (only a member's role effects ask). */
export function identityOf(ctx: EffectContext): { id: number; grouping: number } {
  const { id } = ctx.snapshot().context;
  if (id === undefined) throw new Error("node has no ID yet");
  return { id, grouping: ctx.layout.groupingOfNode(id) };
}

/** What this node writes into its member key and any leader key it holds. */
export function nodeRecord(ctx: EffectContext): Omit<NodeRecord, "id">;
export function nodeRecord(ctx: EffectContext, id: number): NodeRecord;
export function nodeRecord(ctx: EffectContext, id?: number): Omit<NodeRecord, "id"> | NodeRecord {
  const record = { name: ctx.settings.nodeName, address: ctx.settings.address };
  return id === undefined ? record : { ...record, id };
}

/** The fencing token of the office the node holds, from its groupLeader child; undefined when it leads nothing. */
export function fenceOf(ctx: EffectContext): FencingToken | undefined {
  const snapshot = ctx.snapshot();
  const office = officeOf(snapshot);
  const { id } = snapshot.context;
  return office && id !== undefined ? { grouping: ctx.layout.groupingOfNode(id), ...office } : undefined;
}
