import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { mlpDefinition } from "../../test/fixtures/diloco.js";
import { initBackend } from "./backend.js";
import type { Batch } from "./data.js";
import * as fused from "./fused-kernels.js";
import type { AttentionShape } from "./kernel-math.js";
import {
  activate,
  attention,
  crossEntropy,
  initialParameters,
  layerNorm,
  Model,
  type ModelDefinition,
} from "./model.js";
import { Random } from "./prng.js";

/** Uniform values in ±scale from a seeded stream. */
function values(count: number, seed: number, scale = 1): Float32Array {
  const random = new Random(seed, "fused-test");
  return Float32Array.from({ length: count }, () => (2 * random.uniform() - 1) * scale);
}

function randomTensor(shape: number[], seed: number, scale = 1): tf.Tensor {
  return tf.tensor(
    values(
      shape.reduce((a, b) => a * b, 1),
      seed,
      scale,
    ),
    shape,
  );
}

/**
 * Asserts that two tensors agree within float32 tolerance, relative to the reference's largest
 * magnitude, and that the reference is not all zeros (a comparison of zeros proves nothing).
 */
function assertClose(actual: tf.Tensor, expected: tf.Tensor, what: string, tolerance = 2e-5) {
  assert.deepEqual(actual.shape, expected.shape, `${what}: shape`);
  const a = actual.dataSync();
  const e = expected.dataSync();
  let scale = 0;
  for (const v of e) scale = Math.max(scale, Math.abs(v));
  assert.ok(scale > 0, `${what}: the reference is all zeros`);
  let worst = 0;
  for (let i = 0; i < e.length; i++) worst = Math.max(worst, Math.abs(a[i]! - e[i]!));
  assert.ok(worst <= tolerance * scale, `${what}: differs by ${worst} (scale ${scale})`);
}

/** The gradients of Σ f(inputs)·dy with respect to the inputs, by tfjs's autodiff. */
function autodiff(
  f: (...inputs: tf.Tensor[]) => tf.Tensor,
  inputs: tf.Tensor[],
  dy: tf.Tensor,
): tf.Tensor[] {
  return tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(f(...xs), dy)))(inputs);
}

const shape: AttentionShape = { windows: 3, length: 5, heads: 2, width: 8 };
const rows = shape.windows * shape.length;

function causalMask(length: number): tf.Tensor2D {
  const mask = new Float32Array(length * length);
  for (let i = 0; i < length; i++) for (let j = i + 1; j < length; j++) mask[i * length + j] = -1e9;
  return tf.tensor2d(mask, [length, length]);
}

for (const backend of ["JS", "WASM"] as const)
  describe(`fused kernels against their tfjs compositions (${backend})`, () => {
    before(async () => {
      await initBackend(backend, { log: () => {} });
      assert.ok(fused.fusedKernelsAvailable(), `fused kernels are registered for ${backend}`);
    });

    it("LayerNorm with the residual add: values and gradients", () =>
      tf.tidy(() => {
        const d = shape.width;
        const x = randomTensor([rows, d], 1, 2) as tf.Tensor2D;
        const residual = randomTensor([rows, d], 2) as tf.Tensor2D;
        const gain = tf.add(randomTensor([d], 3, 0.5), 1);
        const bias = randomTensor([d], 4, 0.5);
        const dy = randomTensor([rows, d], 5) as tf.Tensor2D;
        const dResidualPath = randomTensor([rows, d], 6) as tf.Tensor2D;
        const result = fused.layerNorm(x, gain, bias, residual);
        assertClose(result.input, tf.add(x, residual), "x + residual");
        assertClose(result.y, layerNorm(tf.add(x, residual), gain, bias), "LayerNorm");
        // The sum also flows on along the residual path, with gradient dResidualPath.
        const [dx, dResidual, dGain, dBias] = tf.grads(
          (xx: tf.Tensor, rr: tf.Tensor, gg: tf.Tensor, bb: tf.Tensor) => {
            const sum = tf.add(xx, rr);
            return tf.add(
              tf.sum(tf.mul(layerNorm(sum, gg, bb), dy)),
              tf.sum(tf.mul(sum, dResidualPath)),
            );
          },
        )([x, residual, gain, bias]);
        const [fdx, fdGain, fdBias] = fused.layerNormGrad(dy, result, gain, dResidualPath);
        assertClose(fdx, dx!, "dx");
        assertClose(fdx, dResidual!, "d residual");
        assertClose(fdGain, dGain!, "d gain");
        assertClose(fdBias, dBias!, "d bias");
        const plain = fused.layerNorm(x, gain, bias);
        assert.equal(plain.input, x, "without a residual the input is x itself");
        const [dPlain] = fused.layerNormGrad(dy, plain, gain);
        assertClose(dPlain, autodiff((xx) => layerNorm(xx, gain, bias), [x], dy)[0]!, "dx alone");
      }));

    for (const kind of ["ReLU", "GELU", "Tanh"] as const)
      it(`${kind}: values and gradient`, () =>
        tf.tidy(() => {
          const x = randomTensor([rows, 12], 7, 3) as tf.Tensor2D;
          const dy = randomTensor([rows, 12], 8) as tf.Tensor2D;
          const composed = (xx: tf.Tensor) => activate(xx as tf.Tensor2D, kind);
          assertClose(fused.activation(kind, x), composed(x), kind);
          assertClose(
            fused.activationGrad(kind, dy, x),
            autodiff(composed, [x], dy)[0]!,
            `d ${kind}`,
          );
        }));

    it("causal multi-head attention: values and gradient", () =>
      tf.tidy(() => {
        const qkv = randomTensor([rows, 3 * shape.width], 9, 2) as tf.Tensor2D;
        const dy = randomTensor([rows, shape.width], 10) as tf.Tensor2D;
        const mask = causalMask(shape.length);
        const composed = (q: tf.Tensor) => attention(q as tf.Tensor2D, shape, mask);
        const [out, probabilities] = fused.attention(qkv, shape);
        assertClose(out, composed(qkv), "attention");
        const below = tf.sum(probabilities, -1);
        assertClose(below, tf.onesLike(below), "each query's probabilities sum to one");
        assertClose(
          fused.attentionGrad(dy, qkv, probabilities, shape),
          autodiff(composed, [qkv], dy)[0]!,
          "d qkv",
        );
      }));

    it("cross-entropy on integer labels: loss and gradient", () =>
      tf.tidy(() => {
        const logits = randomTensor([rows, 7], 11, 4) as tf.Tensor2D;
        const labels = tf.tensor1d(
          Int32Array.from({ length: rows }, (_, i) => (i * 5) % 7),
          "int32",
        );
        const [loss, dLogits] = fused.crossEntropyWithGrad(logits, labels);
        assertClose(loss, crossEntropy(logits, labels, 7), "loss");
        const expected = tf.grad((l: tf.Tensor) => crossEntropy(l, labels, 7))(logits);
        assertClose(dLogits, expected, "d logits");
        assert.throws(
          () => fused.crossEntropyWithGrad(logits, tf.fill([rows], 7, "int32") as tf.Tensor1D),
          /label 7 at row 0 is outside 0..6/,
        );
      }));

    it("embedding as a gather: values and gradients (tied output share added)", () =>
      tf.tidy(() => {
        const vocabulary = 6;
        const contextLength = 7;
        const d = shape.width;
        const ids = tf.tensor1d(
          Int32Array.from({ length: rows }, (_, i) => (i * 4) % vocabulary),
          "int32",
        );
        const tokens = randomTensor([vocabulary, d], 12);
        const positions = randomTensor([contextLength, d], 13);
        const dy = randomTensor([rows, d], 14) as tf.Tensor2D;
        const tokenShare = randomTensor([vocabulary, d], 15);
        const composed = (tt: tf.Tensor, pp: tf.Tensor) =>
          tf.add(
            tf.reshape(tf.matMul(tf.oneHot(ids, vocabulary).toFloat(), tt), [
              shape.windows,
              shape.length,
              d,
            ]),
            tf.slice(pp, [0, 0], [shape.length, d]),
          );
        assertClose(
          fused.embedding(ids, tokens, positions, shape.length),
          tf.reshape(composed(tokens, positions), [rows, d]),
          "embedding",
        );
        const [dTokens, dPositions] = autodiff(
          composed,
          [tokens, positions],
          tf.reshape(dy, [shape.windows, shape.length, d]),
        );
        const [fdTokens, fdPositions] = fused.embeddingGrad(
          ids,
          dy,
          tokenShare,
          contextLength,
          shape.length,
        );
        assertClose(fdTokens, tf.add(dTokens!, tokenShare), "d tokens");
        assertClose(fdPositions, dPositions!, "d positions");
        assert.throws(
          () => fused.embedding(tf.tensor1d([vocabulary], "int32"), tokens, positions, 1),
          /token id 6 at 0 is outside 0..5/,
        );
      }));

    it("linear: x·W + b as one kernel", () =>
      tf.tidy(() => {
        const x = randomTensor([rows, 8], 16) as tf.Tensor2D;
        const weight = randomTensor([8, 5], 17);
        const bias = randomTensor([5], 18);
        const out = fused.linear(x, weight, bias);
        assertClose(out, tf.add(tf.matMul(x, weight as tf.Tensor2D), bias), "linear");
      }));
  });

const transformer: ModelDefinition = {
  kind: "transformer",
  vocabularySize: 11,
  layers: 2,
  modelWidth: 16,
  heads: 2,
  contextLength: 8,
  feedForwardMultiplier: 2,
};

function textBatch(windows: number, length: number, seed: number): Batch {
  const random = new Random(seed, "fused-batch");
  const id = () => Math.floor(random.uniform() * 11);
  return {
    kind: "text",
    size: windows,
    length,
    inputs: Int32Array.from({ length: windows * length }, id),
    targets: Int32Array.from({ length: windows * length }, id),
  };
}

function classificationBatch(size: number, inputs: number, classes: number): Batch {
  return {
    kind: "classification",
    size,
    features: values(size * inputs, 19, 2),
    labels: Int32Array.from({ length: size }, (_, i) => (i * 2) % classes),
  };
}

describe("the fused training step against tfjs's autodiff of the model", () => {
  before(async () => {
    await initBackend("WASM", { log: () => {} });
  });

  const cases: [string, ModelDefinition, Batch][] = [
    ["CharTransformer, full windows", transformer, textBatch(3, 8, 1)],
    ["CharTransformer, windows shorter than the context", transformer, textBatch(2, 5, 2)],
    ["MLP, ReLU", mlpDefinition(6, 4, [9, 7], "ReLU"), classificationBatch(10, 6, 4)],
    ["MLP, GELU", mlpDefinition(6, 4, [9], "GELU"), classificationBatch(10, 6, 4)],
    ["MLP, Tanh", mlpDefinition(6, 4, [9, 7], "Tanh"), classificationBatch(10, 6, 4)],
  ];
  for (const [name, definition, batch] of cases)
    it(`${name}: the same loss and every gradient`, () => {
      const model = new Model(definition, initialParameters(definition, 3));
      // Trained parameters, not the initial ones (zero biases, unit gains), so that every
      // gradient term is exercised.
      model.writeParameters(values(model.size, 20, 0.3));
      tf.tidy(() => {
        const { loss, gradients } = model.lossAndGradients(batch);
        const { value, grads } = tf.variableGrads(() => model.loss(batch), model.variables);
        assertClose(loss, value, "loss");
        assert.equal(gradients.length, model.variables.length);
        model.variables.forEach((variable, i) => {
          assertClose(gradients[i]!, grads[variable.name]!, `gradient of ${variable.name}`, 1e-4);
        });
      });
      model.dispose();
    });

  it("gives the composed model's next-token logits", async () => {
    const model = new Model(transformer, initialParameters(transformer, 6));
    model.writeParameters(values(model.size, 21, 0.3));
    const inputs = Int32Array.from({ length: 12 }, (_, i) => (i * 7) % 11);
    const fusedLogits = tf.tidy(() => model.nextTokenLogits(inputs, 2, 6));
    const composed = await fused.withoutFusedKernels(() =>
      tf.tidy(() => model.nextTokenLogits(inputs, 2, 6)),
    );
    assertClose(fusedLogits, composed, "logits");
    tf.dispose([fusedLogits, composed]);
    model.dispose();
  });

  it("evaluates the same loss as the composed model", async () => {
    const model = new Model(transformer, initialParameters(transformer, 4));
    const batch = textBatch(2, 8, 5);
    const expected = tf.tidy(() => model.loss(batch).dataSync()[0]!);
    const evaluated = await model.evaluate([batch]);
    assert.ok(Math.abs(evaluated - expected) < 1e-5 * expected, `${evaluated} vs ${expected}`);
    model.dispose();
  });
});
