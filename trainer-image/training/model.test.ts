import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { before, describe, it } from "node:test";
import { promisify } from "node:util";
import * as tf from "@tensorflow/tfjs";
import { mlpDefinition } from "../../test/fixtures/diloco.js";
import { initBackend } from "./backend.js";
import { arithmetic, BatchSampler, gaussianClusters } from "./data.js";
import { parameterHash } from "./diloco.js";
import {
  initialParameters,
  Model,
  type ModelDefinition,
  parameterCount,
  parameterLayout,
} from "./model.js";

const mlp: ModelDefinition = mlpDefinition(6, 3, [8, 5], "GELU");
const transformer: ModelDefinition = {
  kind: "transformer",
  vocabularySize: 14,
  layers: 2,
  modelWidth: 16,
  heads: 2,
  contextLength: 8,
  feedForwardMultiplier: 2,
};

describe("model", () => {
  before(async () => {
    await initBackend("WASM", { log: () => {} });
  });

  it("lays parameters out in a fixed order with the expected sizes", () => {
    const layout = parameterLayout(mlp);
    assert.deepEqual(
      layout.map((p) => p.name),
      [
        "dense0/kernel",
        "dense0/bias",
        "dense1/kernel",
        "dense1/bias",
        "dense2/kernel",
        "dense2/bias",
      ],
    );
    assert.equal(parameterCount(layout), 6 * 8 + 8 + 8 * 5 + 5 + 5 * 3 + 3);
    // Tied embedding: no separate output matrix.
    const d = 16;
    const perBlock = 4 * d + 3 * d * d + 3 * d + d * d + d + 2 * d * d + 2 * d + 2 * d * d + d;
    assert.equal(
      parameterCount(parameterLayout(transformer)),
      14 * d + 8 * d + 2 * perBlock + 2 * d,
    );
    assert.throws(() => parameterLayout({ ...transformer, heads: 3 }), /multiple of heads/);
  });

  it("initialises bit-identically from the seed, in this process and another", async () => {
    for (const definition of [mlp, transformer]) {
      const a = initialParameters(definition, 11);
      assert.equal(parameterHash(a), parameterHash(initialParameters(definition, 11)));
      assert.notEqual(parameterHash(a), parameterHash(initialParameters(definition, 12)));
    }
    const script = `import { initialParameters } from ${JSON.stringify(new URL("./model.js", import.meta.url).href)};
import { parameterHash } from ${JSON.stringify(new URL("./diloco.js", import.meta.url).href)};
console.log(parameterHash(initialParameters(${JSON.stringify(transformer)}, 11)));`;
    const { stdout } = await promisify(execFile)(process.execPath, [
      "--input-type=module",
      "-e",
      script,
    ]);
    assert.equal(stdout.trim(), parameterHash(initialParameters(transformer, 11)));
  });

  it("holds exactly the written parameters on the backend", async () => {
    const initial = initialParameters(transformer, 3);
    const model = new Model(transformer, initial);
    assert.equal(parameterHash(await model.readParameters()), parameterHash(initial));
    const other = initialParameters(transformer, 4);
    model.writeParameters(other);
    assert.equal(parameterHash(await model.readParameters()), parameterHash(other));
    model.dispose();
  });

  it("starts near the uniform loss and has a gradient for every parameter", async () => {
    const { train } = arithmetic(
      1,
      { trainExamples: 200, evalExamples: 10, maxOperand: 9 },
      {
        workerIndex: 0,
        workerCount: 1,
        strategy: "IID",
        concentration: 1,
      },
    );
    const model = new Model(transformer, initialParameters(transformer, 1));
    const batch = new BatchSampler(train, 4, 1, 0, 8).next();
    const { value, grads } = tf.variableGrads(() => model.loss(batch), model.variables);
    const loss = value.dataSync()[0]!;
    assert.ok(Math.abs(loss - Math.log(14)) < 0.2, `initial loss ${loss}`);
    for (const variable of model.variables) {
      const norm = tf.norm(grads[variable.name]!).dataSync()[0]!;
      assert.ok(norm > 0 && Number.isFinite(norm), `${variable.name} gradient norm ${norm}`);
    }
    tf.dispose([value, ...Object.values(grads)]);
    const classifier = new Model(mlp, initialParameters(mlp, 1));
    const data = gaussianClusters(
      1,
      { trainExamples: 50, evalExamples: 10, features: 6, classes: 3, noise: 1 },
      {
        workerIndex: 0,
        workerCount: 1,
        strategy: "IID",
        concentration: 1,
      },
    );
    const mlpLoss = await classifier.evaluate([new BatchSampler(data.train, 16, 1, 0).next()]);
    assert.ok(mlpLoss > 0.5 && mlpLoss < 3, `initial MLP loss ${mlpLoss}`);
    model.dispose();
    classifier.dispose();
  });
});
