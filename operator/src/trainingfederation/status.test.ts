import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { V1Job } from "@kubernetes/client-node";
import type { TrainingFederation } from "../../../core/api/index.js";
import { federation } from "../../../test/fixtures/federation.js";
import { assess, nextStatus, type Observation, statusChanged } from "./status.js";

const member = (replicas = 2, suspend = false): TrainingFederation =>
  federation().generation(3).replicas(replicas).rounds(50).suspended(suspend).build();

const job = (ready: number, condition?: string): V1Job => ({
  status: {
    ready,
    conditions: condition
      ? [{ type: condition, status: "True", message: `${condition} because` } as never]
      : [],
  },
});
const valid: Observation = { invalid: [], federationSpecHash: "sha256:x", publicKey: "k" };

describe("assess", () => {
  const cases: [string, TrainingFederation, Observation, string, string, string][] = [
    ["invalid spec", member(), { ...valid, invalid: ["bad"] }, "Invalid", "False", "InvalidSpec"],
    [
      "key unavailable",
      member(),
      { ...valid, keyProblem: "no key" },
      "Invalid",
      "False",
      "MemberKeyUnavailable",
    ],
    ["suspended", member(2, true), { ...valid, job: job(0) }, "Suspended", "False", "Suspended"],
    ["no Job yet", member(), valid, "Pending", "False", "TrainersNotReady"],
    ["some ready", member(), { ...valid, job: job(1) }, "Training", "False", "TrainersNotReady"],
    ["all ready", member(), { ...valid, job: job(2) }, "Training", "True", "Ready"],
    ["zero replicas", member(0), { ...valid, job: job(0) }, "Pending", "True", "Ready"],
    [
      "Job failed",
      member(),
      { ...valid, job: job(0, "Failed") },
      "Failed",
      "False",
      "TrainersFailed",
    ],
    ["Job complete", member(), { ...valid, job: job(0, "Complete") }, "Completed", "True", "Ready"],
  ];
  for (const [name, tf, observation, phase, ready, reason] of cases) {
    test(name, () => {
      const result = assess(tf, observation);
      assert.equal(result.phase, phase);
      const readyCondition = result.conditions.find((c) => c.type === "Ready");
      assert.equal(readyCondition?.status, ready);
      assert.equal(readyCondition?.reason, reason);
    });
  }
});

describe("nextStatus", () => {
  const now = new Date("2026-11-26T10:00:00Z");
  const later = new Date("2026-11-26T11:00:00Z");

  test("fills the operator's fields and keeps the federation's", () => {
    const tf = member();
    tf.status = { round: 7, members: [{ id: "birch", state: "Active" }] };
    const status = nextStatus(tf, { ...valid, job: job(2), memberId: "alpine" }, now);
    assert.equal(status.observedGeneration, 3);
    assert.equal(status.round, 7);
    assert.equal(status.members?.[0]?.id, "birch");
    assert.deepEqual(status.trainers, { desired: 2, ready: 2 });
    assert.equal(status.trainersReady, "2/2");
    assert.equal(status.rounds, 50);
    assert.equal(status.memberId, "alpine");
    assert.equal(status.publicKey, "k");
  });

  test("keeps lastTransitionTime while a condition's status holds, and nothing changes", () => {
    const tf = member();
    tf.status = nextStatus(tf, { ...valid, job: job(2) }, now);
    const again = nextStatus(tf, { ...valid, job: job(2) }, later);
    assert.equal(statusChanged(tf.status, again), false);
    const readyAt = (s: typeof again) =>
      s.conditions?.find((c) => c.type === "Ready")?.lastTransitionTime;
    assert.equal(readyAt(again), "2026-11-26T10:00:00Z");
    const degraded = nextStatus(tf, { ...valid, job: job(1) }, later);
    assert.equal(statusChanged(tf.status, degraded), true);
    assert.equal(readyAt(degraded), "2026-11-26T11:00:00Z");
  });

  test("conditions written by others (Joined, Synced) are kept", () => {
    const tf = member();
    tf.status = {
      conditions: [
        {
          type: "Synced",
          status: "True",
          reason: "HashesAgree",
          message: "",
          lastTransitionTime: "2026-11-26T09:00:00Z",
        },
      ],
    };
    const status = nextStatus(tf, { ...valid, job: job(2) }, now);
    assert.ok(status.conditions?.some((c) => c.type === "Synced"));
  });
});
