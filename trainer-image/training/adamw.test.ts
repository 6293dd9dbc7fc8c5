import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { mlpDefinition } from "../../test/fixtures/diloco.js";
import { AdamW, type AdamWConfig, learningRateAt } from "./adamw.js";
import { initBackend } from "./backend.js";
import type { Batch } from "./data.js";
import { parameterHash } from "./diloco.js";
import { fusedKernelsAvailable, withoutFusedKernels } from "./fused-kernels.js";
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

describe("AdamW as one flat update", () => {
  const config: AdamWConfig = {
    ...base,
    learningRate: 0.05,
    weightDecay: 0.1,
    warmupSteps: 2,
    schedule: "cosine",
  };
  const mlp = mlpDefinition(3, 2, [4, 5], "GELU");
  const transformer: ModelDefinition = {
    kind: "transformer",
    vocabularySize: 7,
    layers: 1,
    modelWidth: 8,
    heads: 2,
    contextLength: 4,
    feedForwardMultiplier: 2,
  };
  const batchFor = (definition: ModelDefinition, step: number): Batch =>
    definition.kind === "mlp"
      ? {
          kind: "classification",
          size: 4,
          features: Float32Array.from({ length: 12 }, (_, i) => Math.sin(step + i)),
          labels: Int32Array.of(0, 1, step % 2, 1),
        }
      : {
          kind: "text",
          size: 2,
          length: 4,
          inputs: Int32Array.from({ length: 8 }, (_, i) => (step + i * 3) % 7),
          targets: Int32Array.from({ length: 8 }, (_, i) => (step + i * 5 + 1) % 7),
        };

  before(async () => {
    await initBackend("JS", { log: () => {} });
  });

  /**
   * AdamW written per variable, as the trainer ran it before the flat update: the unfused form
   * the flat one must reproduce.
   */
  function perVariableSteps(model: Model, definition: ModelDefinition, steps: number) {
    const { beta1, beta2, weightDecay } = config;
    const m = model.variables.map((v) => tf.variable(tf.zerosLike(v), false));
    const v2 = model.variables.map((v) => tf.variable(tf.zerosLike(v), false));
    for (let step = 0; step < steps; step++) {
      const lr = learningRateAt(config, step);
      const t = step + 1;
      const stepSize = (lr * Math.sqrt(1 - beta2 ** t)) / (1 - beta1 ** t);
      tf.tidy(() => {
        const batch = batchFor(definition, step);
        const { gradients } = model.lossAndGradients(batch);
        model.variables.forEach((variable, i) => {
          const g = gradients[i]!;
          const newM = tf.add(tf.mul(m[i]!, beta1), tf.mul(g, 1 - beta1));
          const newV = tf.add(tf.mul(v2[i]!, beta2), tf.mul(tf.square(g), 1 - beta2));
          m[i]!.assign(newM);
          v2[i]!.assign(newV);
          let update = tf.mul(tf.div(newM, tf.add(tf.sqrt(newV), 1e-8)), stepSize);
          if (weightDecay > 0 && model.layout[i]!.decay)
            update = tf.add(update, tf.mul(variable, lr * weightDecay));
          variable.assign(tf.sub(variable, update));
        });
      });
    }
    const flat = (moments: tf.Variable[]) => {
      const out = new Float32Array(model.size);
      model.layout.forEach((spec, i) => {
        out.set(moments[i]!.dataSync(), spec.offset);
      });
      return out;
    };
    const result = { firstMoment: flat(m), secondMoment: flat(v2) };
    for (const each of [...m, ...v2]) each.dispose();
    return result;
  }

  // Both update paths: the fused AdamW kernel (this backend has it) and the flat update of tfjs
  // ops that backends without fused kernels run.
  for (const definition of [mlp, transformer])
    for (const path of ["fused kernel", "tfjs ops"] as const)
      it(`gives the per-variable result bit for bit (${definition.kind}, ${path})`, () =>
        path === "fused kernel"
          ? matchesPerVariable(definition, true)
          : withoutFusedKernels(() => matchesPerVariable(definition, false)));

  async function matchesPerVariable(definition: ModelDefinition, fused: boolean): Promise<void> {
    assert.ok(
      parameterLayoutHasBoth(definition),
      "the model has parameters with and without weight decay",
    );
    const initial = initialParameters(definition, 5);
    assert.equal(fusedKernelsAvailable(), fused, "the path under test is the one that runs");
    const reference = new Model(definition, initial);
    const moments = perVariableSteps(reference, definition, 4);
    const model = new Model(definition, initial);
    const optimizer = new AdamW(model, config);
    for (let step = 0; step < 4; step++) await optimizer.step(batchFor(definition, step), false);
    const state = await optimizer.readState();
    assert.deepEqual(await model.readParameters(), await reference.readParameters());
    assert.deepEqual(state.firstMoment, moments.firstMoment);
    assert.deepEqual(state.secondMoment, moments.secondMoment);
    for (const each of [optimizer, model, reference]) each.dispose();
  }

  function parameterLayoutHasBoth(definition: ModelDefinition): boolean {
    const layout = new Model(definition, initialParameters(definition, 5));
    const both =
      layout.layout.some((spec) => spec.decay) && layout.layout.some((spec) => !spec.decay);
    layout.dispose();
    return both;
  }
});
