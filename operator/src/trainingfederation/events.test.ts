import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { TrainingFederationStatus } from "../../../core/api/index.js";
import { statusEvents } from "./events.js";

const at = "2026-12-04T00:00:00Z";
const condition = (
  type: string,
  status: "True" | "False" | "Unknown",
  reason: string,
  message = reason,
) => ({
  type,
  status,
  reason,
  message,
  lastTransitionTime: at,
});

function status(change: Partial<TrainingFederationStatus> = {}): TrainingFederationStatus {
  return {
    phase: "Training",
    round: 3,
    conditions: [
      condition("Valid", "True", "Valid"),
      condition("Joined", "True", "Admitted", "member alpine is admitted"),
      condition("TrainersReady", "True", "AllTrainersReady"),
    ],
    members: [
      { id: "alpine", state: "Active", roundsContributed: 3 },
      { id: "birch", state: "Active", roundsContributed: 3, updatesDropped: 0 },
    ],
    ...change,
  } as TrainingFederationStatus;
}

const reasons = (before: TrainingFederationStatus | undefined, after: TrainingFederationStatus) =>
  statusEvents(before, after, "alpine").map((e) => `${e.type}/${e.reason}`);

describe("Events from status changes", () => {
  test("nothing changed, nothing recorded (a restarted operator records nothing again)", () => {
    assert.deepEqual(reasons(status(), status()), []);
  });

  test("joining, then a spec-hash mismatch", () => {
    const before = status({ conditions: [condition("Joined", "False", "NotRegistered")] });
    assert.deepEqual(reasons(before, status()), ["Normal/Joined"]);
    const mismatch = status({
      conditions: [condition("Joined", "False", "SpecHashMismatch", "spec hash differs")],
    });
    assert.deepEqual(reasons(status(), mismatch), ["Warning/SpecHashMismatch"]);
  });

  test("suspend, resume, a failed trainer, a refused spec, a checkpoint", () => {
    assert.deepEqual(reasons(status(), status({ phase: "Suspended" })), ["Normal/Suspended"]);
    assert.deepEqual(reasons(status({ phase: "Suspended" }), status()), ["Normal/Resumed"]);
    const failed = status({
      phase: "Failed",
      conditions: [
        condition("TrainersFailed", "False", "x"),
        condition("TrainersReady", "False", "TrainersFailed"),
      ],
    });
    assert.deepEqual(reasons(status(), failed), ["Warning/TrainersFailed"]);
    const refused = status({
      phase: "Invalid",
      conditions: [condition("Valid", "False", "PolicyRefused", "image not allowed")],
    });
    assert.deepEqual(reasons(status(), refused), ["Warning/PolicyRefused"]);
    const checkpoint = status({ lastCheckpoint: { round: 4, digest: "d", size: 1 } } as never);
    assert.deepEqual(reasons(status(), checkpoint), ["Normal/CheckpointWritten"]);
  });

  test("another member leaves, its updates are dropped, and a round is committed without us", () => {
    const after = status({
      round: 4,
      members: [
        { id: "alpine", state: "Active", roundsContributed: 3 },
        { id: "birch", state: "Left", roundsContributed: 4, updatesDropped: 2 },
      ] as never,
    });
    assert.deepEqual(reasons(status(), after), [
      "Warning/MemberLeft",
      "Warning/UpdatesDropped",
      "Warning/RoundWithoutMember",
    ]);
  });
});
