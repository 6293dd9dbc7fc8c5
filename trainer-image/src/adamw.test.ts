import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type AdamWConfig, learningRateAt } from "./adamw.js";

const base: AdamWConfig = {
  learningRate: 1,
  weightDecay: 0,
  warmupSteps: 10,
  beta1: 0.9,
  beta2: 0.95,
  totalSteps: 110,
  finalLearningRateRatio: 0.1,
};

describe("learningRateAt", () => {
  const cases: [string, Partial<AdamWConfig>, number, number][] = [
    ["warm-up starts at peak / warmupSteps", {}, 0, 0.1],
    ["warm-up reaches the peak on its last step", {}, 9, 1],
    ["cosine starts at the peak", { schedule: "cosine" }, 10, 1],
    ["cosine is halfway down at mid-decay", { schedule: "cosine" }, 60, 0.55],
    ["cosine ends at the final ratio", { schedule: "cosine" }, 110, 0.1],
    ["cosine stays at the final ratio after the run", { schedule: "cosine" }, 500, 0.1],
    ["linear is halfway down at mid-decay", { schedule: "linear" }, 60, 0.55],
    ["linear at a quarter", { schedule: "linear" }, 35, 0.775],
    ["constant after warm-up", { schedule: "constant" }, 100, 1],
    ["no schedule means constant", {}, 100, 1],
    ["no warm-up: step 0 at the peak", { schedule: "cosine", warmupSteps: 0 }, 0, 1],
  ];
  for (const [name, override, step, expected] of cases) {
    it(name, () => {
      assert.ok(Math.abs(learningRateAt({ ...base, ...override }, step) - expected) < 1e-12);
    });
  }
});
