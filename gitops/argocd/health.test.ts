// The Argo CD health check, run by a real Lua VM (wasmoon: Lua compiled to WebAssembly) on
// TrainingFederation objects in each state the operator writes.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { LuaFactory } from "wasmoon";
import { parse } from "yaml";
import { repoPath } from "../../scripts/repository.js";
import { federation } from "../../test/fixtures/federation.js";

const dir = repoPath("gitops", "argocd");
const script = readFileSync(path.join(dir, "health.lua"), "utf8");
const factory = new LuaFactory();

async function health(obj: unknown): Promise<{ status: string; message: string }> {
  const lua = await factory.createEngine();
  try {
    lua.global.set("obj", obj);
    return (await lua.doString(script)) as { status: string; message: string };
  } finally {
    lua.global.close();
  }
}

const condition = (
  type: string,
  status: string,
  reason: string,
  message = `${type} ${status}`,
) => ({
  type,
  status,
  reason,
  message,
});

const member = (status?: Record<string, unknown>) =>
  federation().generation(2).status(status).build();

const ready = condition("Ready", "True", "Ready", "this member is contributing as specified");
const cases: [string, unknown, string, RegExp][] = [
  ["no status yet", member(), "Progressing", /operator/],
  [
    "an older generation observed",
    member({ observedGeneration: 1, conditions: [ready] }),
    "Progressing",
    /generation 2/,
  ],
  [
    "suspended",
    federation()
      .generation(2)
      .suspended()
      .status({ observedGeneration: 2, phase: "Suspended" })
      .build(),
    "Suspended",
    /suspended/,
  ],
  [
    "invalid spec",
    member({
      observedGeneration: 2,
      phase: "Invalid",
      conditions: [
        condition("Ready", "False", "InvalidSpec"),
        condition("Valid", "False", "InvalidSpec", "no NATS URL"),
      ],
    }),
    "Degraded",
    /no NATS URL/,
  ],
  [
    "trainers failed",
    member({
      observedGeneration: 2,
      phase: "Failed",
      conditions: [condition("Ready", "False", "TrainersFailed", "BackoffLimitExceeded")],
    }),
    "Degraded",
    /BackoffLimitExceeded/,
  ],
  [
    "refused by the federation",
    member({
      observedGeneration: 2,
      phase: "Training",
      conditions: [
        ready,
        condition("Joined", "False", "SpecHashMismatch", "spec.federation differs"),
      ],
    }),
    "Degraded",
    /differs/,
  ],
  [
    "not registered yet",
    member({
      observedGeneration: 2,
      phase: "Pending",
      conditions: [
        condition("Ready", "False", "TrainersNotReady", "0/2 trainers ready"),
        condition("Joined", "False", "NotRegistered"),
      ],
    }),
    "Progressing",
    /0\/2 trainers ready/,
  ],
  [
    "degraded federation",
    member({
      observedGeneration: 2,
      phase: "Training",
      conditions: [
        ready,
        condition("Degraded", "True", "QuorumNotMet", "round 7 retried: 1 of 2 members"),
      ],
    }),
    "Degraded",
    /round 7 retried/,
  ],
  [
    "trainers starting",
    member({
      observedGeneration: 2,
      phase: "Pending",
      conditions: [condition("Ready", "False", "TrainersNotReady", "1/2 trainers ready")],
    }),
    "Progressing",
    /1\/2/,
  ],
  [
    "ready",
    member({ observedGeneration: 2, phase: "Training", conditions: [ready] }),
    "Healthy",
    /contributing/,
  ],
  [
    "completed",
    member({ observedGeneration: 2, phase: "Completed", conditions: [ready] }),
    "Healthy",
    /contributing/,
  ],
];

describe("Argo CD health check", () => {
  for (const [name, obj, status, message] of cases) {
    test(name, async () => {
      const hs = await health(obj);
      assert.equal(hs.status, status);
      assert.match(hs.message, message);
    });
  }

  test("the argocd-cm patch carries exactly this script", () => {
    const patch = parse(readFileSync(path.join(dir, "argocd-cm-patch.yaml"), "utf8"));
    assert.equal(
      patch.data["resource.customizations.health.fedtrain.dev_TrainingFederation"],
      script,
    );
  });
});
