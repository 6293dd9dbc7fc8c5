// Which Kubernetes Events a reconcile's status change is worth: joins and departures, spec-hash
// mismatches, exclusions, refused specs, failed trainers, checkpoints, suspend and resume, rounds
// committed without this member and updates dropped by the norm bound. Pure: the status before
// and after a reconcile in, the Events out (the recorder aggregates repeats).
import type { TrainingFederationStatus } from "../../../core/api/index.js";
import type { EventType } from "../controller/events.js";

/** One Event to record about the TrainingFederation. */
export interface StatusEvent {
  type: EventType;
  reason: string;
  /** What the operator or the federation did (events.k8s.io `action`). */
  action: string;
  note: string;
}

type Condition = NonNullable<TrainingFederationStatus["conditions"]>[number];

function conditionOf(status: TrainingFederationStatus | undefined, type: string) {
  return status?.conditions?.find((c: Condition) => c.type === type);
}

/** Whether a condition now differs from before in status or reason. */
function changed(before: Condition | undefined, after: Condition | undefined): boolean {
  return !!after && (before?.status !== after.status || before?.reason !== after.reason);
}

/** The Events that the change from `before` to `after` is worth; see the file comment. */
export function statusEvents(
  before: TrainingFederationStatus | undefined,
  after: TrainingFederationStatus,
  memberId: string | undefined,
): StatusEvent[] {
  const events: StatusEvent[] = [];
  const valid = conditionOf(after, "Valid");
  if (valid?.status === "False" && changed(conditionOf(before, "Valid"), valid))
    events.push({ type: "Warning", reason: valid.reason, action: "Validate", note: valid.message });

  const joined = conditionOf(after, "Joined");
  const wasJoined = conditionOf(before, "Joined");
  if (changed(wasJoined, joined)) {
    if (joined!.status === "True")
      events.push({ type: "Normal", reason: "Joined", action: "Join", note: joined!.message });
    else if (wasJoined?.status === "True" || joined!.status === "False")
      events.push({
        type: "Warning",
        reason: joined!.reason,
        action: "Join",
        note: joined!.message,
      });
  }

  const trainers = conditionOf(after, "TrainersReady");
  if (changed(conditionOf(before, "TrainersReady"), trainers)) {
    if (trainers!.reason === "TrainersFailed")
      events.push({
        type: "Warning",
        reason: "TrainersFailed",
        action: "Train",
        note: trainers!.message,
      });
    if (trainers!.reason === "Queued")
      events.push({ type: "Normal", reason: "Queued", action: "Queue", note: trainers!.message });
  }

  const synced = conditionOf(after, "Synced");
  if (synced?.status === "False" && changed(conditionOf(before, "Synced"), synced))
    events.push({
      type: "Warning",
      reason: synced.reason,
      action: "Compare",
      note: synced.message,
    });

  const degraded = conditionOf(after, "Degraded");
  if (degraded?.status === "True" && changed(conditionOf(before, "Degraded"), degraded))
    events.push({
      type: "Warning",
      reason: degraded.reason,
      action: "Coordinate",
      note: degraded.message,
    });

  if (before?.phase !== "Suspended" && after.phase === "Suspended")
    events.push({
      type: "Normal",
      reason: "Suspended",
      action: "Suspend",
      note: "spec.suspend is true: this member's trainers are stopped",
    });
  if (before?.phase === "Suspended" && after.phase !== "Suspended")
    events.push({
      type: "Normal",
      reason: "Resumed",
      action: "Resume",
      note: "spec.suspend is false: this member's trainers run again",
    });

  const checkpoint = after.lastCheckpoint;
  if (checkpoint && checkpoint.round !== before?.lastCheckpoint?.round)
    events.push({
      type: "Normal",
      reason: "CheckpointWritten",
      action: "Checkpoint",
      note: `the federation checkpointed the model after round ${checkpoint.round}`,
    });

  const previous = new Map((before?.members ?? []).map((m) => [m.id, m]));
  for (const member of after.members ?? []) {
    const was = previous.get(member.id);
    if (member.id !== memberId && was && was.state !== member.state) {
      const warning = ["Stale", "Left", "Refused", "Excluded"].includes(member.state);
      events.push({
        type: warning ? "Warning" : "Normal",
        reason: `Member${member.state}`,
        action: "Observe",
        note: `member ${member.id} is ${member.state}${member.reason ? `: ${member.reason}` : ""}`,
      });
    }
    const dropped = (member.updatesDropped ?? 0) - (was?.updatesDropped ?? 0);
    if (was && dropped > 0)
      events.push({
        type: "Warning",
        reason: "UpdatesDropped",
        action: "Aggregate",
        note: `the norm bound dropped updates of member ${member.id}`,
      });
  }

  const self = after.members?.find((m) => m.id === memberId);
  const selfBefore = memberId ? previous.get(memberId) : undefined;
  if (
    self &&
    selfBefore &&
    (after.round ?? 0) > (before?.round ?? 0) &&
    (self.roundsContributed ?? 0) === (selfBefore.roundsContributed ?? 0) &&
    after.phase === "Training"
  )
    events.push({
      type: "Warning",
      reason: "RoundWithoutMember",
      action: "Commit",
      note: "a round was committed without this member's update",
    });
  return events;
}
