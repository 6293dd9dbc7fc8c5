// What the finalizer does next for a deleted TrainingFederation, as a pure function of what it
// observes. The member leaves through a short Job that runs the trainer image's `leave` command
// with the mounted member key (desiredLeaveJob), so the operator never reads the key Secret:
// stop the trainers → run the leave Job → remove the finalizer. Deletion never hangs: a failed
// leave Job, or one that has not finished by the deadline, gives up (the record stays).
import type { V1Job } from "@kubernetes/client-node";

/**
 * How long after the deletion request the finalizer waits for the member to leave before it goes
 * anyway: the trainers' 60 s termination grace, then the leave Job's pod start and its 30 s NATS
 * timeout, with room for a retry on a busy cluster.
 */
export const leaveDeadlineMs = 180_000;
// How often to look again while trainers stop or the leave Job runs (Job events also wake it).
const leavePollMs = 5_000;

/** How a member's leaving ended, as counted in fedtrain_operator_deregistrations_total. */
export type LeaveResult = "deregistered" | "skipped" | "failed";

/** The finalizer's next step. */
export type LeaveStep =
  | { action: "remove-finalizer"; result: LeaveResult; reason: string }
  | { action: "stop-trainers" }
  | { action: "start-leave-job" }
  | { action: "wait"; requeueAfterMs: number; reason: string };

/** What the finalizer observes. */
export interface LeaveObservation {
  memberId: string | undefined;
  /** The member has NATS URLs: there is a federation to leave. */
  natsConfigured: boolean;
  /** The member's public key, known once its key Secret was created. */
  publicKey: string | undefined;
  trainerJob: V1Job | undefined;
  leaveJob: V1Job | undefined;
  deletionRequestedAt: Date;
  now: Date;
}

/** The finalizer's next step for a deleted member. */
export function leaveStep(o: LeaveObservation): LeaveStep {
  const skip = (reason: string): LeaveStep => ({
    action: "remove-finalizer",
    result: "skipped",
    reason,
  });
  if (!o.memberId) return skip("no member id: the member never joined");
  if (!o.natsConfigured) return skip("no NATS URL: the member never joined");
  // Without a recorded key the key Secret was never created (or create never finished): the
  // trainers never ran, so there is no record of this member to remove.
  if (!o.publicKey) return skip("no member key was created: the member never joined");
  const finished = jobFinished(o.leaveJob);
  if (finished === "Complete")
    return {
      action: "remove-finalizer",
      result: "deregistered",
      reason: "the leave Job completed",
    };
  if (finished === "Failed")
    return {
      action: "remove-finalizer",
      result: "failed",
      reason: `the leave Job failed: ${failureOf(o.leaveJob)}`,
    };
  const waited = o.now.getTime() - o.deletionRequestedAt.getTime();
  if (waited >= leaveDeadlineMs)
    return {
      action: "remove-finalizer",
      result: "failed",
      reason: `the member did not leave within ${leaveDeadlineMs / 1000} s of the deletion (${o.trainerJob ? "trainers still stopping" : o.leaveJob ? "leave Job still running" : "no leave Job"})`,
    };
  const wait = (reason: string): LeaveStep => ({
    action: "wait",
    requeueAfterMs: Math.min(leavePollMs, leaveDeadlineMs - waited),
    reason,
  });
  // Trainers leave gracefully on SIGTERM; one still running could register the member again.
  if (o.trainerJob)
    return o.trainerJob.metadata?.deletionTimestamp
      ? wait("waiting for the trainers to stop")
      : { action: "stop-trainers" };
  if (!o.leaveJob) return { action: "start-leave-job" };
  return wait("waiting for the leave Job");
}

/** Whether a Job has finished, from its Complete and Failed conditions. */
export function jobFinished(job: V1Job | undefined): "Complete" | "Failed" | undefined {
  for (const c of job?.status?.conditions ?? []) {
    if (c.status !== "True") continue;
    if (c.type === "Complete") return "Complete";
    if (c.type === "Failed") return "Failed";
  }
  return undefined;
}

function failureOf(job: V1Job | undefined): string {
  const failed = job?.status?.conditions?.find((c) => c.type === "Failed" && c.status === "True");
  return [failed?.reason, failed?.message].filter(Boolean).join(": ") || "no reason given";
}
