// The federation part of a TrainingFederation's status (round, members, loss, checkpoint and the
// Joined, Synced and Degraded conditions), derived from the protocol's FederationView: pure, so
// every rule is unit-tested without NATS.
import type {
  Condition,
  MemberStatus,
  TrainingFederation,
  TrainingFederationStatus,
} from "../../../core/api/index.js";
import type { FederationView, MemberView } from "../../../core/protocol/index.js";

/** What reading the federation from NATS gave, as input to the status. */
export type FederationObservation =
  /** The view was read. */
  | { kind: "view"; view: FederationView }
  /** The federation's resources do not exist yet: no member has registered. */
  | { kind: "absent" }
  /** NATS did not answer in time; message says where and what to check. */
  | { kind: "unreachable"; message: string };

type ConditionInput = Pick<Condition, "type" | "status" | "reason" | "message">;

/** The status fields the federation's view decides. */
export type FederationFields = Pick<
  TrainingFederationStatus,
  | "round"
  | "progress"
  | "activeMembers"
  | "members"
  | "loss"
  | "lastCheckpoint"
  | "evalLoss"
  | "bytesSentPerRound"
  | "compressionRatio"
>;

/** The conditions written from the federation's view. */
export const federationConditionTypes = ["Joined", "Synced", "Degraded"] as const;

/**
 * A heartbeat moves every few seconds; recording each one would write the status on every poll of
 * a steady federation. members[].lastHeartbeat is therefore refreshed only when it moved by more
 * than this, or when the member's state changed: it is exact to within a minute.
 */
export const heartbeatResolutionMs = 60_000;
// The CRD's limit on status.members (a longer list would make the API server refuse the status).
const maxMembers = 256;
// Disagreements named in Synced's message; the rest are counted.
const maxNamedDisagreements = 8;

/** Who this member is, as the federation should see it. */
export interface Self {
  memberId: string;
  /** base64 Ed25519 public key (status.publicKey), once known. */
  publicKey?: string;
  /** `sha256:<hex>` of this member's canonical spec.federation. */
  federationSpecHash: string;
}

/** A MemberView's state in the CRD's enum, with its reason. */
export function memberState(member: MemberView): Pick<MemberStatus, "state" | "reason"> {
  if (member.state === "Refused") return { state: "Refused", reason: member.reason };
  if (member.state === "Excluded") return { state: "Excluded", reason: member.reason };
  if (member.state === "Active") return { state: "Active" };
  if (member.workers.length > 0)
    return { state: "Left", reason: "its workers announced that they are leaving" };
  if (member.roundsContributed > 0)
    return { state: "Stale", reason: "registered, but no worker has heartbeated recently" };
  return { state: "Joining", reason: "registered; no worker has heartbeated yet" };
}

function sameInstantWithin(a: string | undefined, b: string | undefined, ms: number): boolean {
  if (a === undefined || b === undefined) return a === b;
  return Math.abs(Date.parse(a) - Date.parse(b)) <= ms;
}

/**
 * The members list; lastHeartbeat kept from `previous` while within heartbeatResolutionMs, and the
 * bounded-update counts never below `previous`.
 */
export function memberStatuses(
  view: FederationView,
  previous: readonly MemberStatus[] | undefined,
): MemberStatus[] {
  return view.members.slice(0, maxMembers).map((member) => {
    const { state, reason } = memberState(member);
    const before = previous?.find((p) => p.id === member.memberId);
    const lastHeartbeat =
      before &&
      before.state === state &&
      sameInstantWithin(before.lastHeartbeat, member.lastHeartbeat, heartbeatResolutionMs)
        ? before.lastHeartbeat
        : member.lastHeartbeat;
    const out: MemberStatus = {
      id: member.memberId,
      state,
      trainers: member.workers.filter((w) => w.state === "Active").length,
      roundsContributed: member.roundsContributed,
      // Counted only in live workers' heartbeats: the highest count seen stays in the status
      // once the workers have left (a finished run's poisoner stays visible).
      updatesClipped: Math.max(member.updatesClipped, before?.updatesClipped ?? 0),
      updatesDropped: Math.max(member.updatesDropped, before?.updatesDropped ?? 0),
    };
    // Likewise the score: the last one reported stays once no live worker reports it.
    if (member.score) {
      out.updateCosine = roundedScore(member.score.cosine);
      out.reputation = roundedScore(member.score.reputation);
    } else if (before?.reputation !== undefined) {
      out.reputation = before.reputation;
      if (before.updateCosine !== undefined) out.updateCosine = before.updateCosine;
    }
    if (reason) out.reason = reason;
    if (lastHeartbeat) out.lastHeartbeat = lastHeartbeat;
    return out;
  });
}

/** A score as the status shows it: 3 decimals, so heartbeats' noise does not rewrite it. */
const roundedScore = (value: number): number => Math.round(value * 1000) / 1000;

const hexOf = (federationSpecHash: string) => federationSpecHash.replace(/^sha256:/, "");

/** Whether this member's record is registered and admitted; why not, and what to do. */
export function joinedCondition(
  tf: TrainingFederation,
  self: Self,
  view: FederationView | undefined,
): ConditionInput {
  const federation = tf.spec.federation.id;
  const record = view?.members.find((m) => m.memberId === self.memberId);
  const { membership } = tf.spec.federation;
  const key = self.publicKey ?? record?.publicKey;
  if (membership.policy === "Allowlist") {
    // Checked first: trainers whose key is not allowlisted never register.
    const listed = membership.members.find((m) => m.id === self.memberId);
    if (!listed || (key !== undefined && listed.publicKey !== key)) {
      return {
        type: "Joined",
        status: "False",
        reason: "NotAdmitted",
        message: `member ${self.memberId} is not in federation ${federation}'s allowlist${listed ? " with this key" : ""}: give the organiser this member's id ${self.memberId} and public key ${key ?? "(see status.publicKey)"} to add to spec.federation.membership.members`,
      };
    }
  }
  if (!record) {
    return {
      type: "Joined",
      status: "False",
      reason: "NotRegistered",
      message: `member ${self.memberId} is not registered in federation ${federation}: its trainers register it when they start (spec.contribution.replicas > 0 and TrainersReady)`,
    };
  }
  if (self.publicKey && record.publicKey !== self.publicKey) {
    return {
      type: "Joined",
      status: "False",
      reason: "NotAdmitted",
      message: `member id ${self.memberId} is registered in federation ${federation} with another public key (${record.publicKey}, ours is ${self.publicKey}): choose another spec.contribution.memberId, or ask the member holding that key to leave`,
    };
  }
  const ours = hexOf(self.federationSpecHash);
  if (record.specHash !== ours) {
    return {
      type: "Joined",
      status: "False",
      reason: "SpecHashMismatch",
      message: `this member's trainers registered spec hash sha256:${record.specHash}, but spec.federation hashes to ${self.federationSpecHash}: the trainers restart with the new configuration; if this persists, check the trainer ConfigMap`,
    };
  }
  const others = view?.members.filter((m) => m.memberId !== self.memberId) ?? [];
  const disagreeing = others.filter((m) => m.specHash !== ours);
  if (others.length > 0 && disagreeing.length === others.length) {
    const theirs = [...new Set(disagreeing.map((m) => `sha256:${m.specHash}`))].join(", ");
    return {
      type: "Joined",
      status: "False",
      reason: "SpecHashMismatch",
      message: `every other member (${others.map((m) => m.memberId).join(", ")}) registered another federation spec hash (${theirs}) than this member's ${self.federationSpecHash}: compare spec.federation with the federation's shared base`,
    };
  }
  const excluded = view?.members.find(
    (m) => m.memberId === self.memberId && m.state === "Excluded",
  );
  if (excluded) {
    return {
      type: "Joined",
      status: "False",
      reason: "Excluded",
      message: `member ${self.memberId} is ${excluded.reason}: its trainers still follow the rounds, but no coordinator commits their updates until an organiser readmits it`,
    };
  }
  return {
    type: "Joined",
    status: "True",
    reason: "Admitted",
    message: `member ${self.memberId} is registered and admitted in federation ${federation}`,
  };
}

/** Whether the live workers' model hashes agree. */
export function syncedCondition(view: FederationView): ConditionInput {
  if (view.disagreements.length > 0) {
    const more = view.disagreements.length - maxNamedDisagreements;
    const who = view.disagreements
      .slice(0, maxNamedDisagreements)
      .map(
        (d) =>
          `${d.worker.memberId}/${d.worker.workerId} at round ${d.round} reports ${d.reported.slice(0, 12)}, the majority ${d.expected.slice(0, 12)}`,
      )
      .join("; ");
    return {
      type: "Synced",
      status: "False",
      reason: "ModelHashMismatch",
      message: `model hashes differ: ${who}${more > 0 ? `; and ${more} more` : ""}`,
    };
  }
  const applied = view.members.some(
    (m) => m.state !== "Refused" && m.workers.some((w) => w.appliedRound > 0),
  );
  return applied
    ? {
        type: "Synced",
        status: "True",
        reason: "ModelHashesAgree",
        message: "every live worker holds the same model as the others at its round",
      }
    : {
        type: "Synced",
        status: "Unknown",
        reason: "NoRoundApplied",
        message: "no live worker has applied a round yet",
      };
}

/** Whether the federation is making progress as configured. */
export function degradedCondition(view: FederationView): ConditionInput {
  if (view.paused || view.roundStatus?.phase === "paused") {
    return {
      type: "Degraded",
      status: "True",
      reason: "Paused",
      message: `an organiser paused the federation at round ${view.round}: no round closes until it resumes`,
    };
  }
  if (view.roundStatus?.phase === "completed") {
    return {
      type: "Degraded",
      status: "False",
      reason: "RunCompleted",
      message: `every round of the run is committed (${view.roundStatus.round})`,
    };
  }
  if (view.roundStatus?.phase === "retrying") {
    return {
      type: "Degraded",
      status: "True",
      reason: "RoundRetried",
      message: `round ${view.roundStatus.round} attempt ${view.roundStatus.attempt}: ${view.roundStatus.reason || "retried"}`,
    };
  }
  return {
    type: "Degraded",
    status: "False",
    reason: "RoundsProgressing",
    message: "rounds close as configured",
  };
}

/**
 * What this member's live workers last reported of their training: the evaluation loss of the
 * global model (the same on every worker: the latest), the bytes they sent in their last round
 * (summed) and the compression ratio (dense fp32 bytes over bytes sent).
 */
function ownProgress(
  view: FederationView,
  memberId: string,
): Pick<FederationFields, "evalLoss" | "bytesSentPerRound" | "compressionRatio"> {
  const workers =
    view.members
      .find((m) => m.memberId === memberId && m.state !== "Refused")
      ?.workers.filter((w) => w.state === "Active" && w.progress) ?? [];
  if (workers.length === 0) return {};
  const latest = [...workers].sort((a, b) => b.appliedRound - a.appliedRound)[0]!.progress!;
  const sent = workers.reduce((sum, w) => sum + w.progress!.bytesSent, 0);
  const dense = workers.reduce((sum, w) => sum + w.progress!.denseBytes, 0);
  return {
    ...(Number.isFinite(latest.evalLoss) ? { evalLoss: round4(latest.evalLoss) } : {}),
    ...(sent > 0 ? { bytesSentPerRound: sent, compressionRatio: round4(dense / sent) } : {}),
  };
}

/** Four significant digits: status changes when the value does, not its last bits. */
function round4(x: number): number {
  return Number(x.toPrecision(4));
}

/** Mean of this member's live workers' losses. */
function ownLoss(view: FederationView, memberId: string): number | undefined {
  const losses =
    view.members
      .find((m) => m.memberId === memberId && m.state !== "Refused")
      ?.workers.flatMap((w) => (w.state === "Active" && w.loss !== undefined ? [w.loss] : [])) ??
    [];
  return losses.length ? losses.reduce((a, b) => a + b, 0) / losses.length : undefined;
}

/**
 * The federation fields and conditions from an observation. `undefined` fields mean "keep what
 * the status has" (NATS unreachable: the last view stays, Joined becomes Unknown).
 */
export function federationStatus(
  tf: TrainingFederation,
  self: Self,
  observation: FederationObservation,
): { fields?: FederationFields; conditions: ConditionInput[] } {
  const rounds = tf.spec.federation.training.rounds;
  if (observation.kind === "unreachable") {
    return {
      conditions: [
        {
          type: "Joined",
          status: "Unknown",
          reason: "NatsUnreachable",
          message: observation.message,
        },
      ],
    };
  }
  if (observation.kind === "absent") {
    return {
      fields: { round: 0, progress: `0/${rounds}`, activeMembers: 0, members: [] },
      conditions: [
        joinedCondition(tf, self, undefined),
        {
          type: "Synced",
          status: "Unknown",
          reason: "NoRoundApplied",
          message: "no live worker has applied a round yet",
        },
        {
          type: "Degraded",
          status: "False",
          reason: "NotStarted",
          message: `federation ${tf.spec.federation.id} has no members yet`,
        },
      ],
    };
  }
  const { view } = observation;
  const round = view.lastCommit?.round ?? 0;
  const fields: FederationFields = {
    round,
    progress: `${round}/${rounds}`,
    activeMembers: view.members.filter((m) => m.state === "Active").length,
    members: memberStatuses(view, tf.status?.members),
  };
  const loss = ownLoss(view, self.memberId);
  if (loss !== undefined) fields.loss = loss;
  // The last report stays once the workers stop (the run completed, or they left).
  const progress = ownProgress(view, self.memberId);
  const previous = tf.status ?? {};
  Object.assign(
    fields,
    progress.evalLoss === undefined && progress.bytesSentPerRound === undefined
      ? {
          ...(previous.evalLoss !== undefined ? { evalLoss: previous.evalLoss } : {}),
          ...(previous.bytesSentPerRound !== undefined
            ? { bytesSentPerRound: previous.bytesSentPerRound }
            : {}),
          ...(previous.compressionRatio !== undefined
            ? { compressionRatio: previous.compressionRatio }
            : {}),
        }
      : progress,
  );
  if (view.lastCheckpoint)
    fields.lastCheckpoint = {
      round: view.lastCheckpoint.round,
      digest: view.lastCheckpoint.digest,
    };
  return {
    fields,
    conditions: [joinedCondition(tf, self, view), syncedCondition(view), degradedCondition(view)],
  };
}
