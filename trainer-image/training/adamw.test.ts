import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import { mlpDefinition } from "../../test/fixtures/diloco.js";
import { AdamW, type AdamWConfig, learningRateAt } from "./adamw.js";
import { initBackend } from "./backend.js";
import type { Batch } from "./data.js";
import { parameterHash } from "./diloco.js";
import { initialParameters, Model, type ModelDefinition } from "./model.js";

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

describe("AdamW state", () => {
  const definition: ModelDefinition = mlpDefinition(3, 2, [4], "Tanh");
  const config: AdamWConfig = { ...base, learningRate: 0.05, weightDecay: 0.1, warmupSteps: 2 };
  const batch = (step: number): Batch => ({
    kind: "classification",
    size: 4,
    features: Float32Array.from({ length: 12 }, (_, i) => Math.sin(step + i)),
    labels: Int32Array.of(0, 1, step % 2, 1),
  });

  before(async () => {
    await initBackend("JS", { log: () => {} });
  });

  /** A model and its optimiser after `steps` steps from the seed's weights. */
  async function trained(steps: number): Promise<{ model: Model; optimizer: AdamW }> {
    const model = new Model(definition, initialParameters(definition, 3));
    const optimizer = new AdamW(model, { ...config, schedule: "cosine" });
    for (let step = 0; step < steps; step++) await optimizer.step(batch(step), false);
    return { model, optimizer };
  }

  it("reads its state back and continues bit for bit in another optimiser", async () => {
    const original = await trained(3);
    const state = await original.optimizer.readState();
    assert.equal(state.stepCount, 3);
    assert.equal(state.firstMoment.length, original.model.size);
    assert.ok(state.secondMoment.every((v) => v >= 0));
    assert.ok(state.firstMoment.some((v) => v !== 0));

    const model = new Model(definition, await original.model.readParameters());
    const copy = new AdamW(model, { ...config, schedule: "cosine" });
    copy.writeState(state);
    assert.deepEqual(await copy.readState(), state);
    for (let step = 3; step < 6; step++) {
      await original.optimizer.step(batch(step), false);
      await copy.step(batch(step), false);
    }
    assert.equal(
      parameterHash(await model.readParameters()),
      parameterHash(await original.model.readParameters()),
    );
    for (const each of [original.optimizer, original.model, copy, model]) each.dispose();
  });

  it("takes the learning rate of scheduleStep, not of its own step count", async () => {
    // Adam's first step moves each parameter by about lr (m / √v = ±1), so the largest change
    // of a fresh optimiser's first step tells which learning rate it used.
    const firstStepChange = async (scheduleStep?: number): Promise<number> => {
      const initial = initialParameters(definition, 3);
      const model = new Model(definition, initial);
      const optimizer = new AdamW(model, { ...config, weightDecay: 0, schedule: "cosine" });
      await optimizer.step(batch(0), false, scheduleStep);
      const after = await model.readParameters();
      for (const each of [optimizer, model]) each.dispose();
      return Math.max(...after.map((v, i) => Math.abs(v - initial[i]!)));
    };
    const expectations: [number | undefined, number][] = [
      [undefined, learningRateAt({ ...config, schedule: "cosine" }, 0)],
      [60, learningRateAt({ ...config, schedule: "cosine" }, 60)],
      [500, learningRateAt({ ...config, schedule: "cosine" }, 500)],
    ];
    for (const [scheduleStep, lr] of expectations) {
      const change = await firstStepChange(scheduleStep);
      assert.ok(Math.abs(change - lr) < 0.01 * lr, `step ${scheduleStep}: ${change} vs lr ${lr}`);
    }
  });

  it("keeps a snapshot as it was while the optimiser steps on", async () => {
    const { model, optimizer } = await trained(2);
    const before = await optimizer.readState();
    const snapshot = optimizer.snapshot();
    await optimizer.step(batch(2), false);
    const after = await optimizer.readState();
    assert.notDeepEqual(after.firstMoment, before.firstMoment);
    const clone = snapshot.clone();
    snapshot.dispose();
    assert.deepEqual(await clone.read(), before);
    clone.dispose();
    optimizer.dispose();
    model.dispose();
  });

  it("refuses a state of another model size or step count, unchanged", async () => {
    const { model, optimizer } = await trained(1);
    const state = await optimizer.readState();
    const short = { ...state, secondMoment: state.secondMoment.subarray(1) };
    assert.throws(() => optimizer.writeState(short), /second moment of \d+ values for a model of/);
    assert.throws(() => optimizer.writeState({ ...state, stepCount: -1 }), /step count -1/);
    assert.deepEqual(await optimizer.readState(), state);
    optimizer.dispose();
    model.dispose();
  });
});
