// A TrainingFederation's status, derived from what was observed (never used as memory): pure
// functions, so every rule is unit-tested without a cluster.
import type { V1Job } from "@kubernetes/client-node";
import type {
  Condition,
  TrainingFederation,
  TrainingFederationStatus,
} from "../../../core/api/index.js";
import { canonicalJson } from "../../../core/api/index.js";
import { apiTime } from "../../../core/api/time.js";
import {
  type FederationFields,
  type FederationObservation,
  federationStatus,
} from "./federation-status.js";

/** What one reconcile observed, as input to the status. */
export interface Observation {
  /** Problems semantic validation found; empty when the spec is usable. */
  invalid: string[];
  /** What the cluster admin's policy refuses (policy.ts); empty or absent when it allows all. */
  refused?: string[];
  /** The member's public key, once known. */
  publicKey?: string;
  /** The member id, when one could be determined. */
  memberId?: string;
  federationSpecHash: string;
  /** The trainer Job, if it exists. */
  job?: V1Job;
  /** Why the member key is not available, when it is not. */
  keyProblem?: string;
  /** What NATS said about the federation; absent when it was not asked (invalid spec). */
  federation?: FederationObservation;
}

type Phase = NonNullable<TrainingFederationStatus["phase"]>;
type ConditionInput = Pick<Condition, "type" | "status" | "reason" | "message">;

function jobCondition(job: V1Job | undefined, type: string) {
  return job?.status?.conditions?.find((c) => c.type === type && c.status === "True");
}

/** The trainers this member wants running now. */
export function desiredTrainers(tf: TrainingFederation): number {
  return tf.spec.suspend ? 0 : tf.spec.contribution.replicas;
}

/** The conditions and phase that follow from an observation. */
export function assess(
  tf: TrainingFederation,
  observation: Observation,
): {
  phase: Phase;
  conditions: ConditionInput[];
  ready: number;
  federationFields?: FederationFields;
} {
  const desired = desiredTrainers(tf);
  const job = observation.job;
  const ready = Math.min(job?.status?.ready ?? 0, desired);
  const valid: ConditionInput = observation.invalid.length
    ? {
        type: "Valid",
        status: "False",
        reason: "InvalidSpec",
        message: observation.invalid.join("; "),
      }
    : observation.refused?.length
      ? {
          type: "Valid",
          status: "False",
          reason: "PolicyRefused",
          message: observation.refused.join("; "),
        }
      : observation.keyProblem
        ? {
            type: "Valid",
            status: "False",
            reason: "MemberKeyUnavailable",
            message: observation.keyProblem,
          }
        : {
            type: "Valid",
            status: "True",
            reason: "Valid",
            message: "the spec is valid for this member",
          };

  const failed = jobCondition(job, "Failed");
  const complete = jobCondition(job, "Complete");
  let trainers: ConditionInput;
  let phase: Phase;
  if (valid.status === "False") {
    trainers = {
      type: "TrainersReady",
      status: "False",
      reason: valid.reason === "PolicyRefused" ? "PolicyRefused" : "InvalidSpec",
      message:
        valid.reason === "PolicyRefused"
          ? "no trainers run while the cluster admin's policy refuses the spec"
          : "no trainers run while the spec is invalid",
    };
    phase = "Invalid";
  } else if (tf.spec.suspend) {
    trainers = {
      type: "TrainersReady",
      status: "False",
      reason: "Suspended",
      message: "spec.suspend is true: this member's trainers are stopped",
    };
    phase = "Suspended";
  } else if (tf.spec.contribution.queueName && jobCondition(job, "Suspended")) {
    trainers = {
      type: "TrainersReady",
      status: "False",
      reason: "Queued",
      message: `waiting for Kueue to admit the trainer Job from LocalQueue ${tf.spec.contribution.queueName}`,
    };
    phase = "Pending";
  } else if (failed) {
    trainers = {
      type: "TrainersReady",
      status: "False",
      reason: "TrainersFailed",
      message: failed.message ?? failed.reason ?? "the trainer Job failed",
    };
    phase = "Failed";
  } else if (complete) {
    trainers = {
      type: "TrainersReady",
      status: "True",
      reason: "TrainingComplete",
      message: "every trainer finished the run",
    };
    phase = "Completed";
  } else if (desired === 0) {
    trainers = {
      type: "TrainersReady",
      status: "True",
      reason: "NoTrainersRequested",
      message: "spec.contribution.replicas is 0: this member contributes no trainers",
    };
    phase = "Pending";
  } else if (ready >= desired) {
    trainers = {
      type: "TrainersReady",
      status: "True",
      reason: "AllTrainersReady",
      message: `${ready}/${desired} trainers ready`,
    };
    phase = "Training";
  } else {
    trainers = {
      type: "TrainersReady",
      status: "False",
      reason: "TrainersNotReady",
      message: `${ready}/${desired} trainers ready`,
    };
    phase = ready > 0 ? "Training" : "Pending";
  }
  const federation =
    observation.federation && observation.memberId
      ? federationStatus(
          tf,
          {
            memberId: observation.memberId,
            publicKey: observation.publicKey,
            federationSpecHash: observation.federationSpecHash,
          },
          observation.federation,
        )
      : undefined;
  const joined = federation?.conditions.find((c) => c.type === "Joined");
  // Trainers register their member: a member that runs none cannot have registered yet, and is
  // as specified all the same.
  const waitingForTrainers = joined?.reason === "NotRegistered" && desiredTrainers(tf) === 0;
  const blocking = [valid, trainers, waitingForTrainers ? undefined : joined].find(
    (c) => c?.status === "False",
  );
  const readyCondition: ConditionInput = blocking
    ? { type: "Ready", status: "False", reason: blocking.reason, message: blocking.message }
    : {
        type: "Ready",
        status: "True",
        reason: "Ready",
        message: "this member is contributing as specified",
      };
  return {
    phase,
    conditions: [readyCondition, valid, trainers, ...(federation?.conditions ?? [])],
    ready,
    federationFields: federation?.fields,
  };
}

const federationFieldNames: (keyof FederationFields)[] = [
  "round",
  "progress",
  "activeMembers",
  "members",
  "loss",
  "lastCheckpoint",
  "evalLoss",
  "bytesSentPerRound",
  "compressionRatio",
];

/**
 * The status to write: the operator's fields from the observation, the federation fields (round,
 * members, loss, …) from the federation's view (kept from the current status when NATS was not
 * read or did not answer), and each condition's lastTransitionTime kept unless its status changed.
 */
export function nextStatus(
  tf: TrainingFederation,
  observation: Observation,
  now: Date,
): TrainingFederationStatus {
  const current: TrainingFederationStatus = { ...tf.status };
  const { phase, conditions, ready, federationFields } = assess(tf, observation);
  if (federationFields) {
    for (const name of federationFieldNames) delete current[name];
    Object.assign(current, federationFields);
  }
  const desired = desiredTrainers(tf);
  const managed = new Set(conditions.map((c) => c.type));
  const merged: Condition[] = [
    ...conditions.map((c) => {
      const before = current.conditions?.find((b) => b.type === c.type);
      const unchanged = before && before.status === c.status;
      return {
        ...c,
        observedGeneration: tf.metadata?.generation,
        lastTransitionTime: unchanged ? before.lastTransitionTime : apiTime(now),
      } as Condition;
    }),
    // Conditions of the federation's view not decided this time (NATS not read) stay as they are.
    ...(current.conditions ?? []).filter((c) => !managed.has(c.type)),
  ];
  const status: TrainingFederationStatus = {
    ...current,
    observedGeneration: tf.metadata?.generation,
    conditions: merged,
    phase,
    federationSpecHash: observation.federationSpecHash,
    rounds: tf.spec.federation.training.rounds,
    trainers: { desired, ready },
    trainersReady: `${ready}/${desired}`,
  };
  if (observation.publicKey) status.publicKey = observation.publicKey;
  if (observation.memberId) status.memberId = observation.memberId;
  return status;
}

/**
 * The body of a JSON merge patch from `before` to `after`: a merge patch keeps fields it does not
 * name, so each top-level field that went away (a loss no longer reported) is sent as null.
 */
export function statusPatch(
  before: TrainingFederationStatus | undefined,
  after: TrainingFederationStatus,
): Record<string, unknown> {
  const patch: Record<string, unknown> = { ...after };
  for (const key of Object.keys(before ?? {})) if (!(key in after)) patch[key] = null;
  return patch;
}

/** Whether two statuses differ in anything but representation (key order, time formats). */
export function statusChanged(
  before: TrainingFederationStatus | undefined,
  after: TrainingFederationStatus,
): boolean {
  const normalise = (s: TrainingFederationStatus | undefined) =>
    canonicalJson(
      JSON.parse(
        JSON.stringify(s ?? {}, (key, value) =>
          key === "lastTransitionTime" && value ? apiTime(new Date(value)) : value,
        ),
      ),
    );
  return normalise(before) !== normalise(after);
}
