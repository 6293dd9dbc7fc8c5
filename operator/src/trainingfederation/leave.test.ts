import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { V1Job } from "@kubernetes/client-node";
import { type LeaveObservation, type LeaveStep, leaveDeadlineMs, leaveStep } from "./leave.js";

const deletedAt = new Date("2026-01-01T00:00:00Z");
const after = (ms: number) => new Date(deletedAt.getTime() + ms);

function observation(overrides: Partial<LeaveObservation> = {}): LeaveObservation {
  return {
    memberId: "alpine",
    natsConfigured: true,
    publicKey: "cHVibGlj",
    trainerJob: undefined,
    leaveJob: undefined,
    deletionRequestedAt: deletedAt,
    now: after(1_000),
    ...overrides,
  };
}

const job = (conditions: { type: string; status: string; reason?: string }[] = []): V1Job => ({
  metadata: { name: "arith-leave" },
  status: { conditions: conditions.map((c) => ({ ...c, lastTransitionTime: deletedAt })) },
});
const deleting: V1Job = { metadata: { name: "arith-trainers", deletionTimestamp: deletedAt } };

describe("the finalizer's next step", () => {
  const cases: [string, Partial<LeaveObservation>, Partial<LeaveStep>][] = [
    ["no member id", { memberId: undefined }, { action: "remove-finalizer", result: "skipped" }],
    ["no NATS", { natsConfigured: false }, { action: "remove-finalizer", result: "skipped" }],
    [
      "no key was ever created (a create that never finished)",
      { publicKey: undefined, trainerJob: job() },
      { action: "remove-finalizer", result: "skipped" },
    ],
    ["trainers running: stop them first", { trainerJob: job() }, { action: "stop-trainers" }],
    ["trainers stopping: wait", { trainerJob: deleting }, { action: "wait" }],
    ["trainers gone, no leave Job: start it", {}, { action: "start-leave-job" }],
    ["leave Job running: wait", { leaveJob: job() }, { action: "wait" }],
    [
      "leave Job complete: done",
      { leaveJob: job([{ type: "Complete", status: "True" }]) },
      { action: "remove-finalizer", result: "deregistered" },
    ],
    [
      "leave Job failed: give up",
      { leaveJob: job([{ type: "Failed", status: "True", reason: "BackoffLimitExceeded" }]) },
      { action: "remove-finalizer", result: "failed" },
    ],
    [
      "past the deadline with the leave Job running: give up",
      { leaveJob: job(), now: after(leaveDeadlineMs) },
      { action: "remove-finalizer", result: "failed" },
    ],
    [
      "past the deadline with trainers still stopping: give up",
      { trainerJob: deleting, now: after(leaveDeadlineMs + 1) },
      { action: "remove-finalizer", result: "failed" },
    ],
    [
      "a completed leave Job wins over the deadline",
      { leaveJob: job([{ type: "Complete", status: "True" }]), now: after(2 * leaveDeadlineMs) },
      { action: "remove-finalizer", result: "deregistered" },
    ],
  ];
  for (const [name, overrides, expected] of cases)
    test(name, () => {
      const step = leaveStep(observation(overrides));
      for (const [key, value] of Object.entries(expected))
        assert.equal((step as Record<string, unknown>)[key], value, JSON.stringify(step));
    });

  test("a failure names the Job's reason; waits never run past the deadline", () => {
    const failed = leaveStep(
      observation({
        leaveJob: job([{ type: "Failed", status: "True", reason: "DeadlineExceeded" }]),
      }),
    );
    assert.match(failed.action === "remove-finalizer" ? failed.reason : "", /DeadlineExceeded/);
    const late = leaveStep(observation({ leaveJob: job(), now: after(leaveDeadlineMs - 200) }));
    assert.deepEqual(late.action === "wait" && late.requeueAfterMs, 200);
  });
});
